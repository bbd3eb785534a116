"""The positioned AST of a .net file, produced by `netdsl.parser.parse`.

Plain dataclasses; every node has a `span`. Lark trees never leave the parser: this is what the elaborator sees.
Expressions are one family (`Expr`) because the language does not separate compile-time arithmetic from tensor
expressions syntactically: `c * 4` and `f * c` are both `BinOp`; the elaborator decides by the operands' values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span

# ---------------------------------------------------------------- expressions


@dataclass
class Expr:
    span: Span


@dataclass
class Num(Expr):
    value: int | float


@dataclass
class Str(Expr):
    value: str


@dataclass
class Bool(Expr):
    value: bool


@dataclass
class Name(Expr):
    id: str


@dataclass
class ListExpr(Expr):
    """`[a, b, c]` as a value (attribute lists, `reshape([...])`)."""

    items: list[Expr]


@dataclass
class TupleExpr(Expr):
    """`(a, b)` with a comma, or the right side of `return a, b`."""

    items: list[Expr]


@dataclass
class BinOp(Expr):
    op: str  # + - * /
    left: Expr
    right: Expr


@dataclass
class UnaryOp(Expr):
    op: str  # - (unary minus)
    operand: Expr


@dataclass
class Compare(Expr):
    op: str  # == != < <= > >=
    left: Expr
    right: Expr


@dataclass
class BoolOp(Expr):
    op: str  # and | or
    left: Expr
    right: Expr


@dataclass
class Not(Expr):
    operand: Expr


@dataclass
class IfExpr(Expr):
    cond: Expr
    then: Expr
    orelse: Expr


@dataclass
class Keyword:
    name: str
    value: Expr
    span: Span  # the `name=value` text


@dataclass
class Call(Expr):
    """`f(a, b, k=v)`; `func` is usually a Name but may be a Call (`leaky_relu(0.1)(x)`)."""

    func: Expr
    args: list[Expr]
    kwargs: list[Keyword]


@dataclass
class Attribute(Expr):
    """`x.shape`"""

    value: Expr
    name: str


@dataclass
class Index(Expr):
    """`x.shape[0]`, `ys[3]`"""

    value: Expr
    index: Expr


@dataclass
class Chain(Expr):
    """`value -> layer`; `layer` is the expression in layer position (Name, Call, Labeled, Repeat, ...)."""

    value: Expr
    layer: Expr


@dataclass
class Labeled(Expr):
    """`c1: conv(6, kernel=5)` in layer position, or `enc: unroll ...`."""

    label: str
    label_span: Span
    layer: Expr


@dataclass
class Repeat(Expr):
    """`repeat N Layer` in layer position."""

    count: Expr
    layer: Expr


@dataclass
class Unroll(Expr):
    """`unroll CELL over SEQ [from STATE] [reverse]`."""

    cell: Expr
    over: Expr
    start: Expr | None
    reverse: bool


@dataclass
class TypeExpr:
    """`[1, 32, 32]`, `int[64]`, `int[]`. Dims are expressions (symbols allowed in block contracts)."""

    dims: list[Expr]
    is_int: bool
    span: Span


@dataclass
class Assert(Expr):
    """`value : [dims]` — a shape assertion."""

    value: Expr
    type: TypeExpr


# ---------------------------------------------------------------- statements


@dataclass
class Stmt:
    span: Span


@dataclass
class Assign(Stmt):
    """`x = e` or `a, b = e` (targets in order)."""

    targets: list[str]
    target_spans: list[Span]
    value: Expr


@dataclass
class Let(Stmt):
    name: str
    value: Expr


@dataclass
class Return(Stmt):
    """`return a` (one value) or `return a, (b, c)` (values holds each top-level item)."""

    values: list[Expr]


@dataclass
class InputStmt(Stmt):
    name: str
    type: TypeExpr


@dataclass
class OutputStmt(Stmt):
    """`output x` (value None) or `output y = expr`."""

    name: str
    value: Expr | None


@dataclass
class LossStmt(Stmt):
    value: Expr


@dataclass
class ExprStmt(Stmt):
    """A bare expression statement (allowed by the grammar; the elaborator reports it as having no effect)."""

    value: Expr


# ---------------------------------------------------------------- top level


@dataclass
class Param:
    """A block/cell/network parameter `name` or `name=default`."""

    name: str
    default: Expr | None
    span: Span


@dataclass
class InputDecl:
    """A block/cell input `x` or `x: [C, H, W]` / `h: [hidden]`."""

    name: str
    type: TypeExpr | None
    span: Span


@dataclass
class Block:
    """`block Name(params)(inputs) [-> [dims], ...] { body }`; `is_cell` for `cell` definitions."""

    name: str
    params: list[Param]
    inputs: list[InputDecl]
    results: list[TypeExpr] | None
    body: list[Stmt]
    span: Span  # the header: from the keyword to the end of the name
    is_cell: bool = False


@dataclass
class Network:
    name: str
    params: list[Param]
    body: list[Stmt]
    span: Span


@dataclass
class TrainEntry:
    """One recipe line: `key value[, value ...] [as (a, b)]`, e.g. `data digits(size=32)`, `val 0.1`."""

    key: str
    values: list[Expr]
    names: list[str] = field(default_factory=list)  # the `as (...)` binding, if any
    span: Span | None = None


@dataclass
class Train:
    network: str
    entries: list[TrainEntry]
    span: Span


@dataclass
class Import:
    path: str
    span: Span


@dataclass
class Module:
    """One parsed file. Items keep their source order."""

    imports: list[Import]
    blocks: list[Block]  # blocks and cells
    networks: list[Network]
    trains: list[Train]
    source_name: str
