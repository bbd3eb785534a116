"""Lowering of an unroll: one loop over time around its cell's calls, and backprop through time.

Layouts: the sequence (B, T, …) is copied time-major to (T, B, …) so each step's slice is contiguous; every value
the cell computes gets a time axis (T, B, …) so the backward loop finds what step t saved. A state is carried
in its own (T, B, …) buffer (the new state after step t); a step's state input is the initial state on the
first step, else the carry of the previous step.
"""

from __future__ import annotations

import math
from typing import Any

from netdsl.diagnostics import InternalError
from netdsl.ir import Node, Value

from .lower import Ctx, backward_nodes, forward_node, reaches, requires_grad
from .schedule import At, Buf, Loop, StateIn, View


def _rows(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def forward_unroll(ctx: Ctx, n: Node) -> None:
    from .fused_rnn import forward_fused, fusable

    if fusable(ctx, n) and ctx.low.fuse:
        forward_fused(ctx, n)
        return
    if ctx.steps:
        raise InternalError("an unroll inside a cell is not supported yet", n.span)
    low = ctx.low
    body = n.body
    steps, reverse = n.attrs["steps"], n.attrs["reverse"]
    first = steps - 1 if reverse else 0
    seq_v = n.inputs[0]
    seq_t = ctx.shape_of(seq_v)
    step_shape = seq_t.shape[1:]
    dt = "i64" if seq_t.is_int else "f"
    r = _rows(step_shape)
    xs = low.new_buf(f"{n.name}.xs", step_shape, dt, True, steps, "act")
    ctx.emit("util.time_major", ctx.view(ctx.vals[seq_v], ("B", steps, r)), View(xs, ("B", r)), note="time-major")
    inputs = [m for m in body if m.op == "input"]
    bctx = Ctx(low, body, steps)
    seed = {Value(inputs[0].id): ctx.needs_grad(seq_v) if ctx.train else False}
    for m in inputs[1:]:
        seed[Value(m.id)] = ctx.train and not m.outputs[0].is_int
    bctx.requires = requires_grad(body, seed) if ctx.train else {}
    bctx.vals[Value(inputs[0].id)] = At(xs)
    bctx.out_bufs[Value(inputs[0].id)] = xs
    carries: list[Buf] = []
    inits: list[Any] = []
    for i, m in enumerate(inputs[1:]):
        t = m.outputs[0]
        if n.attrs["init"]:
            init = ctx.vals[n.inputs[1 + i]]
        else:
            init = low.new_buf(f"{n.name}.{m.attrs['name']}0", t.shape, "f", True, 0, "act")
            ctx.emit("util.zero", init, note="initial state")
        carry = low.new_buf(f"{n.name}.{m.attrs['name']}", t.shape, "f", True, steps, "act")
        carries.append(carry)
        inits.append(init)
        bctx.vals[Value(m.id)] = StateIn(init, carry, str(first), 1 if reverse else -1)
    for m in body:
        if m.op == "input":
            continue
        bctx.node = m
        forward_node(bctx, m)
    bctx.node = n
    for i, carry in enumerate(carries):
        bctx.emit("util.copy", At(carry), bctx.vals[body.outputs[f"state{i}"]], note="carry state")
    yv = body.outputs["y"]
    y_arg = bctx.vals[yv]
    if not (isinstance(y_arg, At) and isinstance(y_arg.of, Buf) and y_arg.offset == 0):
        ybuf = low.new_buf(f"{n.name}.y", ctx.shape_of(Value(n.id)).shape[1:], "f", True, steps, "act")
        bctx.emit("util.copy", At(ybuf), y_arg, note="step output")
        y_arg = At(ybuf)
    ctx.items.append(Loop(steps, reverse, bctx.items, n))
    ys_t = n.outputs[0]
    ys = low.new_buf(n.name, ys_t.shape, "f", True, 0, "act")
    ctx.out_bufs[Value(n.id, 0)] = ys
    ctx.vals[Value(n.id, 0)] = ys
    yr = _rows(ys_t.shape[1:])
    ctx.emit("util.batch_major", View(y_arg.of, ("B", yr)), View(ys, ("B", steps, yr)), note="outputs")
    last = 0 if reverse else steps - 1
    for i, carry in enumerate(carries):
        fb = low.new_buf(f"{n.name}.final{i}", n.outputs[1 + i].shape, "f", True, 0, "act")
        ctx.out_bufs[Value(n.id, 1 + i)] = fb
        ctx.vals[Value(n.id, 1 + i)] = fb
        ctx.emit("util.copy", fb, At(carry, fixed=last), note="final state")
    ctx.saved[n.id] = {"bctx": bctx, "xs": xs, "carries": carries, "y": yv, "inputs": inputs}


def backward_unroll(ctx: Ctx, n: Node, gouts: list[Any]) -> None:
    if ctx.saved[n.id].get("fused"):
        from .fused_rnn import backward_fused

        backward_fused(ctx, n, gouts)
        return
    low = ctx.low
    sv = ctx.saved[n.id]
    bctx: Ctx = sv["bctx"]
    body = n.body
    steps, reverse = n.attrs["steps"], n.attrs["reverse"]
    last = 0 if reverse else steps - 1
    inputs = sv["inputs"]
    bctx.items = []
    bctx.grad_written = set()
    bctx.grads = {}
    gys = None
    if gouts[0] is not None:
        yt = n.outputs[0]
        yr = _rows(yt.shape[1:])
        gys = low.new_buf(f"{n.name}.gys", yt.shape[1:], "f", True, steps, "grad")
        ctx.emit("util.time_major", ctx.view(gouts[0], ("B", steps, yr)), View(gys, ("B", yr)), note="time-major")
    gstate_in = []
    for m in inputs[1:]:
        g = bctx.grad_buf(Value(m.id))
        ctx.emit("util.zero", g, note="state gradients")
        gstate_in.append(g)
    gfinal = []
    for i, g in enumerate(gouts[1:]):
        if g is None:
            z = low.new_buf(f"{n.name}.gfinal{i}", n.outputs[1 + i].shape, "f", True, 0, "grad")
            ctx.emit("util.zero", z, note="no gradient for the final state")
            g = z
        gfinal.append(g)
    bctx.node = n
    if gys is not None:
        tgt = bctx.grad_target(sv["y"])
        if tgt is not None:
            bctx.emit("util.copy", tgt, At(gys), note="output gradient")
        bctx.flush()
    for i in range(len(gfinal)):
        tgt = bctx.grad_target(body.outputs[f"state{i}"])
        if tgt is not None:
            bctx.emit("util.copy", tgt, StateIn(gfinal[i], gstate_in[i], str(last), -1 if reverse else 1),
                      note="state gradient from the next step")
        bctx.flush()
    roots = [body.outputs["y"]] + [body.outputs[f"state{i}"] for i in range(len(gfinal))]
    backward_nodes(bctx, body, reaches(body, roots))
    ctx.items.append(Loop(steps, not reverse, bctx.items, n))
    seq_v = n.inputs[0]
    xv = Value(inputs[0].id)
    if ctx.needs_grad(seq_v):
        tgt = ctx.grad_target(seq_v)
        st = ctx.shape_of(seq_v)
        r = _rows(st.shape[1:])
        if xv in bctx.grad_written:
            ctx.emit("util.batch_major", View(bctx.grads[xv], ("B", r)), ctx.view(tgt, ("B", steps, r)),
                     note="input gradients")
        else:
            ctx.emit("util.zero", tgt, note="the cell ignores its input")
    if n.attrs["init"]:
        for i, g in enumerate(gstate_in):
            iv = n.inputs[1 + i]
            if ctx.needs_grad(iv):
                tgt = ctx.grad_target(iv)
                first = steps - 1 if reverse else 0
                ctx.emit("util.copy", tgt, At(g, fixed=first), note="initial state gradient")
    ctx.items.extend(ctx.pending)
    ctx.pending = []
