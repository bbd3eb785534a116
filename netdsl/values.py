"""The values an expression can have during elaboration.

Compile-time values are plain Python (int, float, bool, str, list, `Ident`); the rest are these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import ast
from .diagnostics import Span
from .ir import IR, TensorType, Value
from .ops import OpDef


@dataclass(frozen=True)
class Tensor:
    """A value of the IR being built (`ir` is the network's or an unroll body's)."""

    value: Value
    type: TensorType
    ir: IR

    def describe(self) -> str:
        return f"a tensor {self.type.spec()}"


@dataclass(frozen=True)
class TupleVal:
    items: tuple[Any, ...]

    def describe(self) -> str:
        return f"a tuple of {len(self.items)} values"


@dataclass(frozen=True)
class UnrollResult:
    """`unroll …`: the outputs; destructured as `ys, final = unroll …` it also gives the final state."""

    ys: Tensor
    final: Tensor | TupleVal

    def describe(self) -> str:
        return "the result of an unroll"


@dataclass
class OpLayer:
    """A built-in layer; `built` once its settings were given (`leaky_relu(0.1)`), so a further call applies it."""

    op: OpDef
    settings: dict[str, Any]
    span: Span
    built: bool = False
    extra: list[Tensor] = field(default_factory=list)  # more inputs of a combinator: `x -> concat(y)`

    @property
    def display(self) -> str:
        return self.op.name

    def describe(self) -> str:
        return f"the layer {self.op.name}"


@dataclass
class BlockLayer:
    """A block or cell with (some) arguments bound. `module` is the scope it was defined in."""

    block: ast.Block
    args: list[Any]
    kwargs: dict[str, tuple[Any, Span]]
    span: Span
    module: Any
    built: bool = False
    transparent: bool = False  # prelude wrappers (`lstm(h)`): their one inner layer takes the use's name

    @property
    def display(self) -> str:
        return self.block.name

    def describe(self) -> str:
        return f"the {'cell' if self.block.is_cell else 'block'} {self.block.name}"


@dataclass
class SharedLayer:
    """`let proj = dense(128)`: one layer instance whose every use shares its parameters (`proj.weight`)."""

    name: str  # parameter prefix, e.g. "i3a.proj"
    inner: OpLayer | BlockLayer
    span: Span
    uses: int = 0

    @property
    def display(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"the shared layer {self.name}"


Layer = OpLayer | BlockLayer | SharedLayer


class Poison:
    """The value of a name whose definition failed: uses of it are silently skipped (the error is reported once)."""

    def describe(self) -> str:
        return "an erroneous value"


POISON = Poison()


class PoisonError(Exception):
    """Raised when evaluation touches a Poison value; the statement is skipped without a new diagnostic."""


def describe(v: Any) -> str:
    if isinstance(v, bool):
        return f"the boolean {'true' if v else 'false'}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, list):
        return "a list"
    if isinstance(v, tuple):
        return "a shape (" + ", ".join(map(str, v)) + ")"
    d = getattr(v, "describe", None)
    return d() if d else type(v).__name__
