"""Lowering and autodiff: a checked IR → a `Schedule` of kernel calls (forward, then backward for training).

Backward is derived here, in one place: walk the IR in reverse, call each op's VJP rule (`rules.py`), and sum
gradients where a value fans out (a residual skip, concat branches, a shared `let` layer, a cell's weights
across time steps). Backward kernels overwrite their outputs, so the first contribution to a gradient is
written in place and every later one goes through a temporary and an accumulate call.

An unroll stays one loop: its cell body is lowered once with time-indexed buffers (T, B, …), the forward loop
runs t = 0 … T−1 (or backwards), and the backward loop runs the other way, carrying state gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from netdsl.diagnostics import InternalError
from netdsl.ir import IR, Node, TensorType, Value

from . import rules
from .schedule import At, Buf, Call, Grad, Item, Param, Schedule, StateIn, View, walk


@dataclass
class Lowering:
    """State shared by the whole network (buffers, parameter-gradient bookkeeping)."""

    ir: IR
    train: bool
    bufs: list[Buf] = field(default_factory=list)
    param_writers: dict[str, int] = field(default_factory=dict)  # how many times a gradient is written
    accumulate_params: set[str] = field(default_factory=set)
    fuse: bool = True  # use fused kernels where a pass recognises the pattern (prelude cells, conv -> act)
    # conv -> activation pairs of the network's own graph that lower to one kernel (`fuse_activations`):
    # conv node id -> the activation's op, and activation node id -> conv node id
    fused_acts: dict[int, str] = field(default_factory=dict)
    fused_into: dict[int, int] = field(default_factory=dict)
    # embedding -> LSTM pairs that lower to one kernel pair (`fused_rnn.fuse_embeddings`): unroll node id ->
    # the embedding's node id (which then lowers to nothing of its own)
    fused_embeds: dict[int, int] = field(default_factory=dict)

    def new_buf(self, name: str, shape: tuple[int, ...], dtype: str = "f", batched: bool = True, steps: int = 0,
                kind: str = "act") -> Buf:
        b = Buf(len(self.bufs), name, tuple(shape), dtype, batched, steps, kind)
        self.bufs.append(b)
        return b


class Ctx:
    """Lowering context of one graph (the network or a cell body). Rules talk to the schedule through it."""

    def __init__(self, low: Lowering, ir: IR, steps: int = 0) -> None:
        self.low = low
        self.ir = ir
        self.steps = steps  # > 0 inside an unroll body: buffers get a time axis, arguments are At(…)
        self.items: list[Item] = []
        self.vals: dict[Value, Any] = {}  # value -> argument to read it
        self.out_bufs: dict[Value, Buf] = {}
        self.saved: dict[int, dict[str, Any]] = {}  # node id -> what forward saved for backward
        self.requires: dict[Value, bool] = {}
        self.grads: dict[Value, Buf] = {}  # gradient buffers of values
        self.grad_written: set[Value] = set()
        self.pending: list[Call] = []
        self.node: Node | None = None

    # ------------------------------------------------------------------ for rules
    @property
    def train(self) -> bool:
        return self.low.train

    def arg(self, b: Buf | View) -> Any:
        """How a rule passes a buffer it made: at step t inside a body."""
        return At(b) if self.steps else b

    def buf(self, name: str, shape: tuple[int, ...], dtype: str = "f", batched: bool = True, kind: str = "save",
            per_step: bool = True) -> Buf:
        prefix = self.node.name if self.node is not None else "tmp"
        return self.low.new_buf(f"{prefix}.{name}", shape, dtype, batched, self.steps if per_step else 0, kind)

    def ws(self, name: str, elements: int, dtype: str = "f", batched: bool = False) -> Buf:
        """Scratch space for one call; not kept across steps."""
        prefix = self.node.name if self.node is not None else "tmp"
        return self.low.new_buf(f"{prefix}.{name}", (max(1, elements),), dtype, batched, 0, "ws")

    def emit(self, fn: str, *args: Any, note: str = "", result: Buf | None = None) -> None:
        self.items.append(Call(fn, list(args), self.node, note, result))

    def fused_activation(self, node: Node) -> str:
        """The activation op a conv node applies itself (lowering fused its single user into it), or ''."""
        return self.low.fused_acts.get(node.id, "") if self.ir is self.low.ir else ""

    def param(self, node: Node, role: str) -> Param:
        return Param(node.params[role])

    def pgrad(self, node: Node, role: str) -> Any:
        """Where to write the gradient of a parameter (None when it is not trained)."""
        name = node.params[role]
        spec = self.ir.params[name]
        if not spec.trainable or spec.state:
            return None
        if name in self.low.accumulate_params:
            tmp = self.low.new_buf(f"{name}.grad_part", spec.shape, "f", False, 0, "tmp")
            self.pending.append(Call("util.accumulate", [Grad(name), tmp], self.node, "accumulate"))
            return tmp
        return Grad(name)

    def shape_of(self, v: Value) -> TensorType:
        return self.ir.type_of(v)

    def view(self, a: Any, shape: tuple[Any, ...]) -> Any:
        """Reshape an argument (keeping the batch axis as 'B')."""
        if isinstance(a, At):
            return At(View(_base(a.of), shape), a.offset)
        if isinstance(a, StateIn):
            return StateIn(View(_base(a.init), shape), View(_base(a.prev), shape), a.first, a.offset)
        return View(_base(a), shape)

    # ------------------------------------------------------------------ gradients of values
    def needs_grad(self, v: Value) -> bool:
        return self.requires.get(v, False)

    def grad_target(self, v: Value) -> Any:
        """The argument a VJP rule writes v's gradient into (a temporary when v already has a contribution)."""
        if not self.needs_grad(v):
            return None
        g = self.grad_buf(v)
        if v in self.grad_written:
            t = self.shape_of(v)
            tmp = self.low.new_buf(f"{self.node.name if self.node else 'tmp'}.gpart", t.shape, "f", t.batched,
                                   self.steps, "tmp")
            self.pending.append(Call("util.accumulate", [self.arg(g), self.arg(tmp)], self.node, "accumulate"))
            return self.arg(tmp)
        self.grad_written.add(v)
        return self.arg(g)

    def grad_buf(self, v: Value) -> Buf:
        if v not in self.grads:
            t = self.shape_of(v)
            n = self.ir.node(v.node)
            self.grads[v] = self.low.new_buf(f"{n.name}.grad", t.shape, "f", t.batched, self.steps, "grad")
        return self.grads[v]

    def flush(self) -> None:
        self.items.extend(self.pending)
        self.pending = []


