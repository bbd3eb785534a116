"""Fused whole-sequence kernels for the prelude's cells (rnn, lstm, gru): chosen by lowering when an unroll
runs the prelude's RNN, LSTM or GRU cell. One input GEMM for all steps, the recurrent GEMM per step and the
gate arithmetic fused, computing exactly the function of the cell written in `netdsl/prelude.net`.
"""

from __future__ import annotations

from typing import Any

from netdsl.ir import Node, Value

from .rules import _empty
from .schedule import Param

# cell -> (parameter roles in kernel order, save buffers as (name, width factor of H))
CELLS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, int], ...]]] = {
    "RNN": (("wx.weight", "wx.bias", "wh.weight"), ()),
    "LSTM": (("f.weight", "f.bias", "i.weight", "i.bias", "o.weight", "o.bias", "g.weight", "g.bias"),
             (("saveG", 4), ("saveC", 1))),
    "GRU": (("z.weight", "z.bias", "r.weight", "r.bias", "h.weight", "h.bias"), (("saveG", 3),)),
}


# recurrent_lstm.GATE_PAD: the padding of the LSTM backward's gate-gradient rows
_GATE_PAD = 16


def fusable(ctx: Any, n: Node) -> bool:
    return bool(n.attrs.get("prelude")) and n.attrs["cell"] in CELLS and not ctx.steps


def fuse_embeddings(low: Any, ir: Any, roots: list[Value]) -> None:
    """Record the embedding -> prelude LSTM pairs of the network's own graph that lower to
    recurrent.lstm_embed_* (recurrent_embed.py: the gates' input terms from a table of the vocabulary): the
    LSTM's sequence is an embedding's output that nothing else reads (no other layer, output or fetch)."""
    kept = {v.node for v in roots}
    for n in ir:
        if n.op != "unroll" or not n.attrs.get("prelude") or n.attrs["cell"] != "LSTM":
            continue
        src = ir.node(n.inputs[0].node)
        if src.op == "embedding" and src.id not in kept and len(ir.users(src.id)) == 1:
            low.fused_embeds[n.id] = src.id


def _workspace(cell: str, b: int, t: int, d: int, h: int, backward: bool) -> tuple[int, int]:
    """(per-example part, constant part) of the kernels' workspace sizes (recurrent.py's helpers)."""
    if cell == "RNN":
        return (2 * t * h + 2 * h, 0) if backward else (h, 0)
    if cell == "LSTM":
        hd = h + d
        if backward:
            return (t * (hd + 1) + 4 * h * t + 4 * h + t * h + t * d + 3 * h,
                    4 * h * h + 4 * h * d + 4 * h * (hd + 1) + 4 * h * _GATE_PAD)
        return ((t + 1) * (hd + 1) + 5 * h, 4 * h * (hd + 1))
    w = 3 * h * d + 3 * h * h
    return (5 * t * h + t * d + 6 * h, 2 * w) if backward else (4 * h, w)


def _embed_workspace(t: int, v: int, d: int, h: int, backward: bool) -> tuple[int, int]:
    """(per-example part, constant part) of recurrent.lstm_embed_*'s workspace: room for either of its paths
    (the table's, or a gather into the plain LSTM kernels' workspace)."""
    plain = _workspace("LSTM", 1, t, d, h, backward)
    plain = (plain[0] + (2 if backward else 1) * t * d, plain[1])
    if backward:
        table = (t * (h + 1) + 4 * h * t + 4 * h + t * h + 3 * h, 4 * h * h + 8 * h * d + 4 * h * (h + 1)
                 + 4 * h * v + 4 * h * _GATE_PAD)
    else:
        table = ((t + 1) * h + 5 * h, 4 * h * (h + d + 1) + 4 * h * v)
    return max(plain[0], table[0]), max(plain[1], table[1])


def _ws(ctx: Any, n: Node, name: str, per_example: int, const: int) -> Any:
    k = per_example + const  # a batched buffer: at least B·per_example + const elements for any B ≥ 1
    return ctx.view(ctx.buf(name, (k,), kind="ws", per_step=False), (f"B*{k}",))


