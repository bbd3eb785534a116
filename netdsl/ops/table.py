"""The rows of the op table (LANGUAGE.md §8). Shapes are per example; the batch axis is implicit.

MACs follow torchvision's convention: multiply-accumulates of convolutions, dense layers, attention and
recurrent matrix products per example; elementwise, pooling and normalisation work is in `extra_flops` only.
Initialisers follow PyTorch's defaults: conv/dense weights Kaiming-uniform with a = √5 (which is uniform
±1/√fan_in), biases uniform ±1/√fan_in, embeddings N(0, 1), norms weight 1 and bias 0. The layers with weights
(conv, dense, embedding, positional_embedding, attention) take `std=`: weights drawn from N(0, std) and biases
zero instead, as GPT-2 and nanoGPT initialise (`dense(n, std=0.02)`); attention's may be a pair
`std=[a, b]`: a for its q, k, v projections, b for its output projection (nanoGPT's scaled residual init).
"""

from __future__ import annotations

import math
from typing import Any

from ..ir import TensorType
from . import REQUIRED, Attr, AttrError, OpDef, ParamDecl, ShapeError, nested_shape

F32 = "float32"


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _float(t: TensorType, what: str = "input") -> None:
    if t.is_int:
        raise ShapeError(
            f"expects a float {what}, found integer ids {t.spec()}",
            "integer ids go through embedding(vocab, dim) first",
        )


def _image(t: TensorType) -> tuple[int, int, int]:
    _float(t)
    if t.rank != 3:
        hint = "reshape([C, H, W]) first" if t.rank < 3 else None
        raise ShapeError(f"expects an image [C, H, W], found {_fmt(t.shape)}", hint)
    return t.shape  # type: ignore[return-value]


def channel_axis(rank: int) -> int:
    """0 for [C, H, W]; the last axis for [T, D] and [D]."""
    return 0 if rank == 3 else rank - 1


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"has axis {axis}, but its input has only {rank} axes (valid: {-rank} … {rank - 1})")
    return axis % rank


def _uniform_fan_in(fan_in: int) -> tuple[str, float]:
    return ("uniform", 1.0 / math.sqrt(fan_in))


def _inits(std: float | None, fan_in: int, default: tuple[str, float]) -> tuple[tuple[str, float], tuple[str, float]]:
    """(weight, bias) initialisers: the layer's default, or N(0, std) weights and zero biases with `std=`."""
    if std is None:
        return default, _uniform_fan_in(fan_in)
    return ("normal", std), ("const", 0.0)


_STD = Attr("std", "std", None, "weights from N(0, std), biases zero (default: PyTorch's initialisation)")


# ----------------------------------------------------------------------------- output sizes


def out_size(n: int, k: int, s: int, p: int, d: int, ceil: bool, kind: str) -> int:
    """Conv/pool output length with the lecture's tiling check.

    An inexact division is an error when the last real input element is left uncovered while stride ≤ kernel
    (ResNet's stride-2 convs drop only padding; 1×1 stride-2 projections skip by design).
    """
    ek = d * (k - 1) + 1  # effective kernel
    span = n + 2 * p - ek
    if span < 0:
        pad = f" + 2·{p}" if p else ""
        raise ShapeError(
            f"has a kernel ({ek}) larger than its input ({n}{pad}): the output size would be negative",
            "use a smaller kernel, or pad the input",
        )
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:  # PyTorch: the last window must start inside the input or left padding
            out -= 1
        return out
    out = span // s + 1
    if span % s:
        last_start = (out - 1) * s - p
        covered_to = last_start + ek - 1
        if covered_to < n - 1 and s <= ek:
            pad = f" + 2·{p}" if p else ""
            dil = f"{ek}" if d == 1 else f"{ek} (dilated)"
            raise ShapeError(
                f"does not tile its input: ({n}{pad} - {dil}) / {s} + 1 = {span / s + 1:.2f} is not a whole number",
                _tiling_hint(n, k, s, p, d, kind),
            )
    return out