def _base(a: Any) -> Buf:
    if isinstance(a, View):
        return a.buf
    if isinstance(a, At):
        return _base(a.of)
    return a


# ====================================================================== analysis


def requires_grad(ir: IR, seed: dict[Value, bool] | None = None) -> dict[Value, bool]:
    """Which values depend on a trainable parameter (or on a seeded value); integer values never do."""
    req: dict[Value, bool] = dict(seed or {})
    for n in ir:
        if n.op == "input":
            for i in range(len(n.outputs)):
                req.setdefault(Value(n.id, i), False)
            continue
        own = any(ir.params[p].trainable and not ir.params[p].state for p in _all_params(n))
        r = own or any(req.get(v, False) for v in n.inputs)
        for i, t in enumerate(n.outputs):
            req[Value(n.id, i)] = r and not t.is_int
    return req


def _all_params(n: Node) -> list[str]:
    names = list(n.params.values())
    if n.body is not None:
        for m in n.body:
            names.extend(_all_params(m))
    return names


def reaches(ir: IR, targets: list[Value]) -> set[int]:
    """Nodes from which one of `targets` can be reached."""
    live = {v.node for v in targets}
    for n in reversed(list(ir)):
        if n.id in live:
            live.update(v.node for v in n.inputs)
    return live


def count_param_writers(ir: IR, mult: int, counts: dict[str, int], once: frozenset[int] = frozenset()) -> None:
    """How many times the backward writes each parameter's gradient (`once`: unrolls whose fused kernel writes
    its cell's gradients once, where an unrolled body writes them at every step)."""
    for n in ir:
        if n.body is not None:
            count_param_writers(n.body, 1 if n.id in once else 2, counts)  # every step writes: accumulate
        for p in n.params.values():
            counts[p] = counts.get(p, 0) + mult


