"""Elaboration: AST → IR. Evaluates blocks, repeat, let, labels, compile-time arithmetic, cells and unrolls.

Shapes are inferred while the IR is built (the language needs them: `x.shape[0]`, `if … then … else`), so every
layer is checked at the moment it is applied and errors point at its span with the chain of block uses.
Independent errors are collected: a statement that fails poisons the names it binds, and later statements that
use them are skipped silently instead of reporting the same problem again.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from . import ast, ops
from .diagnostics import Diagnostic, InternalError, Span, SpecError, UseSite
from .ir import IR, ParamSpec, TensorType, Value
from .ops import AttrError, Ident, ShapeError
from .values import (
    BlockLayer,
    Layer,
    OpLayer,
    Poison,
    PoisonError,
    SharedLayer,
    Tensor,
    TupleVal,
    UnrollResult,
    describe,
)

# Size guards: refuse absurd specs before anything is built, so no spec can hang the front end.
MAX_ELEMENTS = 1 << 30  # per example, per tensor
MAX_PARAM_ELEMENTS = 1 << 31  # one parameter tensor
MAX_NODES = 10_000  # ~0.5 s to build and check; the largest zoo spec (ResNet-152) has ~500. At 20,000 a valid
# network took over 2 s to load and summarise (found by fuzzing: ResNet-50 with `repeat 2048 Bottleneck`)
MAX_REPEAT = 10_000
MAX_STEPS = 100_000


@dataclass
class Module:
    """The names visible in one file: its blocks and cells, those it imports, and the prelude's."""

    blocks: dict[str, ast.Block]
    prelude: set[str] = field(default_factory=set)  # names that come from the prelude (transparent wrappers)
    # the prelude's own names: its definitions resolve there, so a user's `cell LSTM` does not change `lstm(h)`
    standard: Module | None = None


@dataclass
class Frame:
    """Where new nodes go and how they are named."""

    ir: IR
    prefix: str = ""  # "layer3.0."
    block_path: str = ""  # "layer3.0"
    uses: tuple[UseSite, ...] = ()
    stack: tuple[str, ...] = ()  # blocks being elaborated, for recursion
    counters: dict[str, int] = field(default_factory=dict)
    # node names taken, shared by every frame of a network: a dotted label (`a.b:`) must not take a name that a
    # block use `a` or an unroll `a` gives its own layers
    names: dict[str, Span] = field(default_factory=dict)
    budget: list[int] = field(default_factory=lambda: [0])  # nodes made, shared with nested frames
    pending: str | None = None  # a name handed down by a transparent (prelude) block to its one layer
    # (node prefix, parameter prefix): the later uses of a let-bound block name their nodes `b@2.…` and share the
    # parameters of its first use, `b.…`
    alias: tuple[str, str] | None = None

    def child(self, name: str, use: UseSite, block: str) -> Frame:
        return Frame(self.ir, name + ".", name, self.uses + (use,), self.stack + (block,), names=self.names,
                     budget=self.budget, alias=self.alias)


class Scope:
    def __init__(self, module: Module, parent: Scope | None = None) -> None:
        self.module = module
        self.parent = parent
        self.vars: dict[str, Any] = {}
        self.used: set[str] = set()

    def lookup(self, name: str) -> Any:
        s: Scope | None = self
        while s is not None:
            if name in s.vars:
                s.used.add(name)
                return s.vars[name]
            s = s.parent
        raise KeyError(name)

    def known_names(self) -> list[str]:
        out: list[str] = list(self.module.blocks) + ops.names()
        s: Scope | None = self
        while s is not None:
            out.extend(s.vars)
            s = s.parent
        return out


