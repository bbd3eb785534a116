"""The lowered form of a network: buffers, kernel calls and loops over time, before code generation.

A `Schedule` is what lowering produces and what the buffer planner and the code generator consume:
- `Buf`: an array in the arena, per example shape plus a batch axis (and a time axis inside unrolls);
- `Call`: one kernel call, with its arguments and the IR node (so the spec line) it implements;
- `Loop`: calls run once per time step of an unroll (one copy of code, never T copies).
Parameters and their gradients are not arena buffers: they are persistent arrays referenced by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from netdsl.ir import Node


@dataclass(eq=False)
class Buf:
    """An arena array. Its layout is (steps?, batch?, *shape), C-contiguous."""

    id: int
    name: str
    shape: tuple[int, ...]
    dtype: str = "f"  # "f": the compile dtype; "i64"; "u8"
    batched: bool = True
    steps: int = 0  # > 0: one slice per time step (an unroll's saved values)
    kind: str = "act"  # act | grad | save | ws | input | tmp
    offset: int = -1  # element offset in its arena, set by the planner
    pinned: bool = False  # kept alive to the end of the schedule (outputs, fetches, the loss)

    def elements(self, batch: int) -> int:
        return max(1, self.steps) * (batch if self.batched else 1) * math.prod(self.shape)


    def template(self) -> tuple[Any, ...]:
        """The view shape with 'B' for the batch axis."""
        return ((self.steps,) if self.steps else ()) + (("B",) if self.batched else ()) + self.shape

    def __repr__(self) -> str:
        return f"Buf({self.id}:{self.name} {self.template()} {self.dtype})"


@dataclass(frozen=True, eq=False)
class View:
    """A buffer seen with another shape (same elements), e.g. (B, C, H, W) as (B, C·H·W) or with size-1 axes."""

    buf: Buf
    shape: tuple[Any, ...]  # may contain "B"; a leading time axis is kept when the buffer has one


@dataclass(frozen=True)
class At:
    """A time-indexed buffer (or view) at step `t + offset` inside a loop, or at step `fixed` anywhere."""

    of: Buf | View
    offset: int = 0
    fixed: int | None = None


@dataclass(frozen=True)
class StateIn:
    """At step t: `init` on the loop's first step, else `prev` at step t + offset.

    Forward, a cell's state input is the initial state, then the previous step's new state (offset -1, or +1
    for a reverse unroll). Backward, a state's gradient arrives from the final state's gradient on the last
    step, else from the next step's state-input gradient.
    """

    init: Buf | View
    prev: Buf | View
    first: str  # the loop's first step as code: "0" or "T - 1" (already a number in practice)
    offset: int


@dataclass(frozen=True)
class Scalar:
    """The single element of a buffer, passed as a number (a loss gradient)."""

    of: Any


@dataclass(frozen=True)
class Param:
    name: str


@dataclass(frozen=True)
class Grad:
    name: str


@dataclass(frozen=True)
class Expr:
    """A Python expression evaluated at run time in the generated code (`train`, `seed`, `n`, …)."""

    code: str


Arg = Buf | View | At | StateIn | Scalar | Param | Grad | Expr | int | float | bool | str | None


@dataclass
class Call:
    fn: str  # "conv.conv_forward": kernel module (under kernels/cpu) and function
    args: list[Arg]
    node: Node | None = None
    note: str = ""  # e.g. "backward", "accumulate"
    result: Buf | None = None  # a kernel that returns a scalar stores it here (shape (1,))

    def bufs(self) -> list[Buf]:
        out: list[Buf] = []
        for a in self.args + ([self.result] if self.result is not None else []):
            out.extend(arg_bufs(a))
        return out


def arg_bufs(a: Any) -> list[Buf]:
    if isinstance(a, Buf):
        return [a]
    if isinstance(a, View):
        return [a.buf]
    if isinstance(a, At):
        return arg_bufs(a.of)
    if isinstance(a, StateIn):
        return arg_bufs(a.init) + arg_bufs(a.prev)
    if isinstance(a, Scalar):
        return arg_bufs(a.of)
    return []


@dataclass
class Loop:
    steps: int
    reverse: bool
    body: list[Call | Loop]
    node: Node | None = None
    var: str = "t"


Item = Call | Loop


@dataclass
class Schedule:
    """Forward (and, for training, backward) items, the buffers they use, and the network's interface."""

    items: list[Item]
    bufs: list[Buf]
    inputs: dict[str, Buf]
    outputs: dict[str, Buf]
    loss: Buf | None
    train: bool
    backward_start: int = -1  # index in items where the backward pass begins (-1: none)
    fetch: dict[str, Buf] = field(default_factory=dict)
    grads: list[str] = field(default_factory=list)  # parameters whose gradients this schedule computes


def walk(items: list[Item]):
    """Every Call, depth first, with the loops around it."""
    for it in items:
        if isinstance(it, Loop):
            yield from walk(it.body)
        else:
            yield it