# ====================================================================== the walk


def lower(net: Any, train: bool, fetch: list[str] | None = None, backward: bool | None = None,
          with_loss: bool = True, fuse: bool = True) -> Schedule:
    """Lower what the outputs, the fetched layers and (with_loss) the loss need; backward when training."""
    ir: IR = net.ir
    if backward is None:
        backward = train and ir.loss is not None
    with_loss = (with_loss or backward) and ir.loss is not None
    low = Lowering(ir, train, fuse=fuse)
    ctx = Ctx(low, ir)
    ctx.requires = requires_grad(ir) if backward else {}
    inputs: dict[str, Buf] = {}
    by_name = {n.name: n for n in ir}
    fetch_vals: dict[str, Value] = {}
    for name in fetch or []:
        if name not in by_name:
            raise KeyError(name)
        fetch_vals[name] = Value(by_name[name].id)
    roots = list(ir.outputs.values()) + list(fetch_vals.values()) + ([ir.loss] if with_loss else [])
    needed = reaches(ir, roots)
    if fuse:
        from .fused_rnn import fuse_embeddings

        fuse_activations(low, ir, roots)
        fuse_embeddings(low, ir, roots)
    for n in ir:
        if n.id not in needed:
            continue
        ctx.node = n
        if n.op == "input":
            b = low.new_buf(f"input.{n.name}", n.outputs[0].shape, "i64" if n.outputs[0].is_int else "f", True, 0,
                            "input")
            inputs[n.attrs["name"]] = b
            ctx.vals[Value(n.id)] = b
            ctx.out_bufs[Value(n.id)] = b
            continue
        forward_node(ctx, n)
    outputs = {name: ctx.out_bufs[v] for name, v in ir.outputs.items()}
    loss = ctx.out_bufs[ir.loss] if with_loss else None
    for b in list(outputs.values()) + list({k: ctx.out_bufs[v] for k, v in fetch_vals.items()}.values()):
        b.pinned = True
    if loss is not None:
        loss.pinned = True
    sched = Schedule(ctx.items, low.bufs, inputs, outputs, loss, train,
                     fetch={k: ctx.out_bufs[v] for k, v in fetch_vals.items()})
    if backward:
        sched.backward_start = len(ctx.items)
        backward_pass(ctx, ir, ir.loss)
        sched.items = ctx.items
        sched.grads = sorted({p for p, s in ir.params.items() if s.trainable and not s.state})
    return sched


def fuse_activations(low: Lowering, ir: IR, roots: list[Value]) -> None:
    """Record the conv -> relu/tanh/sigmoid pairs whose convolution applies the activation itself
    (`rules.fusable_activation`), where nothing reads the convolution's own output (an output or a fetch):
    the activation's output is then the convolution's buffer, and its gradient the convolution's."""
    kept = {v.node for v in roots}
    for n in ir:
        if n.id not in kept and rules.fusable_activation(ir, n):
            act = ir.users(n.id)[0][0]
            low.fused_acts[n.id] = ir.node(act).op
            low.fused_into[act] = n.id


