"""Lowering rules of the sequence ops: embeddings, positions, attention (registered into `rules`' tables)."""

from __future__ import annotations

import math
from typing import Any

from netdsl.ir import Node

from .parallel import lanes
from .rules import _empty, _gx, _in, _pg, backward, forward


def _ids_view(ctx: Any, n: Node) -> tuple[str]:
    t = _in(ctx, n)
    k = math.prod(t.shape)
    return ("B" if k == 1 else f"B*{k}",)


@forward("embedding")
def embedding_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    v = _ids_view(ctx, n)
    ctx.emit("embed.embedding_forward", ctx.view(ins[0], v), ctx.param(n, "weight"),
             ctx.view(out, v + (n.attrs["dim"],)))


@backward("embedding")
def embedding_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    gw, need = _pg(ctx, n, "weight", 2)
    if need:
        v = _ids_view(ctx, n)
        ctx.emit("embed.embedding_backward", ctx.view(gout, v + (n.attrs["dim"],)), ctx.view(ins[0], v), gw)


def _rows(ctx: Any, n: Node) -> str:
    k = math.prod(_in(ctx, n).shape[:-1])
    return "B" if k == 1 else f"B*{k}"


@forward("unembed")
def unembed_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    r = _rows(ctx, n)
    ctx.emit("embed.unembed_forward", ctx.view(ins[0], (r, n.attrs["dim"])), ctx.param(n, "weight"),
             ctx.view(out, (r, n.attrs["vocab"])))


@backward("unembed")
def unembed_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    r = _rows(ctx, n)
    d = n.attrs["dim"]
    gx, need_gx = _gx(ctx, gins[0], 2)
    gw, need_gw = _pg(ctx, n, "weight", 2)  # tied: a second contribution to the embedding's gradient
    ctx.emit("embed.unembed_backward", ctx.view(gout, (r, n.attrs["vocab"])), ctx.view(ins[0], (r, d)),
             ctx.param(n, "weight"), ctx.view(gx, (r, d)) if need_gx else gx, gw, need_gx, need_gw)


@forward("positional_encoding")
def posenc_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("embed.positional_encoding_forward", ins[0], out)


@backward("positional_encoding")
def posenc_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("embed.positional_encoding_backward", gout, gins[0])


@forward("positional_embedding")
def posemb_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("embed.positional_embedding_forward", ins[0], ctx.param(n, "weight"), out)


@backward("positional_embedding")
def posemb_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    gx, need_gx = _gx(ctx, gins[0], 3)
    gt, need_gt = _pg(ctx, n, "weight", 2)
    if not need_gt:
        gt = ctx.arg(ctx.buf("gtable_unused", ctx.ir.params[n.params["weight"]].shape, batched=False, kind="tmp"))
    ctx.emit("embed.positional_embedding_backward", gout, gx, gt, need_gx)


# ----------------------------------------------------------------------------- attention


def _qkv(n: Node) -> list[Any]:
    q = n.inputs[0]
    k = n.inputs[1] if len(n.inputs) > 1 else q
    v = n.inputs[2] if len(n.inputs) > 2 else k
    return [q, k, v]


def _dims(ctx: Any, n: Node) -> tuple[int, int, int, int]:
    q, k, _ = (ctx.shape_of(x) for x in _qkv(n))
    tq, d = q.shape
    return tq, k.shape[0], d, n.attrs["heads"]


def _bias(ctx: Any, n: Node, role: str) -> Any:
    return ctx.param(n, f"{role}.bias") if f"{role}.bias" in n.params else _empty(ctx, 1)


@forward("attention")
def attention_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    tq, tk, d, h = _dims(ctx, n)
    args = [ctx.vals[x] for x in _qkv(n)]
    saves = {"Q": ctx.buf("Q", (tq, d)), "K": ctx.buf("K", (tk, d)), "V": ctx.buf("V", (tk, d)),
             "P": ctx.buf("P", (h, tq, tk)), "Ctx": ctx.buf("ctx", (tq, d))}
    ctx.saved[n.id].update({k: ctx.arg(b) for k, b in saves.items()})
    dk = d // h
    ws = ctx.ws("ws", lanes() * (2 * tq * dk + 2 * tk * dk))  # one head's scratch per lane
    params = []
    for role in ("q", "k", "v", "out"):
        params += [ctx.param(n, f"{role}.weight"), _bias(ctx, n, role)]
    ctx.emit("attention.attention_forward", *args, *params, h, n.attrs["causal"], out,
             *(ctx.arg(saves[k]) for k in ("Q", "K", "V", "P", "Ctx")), ws)


@backward("attention")
def attention_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    tq, tk, d, h = _dims(ctx, n)
    qkv = _qkv(n)
    # self-attention reads one value three times: each role's gradient is its own contribution
    targets = list(gins) + [ctx.grad_target(qkv[i]) for i in range(len(gins), 3)]
    grads = [_gx(ctx, g, 3) for g in targets]
    pgrads = []
    for role in ("q", "k", "v", "out"):
        gw, _ = _pg(ctx, n, f"{role}.weight", 2)
        gb, _ = _pg(ctx, n, f"{role}.bias", 1)
        pgrads += [gw, gb]
    dk = d // h
    # the workspace holds whole-batch terms (B·Tq·D + 2·B·Tk·D) plus per-head scratch: one batched buffer
    # of that much per example covers it at every batch size, seen as one flat array
    k = tq * d + 2 * tk * d + 3 * tq * dk + 4 * tk * dk + tq * tk
    ws = ctx.view(ctx.buf("ws_bwd", (k,), kind="ws", per_step=False), (f"B*{k}",))
    s = ctx.saved[n.id]
    ctx.emit("attention.attention_backward", gout, *(ctx.vals[x] for x in qkv),
             *(ctx.param(n, f"{r}.weight") for r in ("q", "k", "v", "out")), h,
             *(s[k] for k in ("Q", "K", "V", "P", "Ctx")), *(g for g, _ in grads), *pgrads,
             *(need for _, need in grads), ws)
