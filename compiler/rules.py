"""Lowering rules: for each op, the kernel calls of its forward pass and of its vector-Jacobian product.

`FORWARD[op](ctx, node, ins, out)` and `BACKWARD[op](ctx, node, ins, out, gout, gins)`. `ins`/`out` are the
arguments to read the node's inputs and output; `gout` its output gradient; `gins` where to write each input's
gradient (None where no gradient is needed). Kernels see per-op canonical views: (N, C, S) for normalisation,
(A, L, I) for an axis, batch axis first; 'B' in a view shape is the batch, 'B*k' the batch times k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from netdsl.diagnostics import Diagnostic, SpecError
from netdsl.ir import Node, TensorType
from netdsl.ops.table import channel_axis

from .parallel import lanes
from .schedule import Expr, Scalar

FORWARD: dict[str, Callable[..., None]] = {}
BACKWARD: dict[str, Callable[..., None]] = {}


def forward(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def deco(f: Callable[..., None]) -> Callable[..., None]:
        for n in names:
            FORWARD[n] = f
        return f

    return deco


def backward(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def deco(f: Callable[..., None]) -> Callable[..., None]:
        for n in names:
            BACKWARD[n] = f
        return f

    return deco


def _batch(k: int) -> str:
    return "B" if k == 1 else f"B*{k}"


def _in(ctx: Any, n: Node, i: int = 0) -> TensorType:
    return ctx.shape_of(n.inputs[i])


def _empty(ctx: Any, rank: int = 1) -> Any:
    """A zero-size array of the given rank: an absent bias, or an unneeded gradient output."""
    b = ctx.ws("none", 0)
    b.shape = (0,)
    return ctx.view(b, (0,) * rank)


def _pg(ctx: Any, n: Node, role: str, rank: int) -> tuple[Any, bool]:
    if role not in n.params:
        return _empty(ctx, rank), False
    g = ctx.pgrad(n, role)
    return (g, True) if g is not None else (_empty(ctx, rank), False)


def _gx(ctx: Any, g: Any, rank: int) -> tuple[Any, bool]:
    return (g, True) if g is not None else (_empty(ctx, rank), False)


def _bias(ctx: Any, n: Node) -> Any:
    return ctx.param(n, "bias") if "bias" in n.params else _empty(ctx, 1)


# ----------------------------------------------------------------------------- conv & pooling


def _conv_geometry(ctx: Any, n: Node) -> tuple[int, ...]:
    c = _in(ctx, n).shape[0]
    k, p, q = n.outputs[0].shape
    kh, kw = n.attrs["kernel"]
    return c, k, kh, kw, p, q


_CHUNK = 1 << 20  # conv.py's chunk of workspace: its workspace-size helpers, restated without importing Numba
_WINO_BUDGET = 1 << 22  # winograd.py's BUDGET


def _winograd_applies(n: Node, c: int, k: int, kh: int, kw: int, p: int, q: int) -> bool:
    a = n.attrs
    return (kh == kw == 3 and tuple(a["stride"]) == (1, 1) and tuple(a["dilation"]) == (1, 1) and a["groups"] == 1
            and c >= 16 and k >= 16 and p >= 4 and q >= 4)


_FEW_FILTERS = 32  # conv_few.py's: fewer filters take the transposed columns or the direct loops
_DIRECT_TAPS = 160  # conv_few.py's: at most this many taps (stride 1, no padding) take conv_direct.py's loops


def _conv_kernel(n: Node, c: int, k: int, kh: int, kw: int, p: int, q: int) -> str:
    """The conv kernel pair a layer lowers to: the Winograd one for 3×3 stride-1 layers, for layers with few
    filters conv_direct.py's loops or conv_few.py's transposed columns, else the general im2col one. A network
    compiles only the paths its layers take (LeNet-5: no im2col and no Winograd, seconds of cold compile)."""
    if _winograd_applies(n, c, k, kh, kw, p, q):
        return "conv.conv2d_winograd"
    a = n.attrs
    unit = tuple(a["stride"]) == (1, 1) and tuple(a["pad"]) == (0, 0) and tuple(a["dilation"]) == (1, 1)
    if a["groups"] != 1 or k >= _FEW_FILTERS or (kh == kw == 1 and unit):
        return "conv.conv2d"
    return "conv.conv2d_direct" if unit and c * kh * kw <= _DIRECT_TAPS else "conv.conv2d_few"


def _conv_ws(n: Node, c: int, k: int, kh: int, kw: int, p: int, q: int, backward: bool) -> int:
    """conv.py's conv2d_(backward_)workspace_size: one scratch area per lane (parallel.lanes()), and room for
    the Winograd path (winograd.py) where the geometry may take it."""
    g = n.attrs["groups"]
    ck = (c // g) * kh * kw
    direct = 0  # conv_direct.py's direct_room: its planes can pass the chunk on a tall narrow image
    if _conv_kernel(n, c, k, kh, kw, p, q) == "conv.conv2d_direct":
        lw = (p - 1) * (q + kw - 1) + q
        rounded = (lw + 15) // 16 * 16  # conv_direct.direct_wide: the backward's rows rounded up to 16
        direct = k * (rounded + 2 * (kw - 1)) + k if backward else 2 * lw
    if backward:
        lane = max((2 * ck + k) * p * q, _CHUNK, direct) + (k // g) * ck + k * ck
    else:
        lane = max((ck + k // g) * p * q, _CHUNK, direct)
    if not _winograd_applies(n, c, k, kh, kw, p, q):
        return lanes() * lane
    image = ((p + 3) // 4) * ((q + 3) // 4) * 36 * (c + k) + (p + 2) * (q + 2) * c + p * q * k
    fixed = 100 * max(c, k) + 21 * 512  # winograd.py's _fixed (FB = 512)
    wino = (45 * k * c if backward else 0) + max(image, _WINO_BUDGET) + fixed
    return 36 * k * c + lanes() * max(wino, lane)


# activations a direct convolution applies itself (conv_direct.py's ACT_* codes): lowering fuses conv -> act where
# the convolution's output feeds nothing else (`fusable_activation`)
FUSED_ACTS = {"relu": 1, "tanh": 2, "sigmoid": 3}


def fusable_activation(ir: Any, n: Node) -> bool:
    """Whether a conv node `n` may apply its single user's activation itself: it lowers to the direct kernels
    (conv_direct.py), and that user is a relu, tanh or sigmoid (the caller checks that nothing else needs the
    convolution's own output: an output, a fetch)."""
    if n.op != "conv":
        return False
    users = ir.users(n.id)
    if len(users) != 1 or ir.node(users[0][0]).op not in FUSED_ACTS:
        return False
    c = ir.type_of(n.inputs[0]).shape[0]
    k, p, q = n.outputs[0].shape
    kh, kw = n.attrs["kernel"]
    return _conv_kernel(n, c, k, kh, kw, p, q) == "conv.conv2d_direct"


@forward("conv")
def conv_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    c, k, kh, kw, p, q = _conv_geometry(ctx, n)
    a = n.attrs
    ws = ctx.ws("cols", _conv_ws(n, c, k, kh, kw, p, q, False))
    kernel = _conv_kernel(n, c, k, kh, kw, p, q)
    if kernel == "conv.conv2d_direct":  # with the activation lowering fused into it, if any (else 0)
        fused = ctx.fused_activation(n)
        ctx.emit("conv.conv2d_direct_forward", ins[0], ctx.param(n, "weight"), _bias(ctx, n), *a["stride"],
                 *a["pad"], *a["dilation"], a["groups"], FUSED_ACTS.get(fused, 0), out, ws,
                 note=f"+{fused}" if fused else "")
        return
    ctx.emit(f"{kernel}_forward", ins[0], ctx.param(n, "weight"), _bias(ctx, n), *a["stride"], *a["pad"],
             *a["dilation"], a["groups"], out, ws)


@backward("conv")
def conv_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    c, k, kh, kw, p, q = _conv_geometry(ctx, n)
    a = n.attrs
    gx, need_gx = _gx(ctx, gins[0], 4)
    gw, need_gw = _pg(ctx, n, "weight", 4)
    gb, _ = _pg(ctx, n, "bias", 1)
    ws = ctx.ws("gcols", _conv_ws(n, c, k, kh, kw, p, q, True))
    kernel = _conv_kernel(n, c, k, kh, kw, p, q)
    if kernel == "conv.conv2d_direct":  # gout is the fused activation's output gradient, out its output
        fused = ctx.fused_activation(n)
        ctx.emit("conv.conv2d_direct_backward", gout, out if fused else gout, ins[0], ctx.param(n, "weight"),
                 *a["stride"], *a["pad"], *a["dilation"], a["groups"], FUSED_ACTS.get(fused, 0), gx, gw, gb,
                 need_gx, need_gw, ws, note=f"+{fused}" if fused else "")
        return
    ctx.emit(f"{kernel}_backward", gout, ins[0], ctx.param(n, "weight"), *a["stride"], *a["pad"], *a["dilation"],
             a["groups"], gx, gw, gb, need_gx, need_gw, ws)


@forward("maxpool")
def maxpool_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    a = n.attrs
    argmax = ctx.buf("argmax", n.outputs[0].shape, "i64")
    ctx.saved[n.id]["argmax"] = ctx.arg(argmax)
    ctx.emit("pool.maxpool2d_forward", ins[0], *a["size"], *a["stride"], *a["pad"], out, ctx.arg(argmax))


@backward("maxpool")
def maxpool_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("pool.maxpool2d_backward", gout, ctx.saved[n.id]["argmax"], gins[0])


@forward("avgpool")
def avgpool_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    a = n.attrs
    ctx.emit("pool.avgpool2d_forward", ins[0], *a["size"], *a["stride"], *a["pad"], out)


@backward("avgpool")
def avgpool_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    a = n.attrs
    ctx.emit("pool.avgpool2d_backward", gout, *a["size"], *a["stride"], *a["pad"], gins[0])


def _planes(ctx: Any, n: Node) -> tuple[int, int]:
    c, h, w = _in(ctx, n).shape
    return c, h * w


@forward("global_avgpool")
def gap_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    c, s = _planes(ctx, n)
    ctx.emit("pool.global_avgpool_forward", ctx.view(ins[0], ("B", c, s)), out)


@backward("global_avgpool")
def gap_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    c, s = _planes(ctx, n)
    ctx.emit("pool.global_avgpool_backward", gout, ctx.view(gins[0], ("B", c, s)))


# ----------------------------------------------------------------------------- normalisation


@forward("lrn")
def lrn_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    c, s = _planes(ctx, n)
    a = n.attrs
    scale = ctx.buf("scale", (c, s))
    ctx.saved[n.id]["scale"] = ctx.arg(scale)
    ctx.emit("norm.lrn_forward", ctx.view(ins[0], ("B", c, s)), a["size"], a["alpha"], a["beta"], a["k"],
             ctx.view(out, ("B", c, s)), ctx.arg(scale))


@backward("lrn")
def lrn_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    c, s = _planes(ctx, n)
    a = n.attrs
    v = ("B", c, s)
    ctx.emit("norm.lrn_backward", ctx.view(gout, v), ctx.view(ins[0], v), ctx.view(out, v), ctx.saved[n.id]["scale"],
             a["size"], a["alpha"], a["beta"], ctx.view(gins[0], v))


def _ncs(t: TensorType) -> tuple[Any, ...]:
    """batchnorm's (N, C, S) view: per channel over the batch and the other axes."""
    ax = channel_axis(t.rank)
    if ax == 0:
        return ("B", t.shape[0], math.prod(t.shape[1:]))
    return (_batch(math.prod(t.shape[:-1])), t.shape[-1], 1)


@forward("batchnorm")
def bn_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    t = _in(ctx, n)
    v = _ncs(t)
    a = n.attrs
    p = {r: ctx.param(n, r) for r in ("weight", "bias", "running_mean", "running_var")}
    if ctx.train:
        c = v[1]
        mean, invstd = ctx.buf("mean", (c,), batched=False), ctx.buf("invstd", (c,), batched=False)
        ctx.saved[n.id].update(mean=ctx.arg(mean), invstd=ctx.arg(invstd))
        ctx.emit("norm.batchnorm_forward_train", ctx.view(ins[0], v), p["weight"], p["bias"], a["eps"],
                 a["momentum"], p["running_mean"], p["running_var"], Expr("update"), ctx.view(out, v),
                 ctx.arg(mean), ctx.arg(invstd))
    else:
        ctx.emit("norm.batchnorm_forward_eval", ctx.view(ins[0], v), p["weight"], p["bias"], p["running_mean"],
                 p["running_var"], a["eps"], ctx.view(out, v))


@backward("batchnorm")
def bn_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    v = _ncs(_in(ctx, n))
    gx, need_gx = _gx(ctx, gins[0], 3)
    gw, _ = _pg(ctx, n, "weight", 1)
    gb, _ = _pg(ctx, n, "bias", 1)
    s = ctx.saved[n.id]
    ctx.emit("norm.batchnorm_backward", ctx.view(gout, v), ctx.view(ins[0], v), ctx.param(n, "weight"), s["mean"],
             s["invstd"], ctx.view(gx, v) if need_gx else gx, gw, gb, need_gx)


@forward("layernorm")
def ln_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    t = _in(ctx, n)
    rows, d = math.prod(t.shape[:-1]), t.shape[-1]
    v = (_batch(rows), d)
    mean, invstd = ctx.buf("mean", (rows,)), ctx.buf("invstd", (rows,))
    ctx.saved[n.id].update(mean=ctx.arg(mean), invstd=ctx.arg(invstd))
    ctx.emit("norm.layernorm_forward", ctx.view(ins[0], v), ctx.param(n, "weight"), _bias(ctx, n), n.attrs["eps"],
             ctx.view(out, v), ctx.view(ctx.arg(mean), (_batch(rows),)), ctx.view(ctx.arg(invstd), (_batch(rows),)))


@backward("layernorm")
def ln_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    t = _in(ctx, n)
    rows, d = math.prod(t.shape[:-1]), t.shape[-1]
    v = (_batch(rows), d)
    gx, need_gx = _gx(ctx, gins[0], 2)
    gw, _ = _pg(ctx, n, "weight", 1)
    gb, _ = _pg(ctx, n, "bias", 1)
    s = ctx.saved[n.id]
    ctx.emit("norm.layernorm_backward", ctx.view(gout, v), ctx.view(ins[0], v), ctx.param(n, "weight"),
             ctx.view(s["mean"], (_batch(rows),)), ctx.view(s["invstd"], (_batch(rows),)),
             ctx.view(gx, v) if need_gx else gx, gw, gb, need_gx)


# ----------------------------------------------------------------------------- linear


def _rows(t: TensorType) -> tuple[str, int]:
    return _batch(math.prod(t.shape[:-1])), t.shape[-1]


@forward("dense")
def dense_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    t = _in(ctx, n)
    nb, d = _rows(t)
    ctx.emit("dense.dense_forward", ctx.view(ins[0], (nb, d)), ctx.param(n, "weight"), _bias(ctx, n),
             ctx.view(out, (nb, n.attrs["units"])))


@backward("dense")
def dense_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    t = _in(ctx, n)
    nb, d = _rows(t)
    gx, need_gx = _gx(ctx, gins[0], 2)
    gw, need_gw = _pg(ctx, n, "weight", 2)
    gb, _ = _pg(ctx, n, "bias", 1)
    ctx.emit("dense.dense_backward", ctx.view(gout, (nb, n.attrs["units"])), ctx.view(ins[0], (nb, d)),
             ctx.param(n, "weight"), ctx.view(gx, (nb, d)) if need_gx else gx, gw, gb, need_gx, need_gw)


def _mm_views(ctx: Any, n: Node) -> tuple[tuple[Any, ...], ...]:
    a, b = _in(ctx, n, 0), _in(ctx, n, 1)
    lead = _batch(math.prod(a.shape[:-2]))
    o = n.outputs[0]
    return (lead, *a.shape[-2:]), (lead, *b.shape[-2:]), (lead, *o.shape[-2:])


@forward("matmul")
def matmul_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    va, vb, vo = _mm_views(ctx, n)
    ctx.emit("dense.matmul_forward", ctx.view(ins[0], va), ctx.view(ins[1], vb), ctx.view(out, vo))


@backward("matmul")
def matmul_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    va, vb, vo = _mm_views(ctx, n)
    ga, need_a = _gx(ctx, gins[0], 3)
    gb, need_b = _gx(ctx, gins[1], 3)
    ctx.emit("dense.matmul_backward", ctx.view(gout, vo), ctx.view(ins[0], va), ctx.view(ins[1], vb),
             ctx.view(ga, va) if need_a else ga, ctx.view(gb, vb) if need_b else gb, need_a, need_b, _empty(ctx, 1))


# ----------------------------------------------------------------------------- activations


@forward("relu", "sigmoid", "tanh", "gelu", "identity")
def unary_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit(f"activation.{n.op}_forward", ins[0], out)


@backward("relu", "sigmoid", "tanh")
def unary_y_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit(f"activation.{n.op}_backward", gout, out, gins[0])  # these derivatives need only the output


@backward("gelu")
def gelu_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("activation.gelu_backward", gout, ins[0], gins[0])


@backward("identity")
def identity_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("activation.identity_backward", gout, gins[0])


@forward("leaky_relu")
def leaky_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("activation.leaky_relu_forward", ins[0], n.attrs["a"], out)


@backward("leaky_relu")
def leaky_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("activation.leaky_relu_backward", gout, ins[0], n.attrs["a"], gins[0])


def _axis_view(t: TensorType, axis: int) -> tuple[Any, ...]:
    ax = axis % t.rank
    return (_batch(math.prod(t.shape[:ax])), t.shape[ax], math.prod(t.shape[ax + 1 :]))


@forward("softmax")
def softmax_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    v = _axis_view(_in(ctx, n), n.attrs["axis"])
    ctx.emit("activation.softmax_forward", ctx.view(ins[0], v), ctx.view(out, v))


@backward("softmax")
def softmax_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    v = _axis_view(_in(ctx, n), n.attrs["axis"])
    ctx.emit("activation.softmax_backward", ctx.view(gout, v), ctx.view(out, v), ctx.view(gins[0], v))


def _dropout_id(ctx: Any, n: Node) -> Any:
    return Expr(f"{n.id} + 1000003 * t") if ctx.steps else n.id  # a fresh mask at every time step


@forward("dropout")
def dropout_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    if ctx.train and n.attrs["p"] > 0:
        ctx.emit("activation.dropout_forward", ins[0], n.attrs["p"], Expr("seed"), Expr("step"), _dropout_id(ctx, n),
                 out)
    else:
        ctx.emit("activation.identity_forward", ins[0], out)


@backward("dropout")
def dropout_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    if ctx.train and n.attrs["p"] > 0:
        ctx.emit("activation.dropout_backward", gout, n.attrs["p"], Expr("seed"), Expr("step"), _dropout_id(ctx, n),
                 gins[0])
    else:
        ctx.emit("activation.identity_backward", gout, gins[0])


# ----------------------------------------------------------------------------- elementwise


def _bcast_view(t: TensorType, out: TensorType) -> tuple[Any, ...]:
    """An operand seen at the output's rank (plus the batch axis), size-1 axes where it broadcasts."""
    pad = (1,) * (out.rank - t.rank) + t.shape
    lead: Any = "B" if t.batched else 1
    if not out.batched:
        lead = 1
    return (lead,) + pad


@forward("add", "sub", "mul", "div")
def binary_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    o = n.outputs[0]
    va, vb = _bcast_view(_in(ctx, n, 0), o), _bcast_view(_in(ctx, n, 1), o)
    ctx.emit(f"elementwise.{n.op}_forward", ctx.view(ins[0], va), ctx.view(ins[1], vb),
             ctx.view(out, _bcast_view(o, o)))


@backward("add", "sub", "mul", "div")
def binary_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    o = n.outputs[0]
    va, vb = _bcast_view(_in(ctx, n, 0), o), _bcast_view(_in(ctx, n, 1), o)
    r = o.rank + 1
    ga, need_a = _gx(ctx, gins[0], r)
    gb, need_b = _gx(ctx, gins[1], r)
    ctx.emit(f"elementwise.{n.op}_backward", ctx.view(gout, _bcast_view(o, o)), ctx.view(ins[0], va),
             ctx.view(ins[1], vb), ctx.view(ga, va) if need_a else ga, ctx.view(gb, vb) if need_b else gb,
             need_a, need_b)


@forward("neg")
def neg_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("elementwise.neg_forward", ins[0], out)


@backward("neg")
def neg_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("elementwise.neg_backward", gout, gins[0])


@forward("const")
def const_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("util.fill", out, float(n.attrs["value"]))


# ----------------------------------------------------------------------------- shape ops


@forward("flatten", "reshape")
def reshape_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("shape.reshape_forward", ins[0], out)


@backward("flatten", "reshape")
def reshape_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("shape.reshape_backward", gout, gins[0])


def _perm(n: Node) -> Expr:
    full = [0] + [1 + p for p in n.attrs["perm"]]
    return Expr(f"np.array({full}, dtype=np.int64)")


@forward("transpose")
def transpose_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("shape.transpose_forward", ins[0], _perm(n), out)


@backward("transpose")
def transpose_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ctx.emit("shape.transpose_backward", gout, _perm(n), gins[0])


def _concat_axis(ctx: Any, n: Node) -> int:
    t = _in(ctx, n)
    ax = n.attrs["axis"]
    return channel_axis(t.rank) if ax is None else ax % t.rank


@forward("concat")
def concat_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ax = _concat_axis(ctx, n)
    o = n.outputs[0]
    offset = 0
    for i, a in enumerate(ins):
        t = _in(ctx, n, i)
        ctx.emit("shape.concat_forward", ctx.view(a, _axis_view(t, ax)), offset, ctx.view(out, _axis_view(o, ax)))
        offset += t.shape[ax]


@backward("concat")
def concat_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    ax = _concat_axis(ctx, n)
    o = n.outputs[0]
    offset = 0
    for i, g in enumerate(gins):
        t = _in(ctx, n, i)
        if g is not None:
            ctx.emit("shape.concat_backward", ctx.view(gout, _axis_view(o, ax)), offset, ctx.view(g, _axis_view(t, ax)))
        offset += t.shape[ax]


@forward("mean")
def mean_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    t = _in(ctx, n)
    v = _axis_view(t, n.attrs["axis"])
    ctx.emit("shape.mean_forward", ctx.view(ins[0], v), ctx.view(out, (v[0], v[2])))


@backward("mean")
def mean_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    v = _axis_view(_in(ctx, n), n.attrs["axis"])
    ctx.emit("shape.mean_backward", ctx.view(gout, (v[0], v[2])), ctx.view(gins[0], v))


@forward("last")
def last_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    t = _in(ctx, n)
    r = math.prod(t.shape[1:])
    ctx.emit("shape.last_forward", ctx.view(ins[0], ("B", t.shape[0], r)), ctx.view(out, ("B", r)))


@backward("last")
def last_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    t = _in(ctx, n)
    r = math.prod(t.shape[1:])
    ctx.emit("shape.last_backward", ctx.view(gout, ("B", r)), ctx.view(gins[0], ("B", t.shape[0], r)))


# ----------------------------------------------------------------------------- losses


@forward("cross_entropy")
def ce_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    t = _in(ctx, n)
    nb, v = _rows(t)
    probs = ctx.buf("probs", t.shape)
    ctx.saved[n.id]["probs"] = ctx.arg(probs)
    a = n.attrs
    ctx.emit("loss.cross_entropy_forward", ctx.view(ins[0], (nb, v)), ctx.view(ins[1], (nb,)), a["smoothing"],
             a["ignore"], ctx.view(ctx.arg(probs), (nb, v)), result=out)


@backward("cross_entropy")
def ce_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    t = _in(ctx, n)
    nb, v = _rows(t)
    a = n.attrs
    ctx.emit("loss.cross_entropy_backward", Scalar(gout), ctx.view(ctx.saved[n.id]["probs"], (nb, v)), ctx.view(ins[1], (nb,)),
             a["smoothing"], a["ignore"], ctx.view(gins[0], (nb, v)))


@forward("mse")
def mse_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    ctx.emit("loss.mse_forward", ins[0], ins[1], result=out)


@backward("mse")
def mse_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    t = _in(ctx, n)
    ga = gins[0] if gins[0] is not None else ctx.arg(ctx.buf("gpred_unused", t.shape, kind="tmp"))
    gb, need_b = _gx(ctx, gins[1], t.rank + 1)
    ctx.emit("loss.mse_backward", Scalar(gout), ins[0], ins[1], ga, gb, need_b)


def unsupported(op: str) -> Callable[..., None]:
    def rule(ctx: Any, n: Node, *args: Any) -> None:
        raise SpecError(Diagnostic(n.span, f"compiling '{op}' is not supported yet: it has no CPU kernel"))

    return rule


from . import rules_seq  # noqa: F401  (registers the sequence ops' rules)