def forward_fused(ctx: Any, n: Node) -> None:
    low = ctx.low
    cell = n.attrs["cell"]
    roles, saves = CELLS[cell]
    steps = n.attrs["steps"]
    t_in = ctx.shape_of(n.inputs[0])
    d = t_in.shape[1]
    h = n.outputs[1].shape[0]
    nstates = len(n.outputs) - 1
    inits = []
    for i in range(nstates):
        if n.attrs["init"]:
            inits.append(ctx.vals[n.inputs[1 + i]])
        else:
            z = low.new_buf(f"{n.name}.state{i}_0", (h,), "f", True, 0, "act")
            ctx.emit("util.zero", z, note="initial state")
            inits.append(z)
    outs = []
    for i, t in enumerate(n.outputs):
        b = low.new_buf(n.name if i == 0 else f"{n.name}.final{i - 1}", t.shape, "f", True, 0, "act")
        ctx.out_bufs[Value(n.id, i)] = b
        ctx.vals[Value(n.id, i)] = b
        outs.append(b)
    save_bufs = [low.new_buf(f"{n.name}.{name}", (steps, k * h), "f", True, 0, "save") for name, k in saves]
    params = [Param(f"{n.name}.{r}") if f"{n.name}.{r}" in ctx.ir.params else _empty(ctx, 1) for r in roles]
    emb = _embedding(ctx, n)
    if emb is not None:  # the ids and the table in place of the embedded sequence
        ws = _ws(ctx, n, "ws", *_embed_workspace(steps, emb.attrs["vocab"], d, h, False))
        ctx.emit("recurrent.lstm_embed_forward", ctx.vals[emb.inputs[0]], Param(emb.params["weight"]), *inits,
                 *params, n.attrs["reverse"], outs[0], *outs[1:], *save_bufs, ws,
                 note=f"fused, with {emb.name}")
        ctx.saved[n.id] = {"fused": True, "inits": inits, "outs": outs, "saves": save_bufs}
        return
    per, const = _workspace(cell, 1, steps, d, h, False)
    ws = _ws(ctx, n, "ws", per, const)
    name = cell.lower()
    ctx.emit(f"recurrent.{name}_forward", ctx.vals[n.inputs[0]], *inits, *params, n.attrs["reverse"], outs[0],
             *outs[1:], *save_bufs, ws, note="fused")
    ctx.saved[n.id] = {"fused": True, "inits": inits, "outs": outs, "saves": save_bufs}


def backward_fused(ctx: Any, n: Node, gouts: list[Any]) -> None:
    low = ctx.low
    cell = n.attrs["cell"]
    roles, _ = CELLS[cell]
    steps = n.attrs["steps"]
    sv = ctx.saved[n.id]
    d = ctx.shape_of(n.inputs[0]).shape[1]
    h = n.outputs[1].shape[0]
    grads_out = []
    for i, g in enumerate(gouts):
        if g is None:
            z = low.new_buf(f"{n.name}.gzero{i}", n.outputs[i].shape, "f", True, 0, "grad")
            ctx.emit("util.zero", z, note="no gradient flows back here")
            g = z
        grads_out.append(g)
    emb = _embedding(ctx, n)
    if emb is not None:  # the table's gradient in place of the sequence's
        gx = ctx.pgrad(emb, "weight")
        need_gx = gx is not None
        if gx is None:
            gx = _empty(ctx, 2)
    else:
        gx = ctx.grad_target(n.inputs[0])
        need_gx = gx is not None
        if gx is None:
            gx = _empty(ctx, 3)
    nstates = len(n.outputs) - 1
    ginit = []
    need_g0 = False
    for i in range(nstates):
        g = ctx.grad_target(n.inputs[1 + i]) if n.attrs["init"] else None
        need_g0 = need_g0 or g is not None
        ginit.append(g)
    if need_g0:  # one flag covers every initial state: give the unneeded ones a scratch buffer
        ginit = [g if g is not None else low.new_buf(f"{n.name}.g0_{i}", (h,), "f", True, 0, "tmp")
                 for i, g in enumerate(ginit)]
    else:
        ginit = [_empty(ctx, 2) for _ in ginit]
    pgrads = []
    for r in roles:
        pname = f"{n.name}.{r}"
        if pname in ctx.ir.params and ctx.ir.params[pname].trainable:
            pgrads.append(ctx.pgrad(_Holder(n, r, pname), r))
        else:
            pgrads.append(_empty(ctx, 1 if r.endswith("bias") else 2))
    weights = [Param(f"{n.name}.{r}") for r in roles if r.endswith("weight")]
    if emb is not None:
        ws = _ws(ctx, n, "ws_bwd", *_embed_workspace(steps, emb.attrs["vocab"], d, h, True))
        xs = [ctx.vals[emb.inputs[0]], Param(emb.params["weight"])]
        name = "lstm_embed"
    else:
        per, const = _workspace(cell, 1, steps, d, h, True)
        ws = _ws(ctx, n, "ws_bwd", per, const)
        xs = [ctx.vals[n.inputs[0]]]
        name = cell.lower()
    args: list[Any] = [grads_out[0], *grads_out[1:], *xs, *sv["inits"], *weights, sv["outs"][0], *sv["saves"],
                       n.attrs["reverse"], gx, *ginit, *pgrads, need_gx, need_g0, ws]
    ctx.emit(f"recurrent.{name}_backward", *args, note="fused BPTT" + (f", with {emb.name}" if emb else ""))


def _embedding(ctx: Any, n: Node) -> Node | None:
    """The embedding whose ids and table the LSTM n reads itself (`fuse_embeddings`), if any."""
    e = ctx.low.fused_embeds.get(n.id) if ctx.ir is ctx.low.ir else None
    return None if e is None else ctx.ir.node(e)


class _Holder:
    """Presents a prelude cell's parameter as if a node owned it (for gradient bookkeeping)."""

    def __init__(self, n: Node, role: str, pname: str) -> None:
        self.params = {role: pname}
        self.name = n.name