def _tiling_hint(n: int, k: int, s: int, p: int, d: int, kind: str) -> str:
    ek = d * (k - 1) + 1
    strides = [t for t in range(1, s) if (n + 2 * p - ek) % t == 0]
    pads = [q for q in range(p + 1, p + ek + 1) if (n + 2 * q - ek) % s == 0 and q <= ek // 2 + 1]
    options = []
    if strides:
        options.append("stride " + " or ".join(map(str, strides)))
    if pads:
        options.append(f"pad={pads[0]}")
    if kind == "pool":
        options.append("ceil=true")
    return "use " + ", or ".join(options) if options else "change the kernel, stride or padding"


def _conv_finalize(a: dict[str, Any]) -> dict[str, Any]:
    if a["std"] is not None and a["weights"] is not None:
        raise AttrError("std", "has both weights= and std=: fixed weights are not drawn", "drop one of the two")
    return _same_pads(a)


def _same_pads(a: dict[str, Any]) -> dict[str, Any]:
    """pad=same becomes numbers: half the effective kernel, at stride 1, for odd kernels."""
    if a.get("pad") != "same":
        return a
    kh, kw = a["kernel"] if "kernel" in a else a["size"]
    dh, dw = a.get("dilation", (1, 1))
    if tuple(a["stride"]) != (1, 1):
        raise AttrError("pad", "uses pad=same with a stride other than 1", "pad=same keeps the size only at stride 1")
    eh, ew = dh * (kh - 1), dw * (kw - 1)
    if eh % 2 or ew % 2:
        raise AttrError("pad", "uses pad=same with an even kernel", "use an odd kernel or an explicit pad")
    return {**a, "pad": (eh // 2, ew // 2)}


# ----------------------------------------------------------------------------- conv & pooling


def _conv_geometry(a: dict[str, Any], t: TensorType) -> tuple[int, ...]:
    c, h, w = _image(t)
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    g = a["groups"]
    if c % g or a["out"] % g:
        raise ShapeError(
            f"has groups={g}, which must divide both its input channels ({c}) and its outputs ({a['out']})"
        )
    ph, pw = a["pad"]
    p = out_size(h, kh, sh, ph, dh, False, "conv")
    q = out_size(w, kw, sw, pw, dw, False, "conv")
    return c, kh, kw, p, q


def _conv_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _, _, _, p, q = _conv_geometry(a, ts[0])
    return TensorType((a["out"], p, q))


def _conv_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    c = ts[0].shape[0]
    kh, kw = a["kernel"]
    shape = (a["out"], c // a["groups"], kh, kw)
    fan_in = shape[1] * kh * kw
    init, bias_init = _inits(a["std"], fan_in, _uniform_fan_in(fan_in))
    weights = a.get("weights")
    if weights is not None:
        ws = nested_shape(weights)
        if ws not in ((kh, kw), shape):
            raise ShapeError(
                f"has weights of shape {_fmt(ws)}, but expects {_fmt((kh, kw))} (one kernel for every pair) "
                f"or {_fmt(shape)} (out, in/groups, kh, kw)"
            )
        init = ("fixed", weights)
    out = [ParamDecl("weight", shape, init, trainable=a["trainable"])]
    if a["bias"]:
        out.append(ParamDecl("bias", (a["out"],), bias_init, trainable=a["trainable"]))
    return out


def _conv_macs(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    c = ts[0].shape[0]
    kh, kw = a["kernel"]
    return o.size * (c // a["groups"]) * kh * kw


def _pool_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    c, h, w = _image(ts[0])
    kh, kw = a["size"]
    sh, sw = a["stride"]
    ph, pw = a["pad"]
    if ph > kh // 2 or pw > kw // 2:
        raise ShapeError(f"has padding {ph}×{pw} larger than half its window {kh}×{kw}")
    return TensorType((c, out_size(h, kh, sh, ph, 1, a["ceil"], "pool"), out_size(w, kw, sw, pw, 1, a["ceil"], "pool")))


def _pool_flops(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    kh, kw = a["size"]
    return o.size * kh * kw


def _global_pool_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    c, _, _ = _image(ts[0])
    return TensorType((c,))


# ----------------------------------------------------------------------------- normalisation


def _same_float(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _float(ts[0])
    return ts[0]


def _lrn_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _image(ts[0])
    return ts[0]


def _bn_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _float(ts[0])
    if ts[0].rank == 0:
        raise ShapeError("needs at least one axis to normalise over, found a scalar")
    return ts[0]


def _bn_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    c = ts[0].shape[channel_axis(ts[0].rank)]
    return [
        ParamDecl("weight", (c,), ("const", 1.0)),
        ParamDecl("bias", (c,), ("const", 0.0)),
        ParamDecl("running_mean", (c,), ("const", 0.0), trainable=False, state=True),
        ParamDecl("running_var", (c,), ("const", 1.0), trainable=False, state=True),
    ]


def _ln_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _float(ts[0])
    if ts[0].rank == 0:
        raise ShapeError("needs at least one axis to normalise over, found a scalar")
    return ts[0]


def _ln_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    d = ts[0].shape[-1]
    out = [ParamDecl("weight", (d,), ("const", 1.0))]
    if a["bias"]:
        out.append(ParamDecl("bias", (d,), ("const", 0.0)))
    return out


def _norm_flops(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    return 5 * o.size


# ----------------------------------------------------------------------------- linear & shape ops


def _dense_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = ts[0]
    _float(t)
    if t.rank == 0 or t.rank > 2:
        hint = "flatten first: x -> flatten -> dense(n)" if t.rank > 2 else None
        raise ShapeError(f"acts on [D] or [T, D], found {_fmt(t.shape)}", hint)
    return TensorType(t.shape[:-1] + (a["units"],))


def _dense_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    d = ts[0].shape[-1]
    w_init, b_init = _inits(a["std"], d, _uniform_fan_in(d))
    out = [ParamDecl("weight", (a["units"], d), w_init)]
    if a["bias"]:
        out.append(ParamDecl("bias", (a["units"],), b_init))
    return out


def _dense_macs(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    return ts[0].size * a["units"]


def _flatten_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    return TensorType((ts[0].size,), ts[0].dtype)


def _reshape_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = ts[0]
    dims = list(a["shape"])
    if dims.count(-1) > 1 or any(d < -1 or d == 0 for d in dims):
        raise ShapeError(f"has an invalid target shape {_fmt(tuple(dims))}", "use positive sizes and at most one -1")
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if t.size % known:
            raise ShapeError(f"cannot reshape {_fmt(t.shape)} ({t.size} elements) to {_fmt(tuple(dims))}")
        dims[dims.index(-1)] = t.size // known
    elif known != t.size:
        raise ShapeError(
            f"cannot reshape {_fmt(t.shape)} ({t.size} elements) to {_fmt(tuple(dims))} ({known} elements)"
        )
    return TensorType(tuple(dims), t.dtype)


def _transpose_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = ts[0]
    perm = list(a["perm"])
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(
            f"needs a permutation of the axes 0 … {t.rank - 1} of {_fmt(t.shape)}, found {_fmt(tuple(perm))}",
            "the batch axis is implicit and never written",
        )
    return TensorType(tuple(t.shape[i] for i in perm), t.dtype)


def _matmul_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    x, y = ts
    _float(x)
    _float(y)
    if x.rank < 2 or y.rank < 2 or x.rank != y.rank or x.rank > 3:
        raise ShapeError(f"multiplies [M, K] by [K, N] (or [H, M, K] by [H, K, N]), found {_fmt(x.shape)} and {_fmt(y.shape)}")
    if x.shape[:-2] != y.shape[:-2] or x.shape[-1] != y.shape[-2]:
        raise ShapeError(f"cannot multiply {_fmt(x.shape)} by {_fmt(y.shape)}: inner sizes {x.shape[-1]} and {y.shape[-2]} differ"
                         if x.shape[-1] != y.shape[-2] else f"has mismatched leading axes {_fmt(x.shape)} and {_fmt(y.shape)}")
    return TensorType(x.shape[:-1] + (y.shape[-1],))


def _matmul_macs(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    return o.size * ts[0].shape[-1]


# ----------------------------------------------------------------------------- activations & combination


def _softmax_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _float(ts[0])
    _axis(a["axis"], ts[0].rank)
    return ts[0]


def broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _elementwise_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    for t in ts:
        _float(t, "operand")
    shape = broadcast([t.shape for t in ts])
    if shape is None:
        raise ShapeError(
            "cannot combine " + " and ".join(_fmt(t.shape) for t in ts) + ": the shapes do not broadcast",
            "a residual add needs equal shapes: project the skip with conv(c, kernel=1, stride=s)",
        )
    return TensorType(shape, F32, any(t.batched for t in ts))


def _concat_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    first = ts[0]
    axis = a["axis"]
    rank = first.rank
    if rank == 0:
        raise ShapeError("cannot join scalars: there is no axis to join on")
    ax = channel_axis(rank) if axis is None else _axis(axis, rank)
    if any(t.is_int != first.is_int for t in ts):
        raise ShapeError("cannot join integer and float tensors")
    for t in ts[1:]:
        if t.rank != rank or any(t.shape[i] != first.shape[i] for i in range(rank) if i != ax):
            raise ShapeError(
                "cannot join " + ", ".join(_fmt(t.shape) for t in ts) + f" on axis {ax}: the other axes differ",
                "concat needs equal sizes on every axis except the joined one",
            )
    shape = list(first.shape)
    shape[ax] = sum(t.shape[ax] for t in ts)
    return TensorType(tuple(shape), first.dtype)


def _mean_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = ts[0]
    _float(t)
    ax = _axis(a["axis"], t.rank)
    return TensorType(t.shape[:ax] + t.shape[ax + 1 :])


def _last_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = ts[0]
    if t.rank < 1:
        raise ShapeError(f"takes the last step of a sequence [T, …], found {_fmt(t.shape)}")
    return TensorType(t.shape[1:], t.dtype)


# ----------------------------------------------------------------------------- tokens & attention


def _embedding_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    if not ts[0].is_int:
        raise ShapeError(f"looks up integer ids, found float {_fmt(ts[0].shape)}", "declare the input as int[T]")
    return TensorType(ts[0].shape + (a["dim"],))


def _embedding_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    return [ParamDecl("weight", (a["vocab"], a["dim"]), ("normal", 1.0 if a["std"] is None else a["std"]))]


def _unembed_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    _float(ts[0])
    if ts[0].rank == 0 or ts[0].shape[-1] != a["dim"]:
        raise ShapeError(f"needs width {a['dim']} (the embedding's), found {_fmt(ts[0].shape)}")
    return TensorType(ts[0].shape[:-1] + (a["vocab"],))


def _unembed_macs(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    return ts[0].size * a["vocab"]


def _positional_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = ts[0]
    _float(t)
    if t.rank != 2:
        raise ShapeError(f"adds positions to a sequence [T, D], found {_fmt(t.shape)}")
    if t.shape[0] > a["max_len"]:
        raise ShapeError(f"has max_len {a['max_len']}, but the sequence has {t.shape[0]} steps")
    return t


def _posenc_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    t = _positional_shape(a, ts)
    if t.shape[1] % 2:
        raise ShapeError(f"needs an even width for sin/cos pairs, found {t.shape[1]}")
    return t


def _posemb_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    return [ParamDecl("weight", (a["max_len"], ts[0].shape[1]), ("normal", 1.0 if a["std"] is None else a["std"]))]


def _attn_types(ts: list[TensorType]) -> tuple[TensorType, TensorType, TensorType]:
    q = ts[0]
    k = ts[1] if len(ts) > 1 else q
    v = ts[2] if len(ts) > 2 else k
    return q, k, v


def _attention_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    q, k, v = _attn_types(ts)
    for t in (q, k, v):
        _float(t)
        if t.rank != 2:
            raise ShapeError(f"attends over sequences [T, D], found {_fmt(t.shape)}")
    if k.shape[0] != v.shape[0]:
        raise ShapeError(f"needs keys and values of the same length, found {k.shape[0]} and {v.shape[0]} steps")
    d = q.shape[1]
    if d % a["heads"]:
        raise ShapeError(f"splits width {d} into {a['heads']} heads: {d} / {a['heads']} is not a whole number")
    if a["causal"] and q.shape[0] != k.shape[0]:
        raise ShapeError(f"is causal, which needs queries and keys of one length, found {q.shape[0]} and {k.shape[0]}")
    return q


def _attention_params(a: dict[str, Any], ts: list[TensorType]) -> list[ParamDecl]:
    q, k, v = _attn_types(ts)
    d = q.shape[1]
    std = a["std"]
    stds = (std, std) if not isinstance(std, tuple) else std  # (q, k, v), out
    out = []
    for name, fan_in in (("q", d), ("k", k.shape[1]), ("v", v.shape[1]), ("out", d)):
        w_init, b_init = _inits(stds[name == "out"], fan_in, _uniform_fan_in(fan_in))
        out.append(ParamDecl(f"{name}.weight", (d, fan_in), w_init))
        if a["bias"]:
            out.append(ParamDecl(f"{name}.bias", (d,), b_init))
    return out


def _attention_macs(a: dict[str, Any], ts: list[TensorType], o: TensorType) -> int:
    q, k, v = _attn_types(ts)
    tq, d = q.shape
    tk = k.shape[0]
    return tq * d * d * 2 + tk * d * (k.shape[1] + v.shape[1]) + 2 * tq * tk * d


# ----------------------------------------------------------------------------- losses


def _ce_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    logits, labels = ts
    _float(logits, "logits")
    if not labels.is_int:
        raise ShapeError(f"needs integer class labels, found float {_fmt(labels.shape)}", "declare labels as int[] or int[T]")
    if logits.rank not in (1, 2) or labels.shape != logits.shape[:-1]:
        raise ShapeError(
            f"pairs logits [V] with labels int[] (or [T, V] with int[T]), found {_fmt(logits.shape)} and {labels.spec()}"
        )
    return TensorType((), F32, batched=False)


def _mse_shape(a: dict[str, Any], ts: list[TensorType]) -> TensorType:
    p, t = ts
    _float(p)
    _float(t, "target")
    if p.shape != t.shape:
        raise ShapeError(f"compares predictions {_fmt(p.shape)} with targets {_fmt(t.shape)} of another shape")
    return TensorType((), F32, batched=False)


def _unary(name: str, family: str, doc: str, attrs: tuple[Attr, ...] = (), flops: int = 1) -> OpDef:
    return OpDef(name, family, attrs, _same_float, extra_flops=lambda a, t, o: flops * o.size, doc=doc)


def _binary(name: str, doc: str) -> OpDef:
    return OpDef(name, "elementwise", (), _elementwise_shape, inputs=(2, 2), doc=doc)


_PAD = Attr("pad", "pad", 0)
_OPS: list[OpDef] = [
    OpDef(
        "conv", "conv",
        (Attr("out", "int"), Attr("kernel", "pair"), Attr("stride", "pair", 1), _PAD,
         Attr("dilation", "pair", 1), Attr("groups", "int", 1), Attr("bias", "bool", True),
         Attr("weights", "weights", None), Attr("trainable", "bool", True), _STD),
        _conv_shape, params=_conv_params, macs=_conv_macs, finalize=_conv_finalize,
        doc="2-D cross-correlation; weight (out, in/groups, kh, kw)",
    ),
    OpDef("maxpool", "pool", (Attr("size", "pair"), Attr("stride", "pair", "=size"), _PAD, Attr("ceil", "bool", False)),
          _pool_shape, extra_flops=_pool_flops, finalize=_same_pads, doc="max pooling; pads with -inf"),
    OpDef("avgpool", "pool", (Attr("size", "pair"), Attr("stride", "pair", "=size"), _PAD, Attr("ceil", "bool", False)),
          _pool_shape, extra_flops=_pool_flops, finalize=_same_pads, doc="average pooling; padding counts"),
    OpDef("global_avgpool", "pool", (), _global_pool_shape, extra_flops=lambda a, t, o: t[0].size,
          doc="mean over H and W: [C, H, W] -> [C]"),
    OpDef("lrn", "norm",
          (Attr("size", "int", 5), Attr("alpha", "float", 1e-4), Attr("beta", "float", 0.75), Attr("k", "float", 2.0)),
          _lrn_shape, extra_flops=lambda a, t, o: (a["size"] + 4) * o.size,
          doc="local response normalisation across channels (alpha / size, as Caffe and PyTorch)"),
    OpDef("batchnorm", "norm", (Attr("eps", "float", 1e-5), Attr("momentum", "float", 0.1)),
          _bn_shape, params=_bn_params, extra_flops=_norm_flops, train_mode=True,
          doc="batch normalisation per channel; running statistics are state"),
    OpDef("layernorm", "norm", (Attr("eps", "float", 1e-5), Attr("bias", "bool", True)),
          _ln_shape, params=_ln_params, extra_flops=_norm_flops, doc="normalises over the last axis"),
    OpDef("dropout", "activation", (Attr("p", "prob"),), _same_float, train_mode=True,
          doc="inverted dropout; identity in eval"),
    OpDef("dense", "dense", (Attr("units", "int"), Attr("bias", "bool", True), _STD), _dense_shape,
          params=_dense_params, macs=_dense_macs, doc="x @ weight.T + bias on the last axis; weight (out, in)"),
    OpDef("flatten", "shape", (), _flatten_shape, extra_flops=lambda a, t, o: 0, doc="[...] -> [N]"),
    OpDef("reshape", "shape", (Attr("shape", "ints"),), _reshape_shape, extra_flops=lambda a, t, o: 0,
          doc="per-example reshape; one -1 allowed"),
    OpDef("transpose", "shape", (Attr("perm", "ints"),), _transpose_shape, extra_flops=lambda a, t, o: 0,
          doc="permutes the per-example axes"),
    OpDef("matmul", "dense", (), _matmul_shape, inputs=(2, 2), macs=_matmul_macs, combinator=True,
          doc="[M, K] @ [K, N] per example"),
    _unary("relu", "activation", "max(x, 0)"),
    _unary("leaky_relu", "activation", "x if x > 0 else a·x", (Attr("a", "float"),)),
    _unary("sigmoid", "activation", "1 / (1 + e^-x)", flops=4),
    _unary("tanh", "activation", "hyperbolic tangent", flops=4),
    _unary("gelu", "activation", "x·Φ(x) (exact, with erf)", flops=8),
    _unary("identity", "activation", "x", flops=0),
    OpDef("softmax", "activation", (Attr("axis", "axis", -1),), _softmax_shape,
          extra_flops=lambda a, t, o: 5 * o.size, doc="softmax along an axis"),
    OpDef("concat", "shape", (Attr("axis", "axis", None),), _concat_shape, inputs=(1, None), combinator=True,
          extra_flops=lambda a, t, o: 0, doc="joins along an axis (default: the channel axis)"),
    _binary("add", "a + b with broadcasting"),
    _binary("sub", "a - b with broadcasting"),
    _binary("mul", "a * b with broadcasting"),
    _binary("div", "a / b with broadcasting"),
    OpDef("neg", "elementwise", (), _same_float, doc="-x"),
    OpDef("mean", "shape", (Attr("axis", "axis"),), _mean_shape, extra_flops=lambda a, t, o: t[0].size,
          doc="mean over one axis"),
    OpDef("last", "shape", (), _last_shape, extra_flops=lambda a, t, o: 0, doc="the last step of a sequence"),
    OpDef("embedding", "embed", (Attr("vocab", "int"), Attr("dim", "int"), _STD), _embedding_shape,
          params=_embedding_params, extra_flops=lambda a, t, o: 0, doc="ids -> rows of weight (vocab, dim)"),
    OpDef("unembed", "embed", (Attr("table", "layer"), Attr("vocab", "int", REQUIRED), Attr("dim", "int", REQUIRED)),
          _unembed_shape, macs=_unembed_macs, doc="logits against a let-bound embedding's weight (tying)"),
    OpDef("positional_encoding", "embed", (Attr("max_len", "int"),), _posenc_shape,
          doc="adds sinusoidal positions PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)"),
    OpDef("positional_embedding", "embed", (Attr("max_len", "int"), _STD), _positional_shape, params=_posemb_params,
          doc="adds a learned [max_len, D] table"),
    OpDef("attention", "attention",
          (Attr("heads", "int"), Attr("causal", "bool", False), Attr("bias", "bool", True),
           Attr("std", "stds", None, "N(0, std) weights, zero biases; [a, b]: a for q, k, v and b for out")),
          _attention_shape, inputs=(1, 3), params=_attention_params, macs=_attention_macs,
          extra_flops=lambda a, t, o: 5 * a["heads"] * o.shape[0] * _attn_types(t)[1].shape[0],
          doc="multi-head softmax(QK^T/sqrt(d_k))V with q, k, v, out projections"),
    OpDef("cross_entropy", "loss", (Attr("smoothing", "prob", 0.0), Attr("ignore", "axis", -1)), _ce_shape,
          inputs=(2, 2), combinator=True, extra_flops=lambda a, t, o: 5 * t[0].size,
          doc="softmax cross-entropy of logits against integer labels, mean over batch (and steps)"),
    OpDef("mse", "loss", (), _mse_shape, inputs=(2, 2), combinator=True, extra_flops=lambda a, t, o: 3 * t[0].size,
          doc="mean squared error"),
]

OPS: dict[str, OpDef] = {op.name: op for op in _OPS}