def forward_node(ctx: Ctx, n: Node) -> None:
    if ctx.ir is ctx.low.ir and n.id in ctx.low.fused_embeds.values():  # its LSTM reads the ids and the table
        ctx.saved[n.id] = {}
        return
    if ctx.ir is ctx.low.ir and n.id in ctx.low.fused_into:  # computed by its convolution: share its buffer
        conv = Value(ctx.low.fused_into[n.id])
        ctx.out_bufs[Value(n.id)] = ctx.out_bufs[conv]
        ctx.vals[Value(n.id)] = ctx.vals[conv]
        ctx.saved[n.id] = {}
        return
    if n.op == "unroll":
        from .unroll import forward_unroll

        forward_unroll(ctx, n)
        return
    outs = []
    for i, t in enumerate(n.outputs):
        # a constant is the same at every step: one buffer, no time axis (a 0-d step slice would be a copy)
        steps = 0 if n.op == "const" else ctx.steps
        b = ctx.low.new_buf(n.name if i == 0 else f"{n.name}.{i}", t.shape, "i64" if t.is_int else "f", t.batched,
                            steps, "act")
        arg = ctx.arg(b) if steps else b
        ctx.out_bufs[Value(n.id, i)] = b
        ctx.vals[Value(n.id, i)] = arg
        outs.append(arg)
    rule = rules.FORWARD.get(n.op)
    if rule is None:
        raise InternalError(f"no lowering rule for op '{n.op}'", n.span)
    ctx.saved[n.id] = {}
    rule(ctx, n, [ctx.vals[v] for v in n.inputs], outs[0])


def backward_pass(ctx: Ctx, ir: IR, loss: Value) -> None:
    """Reverse walk from the loss (seeded with gradient 1)."""
    low = ctx.low
    counts: dict[str, int] = {}
    fused = frozenset(i for i, sv in ctx.saved.items() if sv.get("fused"))
    count_param_writers(ir, 1, counts, fused)
    low.accumulate_params = {p for p, c in counts.items() if c > 1 and ir.params[p].trainable}
    for p in sorted(low.accumulate_params):
        ctx.items.append(Call("util.zero", [Grad(p)], None, "zero"))
    live = reaches(ir, [loss])
    g = ctx.grad_buf(loss)
    ctx.grad_written.add(loss)
    ctx.node = ir.node(loss.node)
    ctx.emit("util.fill", ctx.arg(g), 1.0, note="seed")
    backward_nodes(ctx, ir, live)


def backward_nodes(ctx: Ctx, ir: IR, live: set[int]) -> None:
    for n in reversed(list(ir)):
        if n.id not in live or n.op in ("input", "const"):
            continue
        if not any(ctx.needs_grad(Value(n.id, i)) for i in range(len(n.outputs))):
            continue
        gouts = [ctx.arg(ctx.grads[Value(n.id, i)]) if Value(n.id, i) in ctx.grad_written else None
                 for i in range(len(n.outputs))]
        if all(g is None for g in gouts):
            continue  # nothing flowed back (e.g. only an unused output reaches the loss)
        ctx.node = n
        if ctx.ir is ctx.low.ir and n.id in ctx.low.fused_into:
            # the convolution applies this activation's backward itself: its gradient is this one's
            conv = Value(ctx.low.fused_into[n.id])
            ctx.grads[conv] = ctx.grads[Value(n.id)]
            ctx.grad_written.add(conv)
            continue
        if n.op == "unroll":
            from .unroll import backward_unroll

            backward_unroll(ctx, n, gouts)
        else:
            rule = rules.BACKWARD.get(n.op)
            if rule is None:
                raise InternalError(f"no gradient rule for op '{n.op}'", n.span)
            ins = [ctx.vals[v] for v in n.inputs]
            gins = [ctx.grad_target(v) for v in n.inputs]
            rule(ctx, n, ins, ctx.vals[Value(n.id)], gouts[0], gins)
        ctx.flush()


def count_calls(sched: Schedule) -> int:
    return sum(1 for _ in walk(sched.items))


def elements(t: TensorType) -> int:
    return math.prod(t.shape)