class Elaborator:
    def __init__(self, module: Module) -> None:
        self.module = module

    # ================================================================== diagnostics
    def err(self, frame: Frame, span: Span | None, message: str, hint: str | None = None,
            notes: list[str] | None = None) -> SpecError:
        return SpecError(Diagnostic(span, message, hint, notes or [], frame.uses))

    def suggest(self, name: str, candidates: list[str]) -> str | None:
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
        return f"did you mean '{close[0]}'?" if close else None

    # ================================================================== expressions
    def eval(self, e: ast.Expr, scope: Scope, frame: Frame, ident_ok: bool = False) -> Any:
        method = getattr(self, "eval_" + type(e).__name__, None)
        if method is None:
            raise InternalError(f"no evaluation rule for {type(e).__name__}", e.span)
        v = method(e, scope, frame, ident_ok) if type(e) in (ast.Name, ast.ListExpr) else method(e, scope, frame)
        if isinstance(v, Poison):
            raise PoisonError()
        return v

    def eval_Num(self, e: ast.Num, scope: Scope, frame: Frame) -> Any:
        return e.value

    def eval_Str(self, e: ast.Str, scope: Scope, frame: Frame) -> Any:
        return e.value

    def eval_Bool(self, e: ast.Bool, scope: Scope, frame: Frame) -> Any:
        return e.value

    def eval_Name(self, e: ast.Name, scope: Scope, frame: Frame, ident_ok: bool = False) -> Any:
        try:
            return scope.lookup(e.id)
        except KeyError:
            pass
        mod = scope.module
        if e.id in mod.blocks:
            b = mod.blocks[e.id]
            from_prelude = e.id in mod.prelude
            home = mod.standard if from_prelude and mod.standard is not None else mod
            return BlockLayer(b, [], {}, e.span, home, transparent=from_prelude)
        op = ops.get(e.id)
        if op is not None and op.name not in _INTERNAL_OPS:
            return OpLayer(op, {}, e.span)
        if ident_ok:
            return Ident(e.id)
        raise self.err(frame, e.span, f"unknown name '{e.id}'", self.suggest(e.id, scope.known_names()))

    def eval_ListExpr(self, e: ast.ListExpr, scope: Scope, frame: Frame, ident_ok: bool = False) -> Any:
        return [self.eval(x, scope, frame, ident_ok) for x in e.items]

    def eval_TupleExpr(self, e: ast.TupleExpr, scope: Scope, frame: Frame) -> Any:
        return TupleVal(tuple(self.eval(x, scope, frame) for x in e.items))

    def eval_BinOp(self, e: ast.BinOp, scope: Scope, frame: Frame) -> Any:
        a = self.tensorish(self.eval(e.left, scope, frame))
        b = self.tensorish(self.eval(e.right, scope, frame))
        if _is_num(a) and _is_num(b):
            return self.arith(e, a, b, frame)
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            ta = self.as_tensor(a, e.left, frame)
            tb = self.as_tensor(b, e.right, frame)
            name = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[e.op]
            return self.apply_op(ops.OPS[name], {}, [ta, tb], e.span, None, frame)
        bad = e.left if not (_is_num(a) or isinstance(a, Tensor)) else e.right
        val = a if bad is e.left else b
        raise self.err(frame, bad.span, f"'{e.op}' needs numbers or tensors, found {describe(val)}")

    def arith(self, e: ast.BinOp, a: Any, b: Any, frame: Frame) -> Any:
        if e.op == "+":
            return a + b
        if e.op == "-":
            return a - b
        if e.op == "*":
            r = a * b
            if isinstance(r, int) and abs(r) > 1 << 62:
                raise self.err(frame, e.span, f"the number {a} * {b} is too large")
            return r
        if b == 0:
            raise self.err(frame, e.span, f"division by zero: {_num(a)} / {_num(b)}")
        if isinstance(a, int) and isinstance(b, int):
            if a % b:
                raise self.err(
                    frame, e.span, f"inexact division: {a} / {b} = {a / b:.4g} is not a whole number",
                    "sizes must divide exactly; write a float (e.g. 1.0 * a / b) for a fractional value",
                )
            return a // b
        return a / b

    def eval_UnaryOp(self, e: ast.UnaryOp, scope: Scope, frame: Frame) -> Any:
        v = self.tensorish(self.eval(e.operand, scope, frame))
        if _is_num(v):
            return -v
        if isinstance(v, Tensor):
            return self.apply_op(ops.OPS["neg"], {}, [v], e.span, None, frame)
        raise self.err(frame, e.operand.span, f"unary '-' needs a number or a tensor, found {describe(v)}")

    def eval_Compare(self, e: ast.Compare, scope: Scope, frame: Frame) -> Any:
        a = self.compile_time(e.left, scope, frame)
        b = self.compile_time(e.right, scope, frame)
        if e.op in ("==", "!="):
            eq = _norm_eq(a) == _norm_eq(b)
            return eq if e.op == "==" else not eq
        if not (_is_num(a) and _is_num(b)):
            raise self.err(frame, e.span, f"'{e.op}' compares numbers, found {describe(a)} and {describe(b)}")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[e.op]

    def eval_BoolOp(self, e: ast.BoolOp, scope: Scope, frame: Frame) -> Any:
        a = self.condition(e.left, scope, frame)
        if e.op == "and" and not a:
            return False
        if e.op == "or" and a:
            return True
        return self.condition(e.right, scope, frame)

    def eval_Not(self, e: ast.Not, scope: Scope, frame: Frame) -> Any:
        return not self.condition(e.operand, scope, frame)

    def eval_IfExpr(self, e: ast.IfExpr, scope: Scope, frame: Frame) -> Any:
        # only the chosen branch is elaborated and checked
        return self.eval(e.then if self.condition(e.cond, scope, frame) else e.orelse, scope, frame)

    def condition(self, e: ast.Expr, scope: Scope, frame: Frame) -> bool:
        v = self.compile_time(e, scope, frame)
        if not isinstance(v, bool):
            raise self.err(frame, e.span, f"expected a condition (true or false), found {describe(v)}")
        return v

    def compile_time(self, e: ast.Expr, scope: Scope, frame: Frame) -> Any:
        v = self.eval(e, scope, frame, ident_ok=False)
        if isinstance(v, (Tensor, UnrollResult)):
            raise self.err(
                frame, e.span, f"expected a compile-time value, found {describe(self.tensorish(v))}",
                "conditions and sizes are decided at compile time: use x.shape[i] for a tensor's size",
            )
        return v

    def eval_Attribute(self, e: ast.Attribute, scope: Scope, frame: Frame) -> Any:
        v = self.tensorish(self.eval(e.value, scope, frame))
        if isinstance(v, Tensor) and e.name == "shape":
            return tuple(v.type.shape)
        if isinstance(v, Tensor) and e.name == "rank":
            return v.type.rank
        raise self.err(frame, e.span, f"{describe(v)} has no attribute '{e.name}'",
                       "tensors have .shape and .rank" if isinstance(v, Tensor) else None)

    def eval_Index(self, e: ast.Index, scope: Scope, frame: Frame) -> Any:
        v = self.tensorish(self.eval(e.value, scope, frame))
        i = self.compile_time(e.index, scope, frame)
        if isinstance(v, (tuple, list, TupleVal)):
            items = v.items if isinstance(v, TupleVal) else v
            if not (isinstance(i, int) and not isinstance(i, bool)):
                raise self.err(frame, e.index.span, f"an index must be a whole number, found {describe(i)}")
            if not -len(items) <= i < len(items):
                raise self.err(frame, e.index.span, f"index {i} is out of range for {describe(v)}",
                               f"valid indices: 0 … {len(items) - 1}" if items else None)
            return items[i]
        if isinstance(v, Tensor):
            raise self.err(frame, e.span, "tensors cannot be indexed", "use last(seq) for the last step")
        raise self.err(frame, e.value.span, f"{describe(v)} cannot be indexed")

    def eval_Assert(self, e: ast.Assert, scope: Scope, frame: Frame) -> Any:
        v = self.as_tensor(self.eval(e.value, scope, frame), e.value, frame)
        want = tuple(self.dim(d, scope, frame) for d in e.type.dims)
        if want != v.type.shape or e.type.is_int != v.type.is_int:
            shown = ("int" if e.type.is_int else "") + "[" + ", ".join(map(str, want)) + "]"
            raise self.err(frame, e.type.span, f"wrong shape assertion: asserted {shown}, inferred {v.type.spec()}")
        return v

    def dim(self, d: ast.Expr, scope: Scope, frame: Frame) -> int:
        v = self.compile_time(d, scope, frame)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.err(frame, d.span, f"a size must be a whole number, found {describe(v)}")
        if v < 1:
            raise self.err(frame, d.span, f"a size must be at least 1, found {v}")
        return v

    # ------------------------------------------------------------------ layers
    def eval_Call(self, e: ast.Call, scope: Scope, frame: Frame, label: ast.Labeled | None = None) -> Any:
        f = self.eval(e.func, scope, frame)
        if not isinstance(f, (OpLayer, BlockLayer, SharedLayer)):
            raise self.err(frame, e.func.span, f"{describe(f)} cannot be called")
        args = [self.eval(a, scope, frame, ident_ok=True) for a in e.args]
        kwargs = {k.name: (self.eval(k.value, scope, frame, ident_ok=True), k.span) for k in e.kwargs}
        tensors = [isinstance(self.tensorish(a), Tensor) for a in args]
        # apply directly: an already built layer, a layer without required settings, or tensor arguments
        apply = _is_built(f) or not _required(f) or (args and all(tensors))
        if not apply:
            if any(tensors):
                i = tensors.index(True)
                raise self.err(frame, e.args[i].span, f"{f.display} takes settings here, found {describe(args[i])}",
                               f"build the layer, then apply it: {f.display}(settings)(input)")
            return self.build(f, args, kwargs, e, frame)
        if isinstance(f, SharedLayer) or _is_built(f):
            if kwargs:
                k = next(iter(kwargs.values()))[1]
                raise self.err(frame, k, f"{f.display} is already built; settings go in its first call")
            return self.apply(f, [self.as_tensor(a, x, frame) for a, x in zip(args, e.args, strict=True)], e, frame, label)
        # direct application: positional arguments are inputs, settings go by keyword
        inputs = [self.as_tensor(a, x, frame) for a, x in zip(args, e.args, strict=True)]
        missing = [r for r in _required(f) if r not in kwargs]
        if isinstance(f, OpLayer) and missing:  # `leaky_relu(x)`: the input is not the setting
            raise self.err(frame, e.span, f"{f.display} needs the setting '{missing[0]}'",
                           f"build the layer, then apply it: {f.display}({', '.join(missing)})(input)")
        built = self.build(f, [], kwargs, e, frame)
        return self.apply(built, inputs, e, frame, label)

    def build(self, f: Layer, args: list[Any], kwargs: dict[str, tuple[Any, Span]], e: ast.Call, frame: Frame) -> Layer:
        if isinstance(f, OpLayer):
            settings = dict(f.settings)
            names = [a.name for a in f.op.attrs]
            if len(args) > len(names):
                raise self.err(frame, e.args[len(names)].span,
                               f"{f.op.name} takes at most {len(names)} settings, found {len(args)}")
            for name, v in zip(names, args, strict=False):
                settings[name] = v
            for k, (v, span) in kwargs.items():
                if k not in names:
                    raise self.err(frame, span, f"{f.op.name} has no setting '{k}'",
                                   self.suggest(k, names) or ("settings: " + ", ".join(names) if names else
                                                              f"{f.op.name} takes no settings"))
                if k in settings and k in names[: len(args)]:
                    raise self.err(frame, span, f"setting '{k}' of {f.op.name} is given twice")
                settings[k] = v
            return OpLayer(f.op, settings, e.span, built=True)
        if isinstance(f, BlockLayer):
            return BlockLayer(f.block, list(args), dict(kwargs), e.span, f.module, built=True, transparent=f.transparent)
        raise self.err(frame, e.span, f"{f.display} is already built")

    def eval_Chain(self, e: ast.Chain, scope: Scope, frame: Frame) -> Any:
        x = self.as_tensor(self.eval(e.value, scope, frame), e.value, frame)
        return self.apply_in_layer_position(x, e.layer, scope, frame, None)

    def apply_in_layer_position(self, x: Tensor, layer: ast.Expr, scope: Scope, frame: Frame,
                                label: ast.Labeled | None) -> Any:
        if isinstance(layer, ast.Labeled):
            if label is not None:
                raise self.err(frame, layer.label_span, "a layer can have only one label")
            return self.apply_in_layer_position(x, layer.layer, scope, frame, layer)
        if isinstance(layer, ast.Repeat):
            return self.repeat(x, layer, scope, frame, label)
        f = self.eval_layer(layer.func if isinstance(layer, ast.Call) else layer, scope, frame)
        if not isinstance(f, (OpLayer, BlockLayer, SharedLayer)):
            raise self.err(frame, layer.span, f"expected a layer after '->', found {describe(f)}")
        extra: list[Tensor] = []
        if isinstance(layer, ast.Call):
            args = [self.eval(a, scope, frame, ident_ok=True) for a in layer.args]
            kwargs = {k.name: (self.eval(k.value, scope, frame, ident_ok=True), k.span) for k in layer.kwargs}
            if isinstance(f, OpLayer) and f.op.combinator and not f.built:
                # the chained value is the first input: `x -> concat(y)`, `logits -> cross_entropy(label)`
                extra = [self.as_tensor(a, s, frame) for a, s in zip(args, layer.args, strict=True)]
                f = self.build(f, [], kwargs, layer, frame)
            elif _is_built(f) or isinstance(f, SharedLayer):
                extra = [self.as_tensor(a, s, frame) for a, s in zip(args, layer.args, strict=True)]
                if kwargs:
                    raise self.err(frame, next(iter(kwargs.values()))[1], f"{f.display} is already built")
            else:
                f = self.build(f, args, kwargs, layer, frame)
        return self.apply(f, [x] + extra, layer, frame, label)

    def eval_layer(self, e: ast.Expr, scope: Scope, frame: Frame) -> Any:
        """An expression in layer position; an unknown name there is an unknown layer."""
        if isinstance(e, ast.Name):
            try:
                scope.lookup(e.id)
            except KeyError:
                op = ops.get(e.id)
                if e.id not in scope.module.blocks and (op is None or op.name in _INTERNAL_OPS):
                    layers = list(scope.module.blocks) + [n for n in ops.names() if n not in _INTERNAL_OPS]
                    layers += [n for n in scope.known_names() if isinstance(_peek(scope, n), SharedLayer)]
                    raise self.err(frame, e.span, f"unknown layer '{e.id}'", self.suggest(e.id, layers)) from None
        return self.eval(e, scope, frame)

    def repeat(self, x: Tensor, r: ast.Repeat, scope: Scope, frame: Frame, label: ast.Labeled | None) -> Any:
        n = self.compile_time(r.count, scope, frame)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise self.err(frame, r.count.span, f"repeat needs a whole number ≥ 0, found {describe(n)}")
        if n > MAX_REPEAT:
            raise self.err(frame, r.count.span, f"repeat {n} is too large (at most {MAX_REPEAT} copies)")
        for i in range(n):
            copy = None
            if label is not None:
                copy = ast.Labeled(label.span, f"{label.label}.{i}", label.label_span, r.layer)
            x = self.as_tensor(self.apply_in_layer_position(x, r.layer, scope, frame, copy), r, frame)
        return x

    def eval_Labeled(self, e: ast.Labeled, scope: Scope, frame: Frame) -> Any:
        if isinstance(e.layer, ast.Unroll):
            return self.unroll(e.layer, scope, frame, e)
        if isinstance(e.layer, ast.Call):
            return self.eval_Call(e.layer, scope, frame, label=e)
        raise self.err(frame, e.label_span, "a label here must be followed by a layer call or an unroll")

    def eval_Unroll(self, e: ast.Unroll, scope: Scope, frame: Frame) -> Any:
        return self.unroll(e, scope, frame, None)

    # ------------------------------------------------------------------ application
    def apply(self, f: Layer, inputs: list[Tensor], e: ast.Expr, frame: Frame, label: ast.Labeled | None) -> Any:
        from .blocks import apply_block

        if isinstance(f, SharedLayer):
            f.uses += 1
            name = f.name if f.uses == 1 else f"{f.name}@{f.uses}"
            if label is not None:
                raise self.err(frame, label.label_span, f"'{f.name}' is a shared layer (let) and already has a name")
            if isinstance(f.inner, OpLayer):
                return self.apply_op(f.inner.op, f.inner.settings, inputs, e.span, None, frame,
                                     node_name=name, param_prefix=f.name)
            alias = (name + ".", self.param_name(frame, f.name) + ".") if f.uses > 1 else None
            return apply_block(self, f.inner, inputs, e, frame, None, fixed_name=name, alias=alias)
        if isinstance(f, BlockLayer):
            if not f.built and f.block.params and any(p.default is None for p in f.block.params):
                missing = [p.name for p in f.block.params if p.default is None]
                raise self.err(frame, e.span, f"{f.block.name} needs arguments: {', '.join(missing)}",
                               f"write {f.block.name}({', '.join(missing)})")
            return apply_block(self, f, inputs, e, frame, label)
        return self.apply_op(f.op, f.settings, inputs, e.span, label, frame)

    def node_name(self, frame: Frame, label: ast.Labeled | None, base: str, span: Span) -> str:
        if label is not None:
            name = frame.prefix + label.label
            if name in frame.names:
                prev = frame.names[name]
                raise self.err(frame, label.label_span, f"duplicate label '{label.label}'",
                               f"it is already used at {prev.line}:{prev.col}; labels name parameters and must be unique")
            frame.names[name] = label.label_span
            return name
        if frame.pending is not None:
            name, frame.pending = frame.pending, None
            return name
        n = frame.counters.get(base, 0)
        while True:
            n += 1
            name = f"{frame.prefix}{base}_{n}"
            if name not in frame.names:
                break
        frame.counters[base] = n
        frame.names[name] = span
        return name

    def apply_op(self, op: ops.OpDef, settings: dict[str, Any], inputs: list[Tensor], span: Span,
                 label: ast.Labeled | None, frame: Frame, node_name: str | None = None,
                 param_prefix: str | None = None) -> Tensor:
        lo, hi = op.inputs
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            want = f"{lo}" if lo == hi else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
            raise self.err(frame, span, f"{op.name} takes {want} input{'s' if want != '1' else ''}, found {len(inputs)}")
        shown = f"{op.name} '{label.label}'" if label is not None else op.name
        if op.name == "unembed":  # vocab and dim come from the tied embedding
            settings = self.resolve_unembed(settings, span, frame)
        try:
            attrs = op.normalize(settings)
        except AttrError as a:
            raise self.err(frame, span, f"{shown} {a.message}", a.hint) from None
        in_types = [t.type for t in inputs]
        for t in inputs:
            if t.ir is not frame.ir:
                raise self.err(frame, span, f"{shown} uses a value from outside its cell",
                               "a cell sees only its own inputs and parameters")
        try:
            out = op.infer(attrs, in_types)
            decls = op.param_decls(attrs, in_types)
        except ShapeError as s:
            notes = ["input shape" + ("s" if len(in_types) > 1 else "") + ": " +
                     ", ".join(t.spec() for t in in_types)] if in_types else []
            raise self.err(frame, span, f"{shown} {s.message}", s.hint, notes) from None
        self.guard_size(out, span, frame, shown)
        name = node_name or self.node_name(frame, label, op.name, span)
        prefix = self.param_name(frame, param_prefix or name)
        params: dict[str, str] = {}
        for d in decls:
            pname = f"{prefix}.{d.role}"
            if math.prod(d.shape) > MAX_PARAM_ELEMENTS:
                raise self.err(frame, span, f"{shown} would have a parameter {list(d.shape)} of "
                               f"{math.prod(d.shape):,} elements, more than the limit {MAX_PARAM_ELEMENTS:,}")
            have = frame.ir.params.get(pname)
            if have is not None and param_prefix is None and frame.alias is None:
                # node names are unique, so only labels can do this: `att.q: dense` beside `att: attention`
                at = f" (the layer at {have.span.line}:{have.span.col})" if have.span is not None else ""
                raise self.err(frame, label.label_span if label is not None else span,
                               f"parameter '{pname}' of {shown} has the name of another layer's parameter{at}",
                               "rename one of the labels")
            if have is not None and have.shape != d.shape:
                raise self.err(frame, span, f"shared layer '{prefix}' is used with inputs of another shape: its "
                               f"{d.role} is {list(have.shape)}, this use needs {list(d.shape)}")
            if have is None:
                frame.ir.add_param(ParamSpec(pname, d.shape, d.init, d.trainable, d.state, span))
            params[d.role] = pname
        if op.name == "unembed":
            params["weight"] = attrs["table"] + ".weight"
            attrs = {k: v for k, v in attrs.items() if k != "table"} | {"table": attrs["table"]}
        self.count_node(frame, span)
        nid = frame.ir.add(op.name, [t.value for t in inputs], attrs, span, [out], params=params, name=name,
                           uses=frame.uses, block=frame.block_path)
        return Tensor(Value(nid), out, frame.ir)

    def param_name(self, frame: Frame, name: str) -> str:
        """The parameter prefix of a node name: the first use's, inside a later use of a let-bound block."""
        if frame.alias is not None and name.startswith(frame.alias[0]):
            return frame.alias[1] + name[len(frame.alias[0]) :]
        return name

    def resolve_unembed(self, attrs: dict[str, Any], span: Span, frame: Frame) -> dict[str, Any]:
        t = attrs.get("table")
        if not (isinstance(t, SharedLayer) and isinstance(t.inner, OpLayer) and t.inner.op.name == "embedding"):
            raise self.err(frame, span, f"unembed needs a let-bound embedding, found {describe(t)}",
                           "write: let emb = embedding(vocab, dim) … logits = h -> unembed(emb)")
        inner = t.inner.op.normalize(t.inner.settings)
        return {"table": t.name, "vocab": inner["vocab"], "dim": inner["dim"]}

    def guard_size(self, t: TensorType, span: Span, frame: Frame, what: str) -> None:
        if t.size > MAX_ELEMENTS:
            shape = ("int" if t.is_int else "") + "[" + ", ".join(_big(d) for d in t.shape) + "]"
            raise self.err(frame, span, f"{what} would produce {shape}: {_big(t.size, ',')} elements per example, "
                           f"more than the limit {MAX_ELEMENTS:,}")

    def count_node(self, frame: Frame, span: Span) -> None:
        frame.budget[0] += 1
        if frame.budget[0] > MAX_NODES:
            raise self.err(frame, span, f"the network has more than {MAX_NODES:,} layers; refusing to build it")

    def unroll(self, e: ast.Unroll, scope: Scope, frame: Frame, label: ast.Labeled | None) -> Any:
        from .blocks import unroll

        return unroll(self, e, scope, frame, label)

    # ------------------------------------------------------------------ coercions
    def tensorish(self, v: Any) -> Any:
        return v.ys if isinstance(v, UnrollResult) else v

    def as_tensor(self, v: Any, e: ast.Expr | ast.Node, frame: Frame) -> Tensor:
        v = self.tensorish(v)
        if isinstance(v, Poison):
            raise PoisonError()
        if isinstance(v, Tensor):
            return v
        if _is_num(v):
            return self.const(float(v), e.span, frame)
        hint = None
        if isinstance(v, (OpLayer, BlockLayer, SharedLayer)):
            hint = f"apply the layer to a value: x -> {v.display}"
        raise self.err(frame, e.span, f"expected a tensor, found {describe(v)}", hint)

    def const(self, value: float, span: Span, frame: Frame) -> Tensor:
        t = TensorType((), "float32", batched=False)
        self.count_node(frame, span)
        nid = frame.ir.add("const", [], {"value": value}, span, [t], name=self.node_name(frame, None, "const", span),
                           uses=frame.uses, block=frame.block_path)
        return Tensor(Value(nid), t, frame.ir)


_INTERNAL_OPS = {"add", "sub", "mul", "div", "neg"}


def _peek(scope: Scope, name: str) -> Any:
    """The value a name has in scope (or None), without marking it used."""
    s: Scope | None = scope
    while s is not None:
        if name in s.vars:
            return s.vars[name]
        s = s.parent
    return None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _norm_eq(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


def _is_built(f: Any) -> bool:
    return isinstance(f, (OpLayer, BlockLayer)) and f.built


def _required(f: Any) -> list[str]:
    if isinstance(f, OpLayer):
        return [r for r in f.op.required if r not in f.settings]
    if isinstance(f, BlockLayer):
        return [p.name for p in f.block.params if p.default is None]
    return []


def _big(n: int, sep: str = "") -> str:
    """A number as written, unless it is absurdly long (a size in a refusal): its first digits and its length."""
    text = f"{n:{sep}}" if sep else str(n)
    return text if n < 10**18 else f"{str(n)[:4]}…({len(str(n))} digits)"
