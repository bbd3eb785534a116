"""Every CUDA kernel against its CPU kernel, in the simulator, on tiny shapes, in float32 and float64.

Each case calls the CPU function on numpy arrays and the CUDA function of the same name on device copies of
the same arrays (outputs start from the same random contents), then compares every array argument afterwards
and any returned value: |cuda − cpu| ≤ 1e-5·max|cpu| + 1e-7 in float32, 1e-12·max|cpu| + 1e-15 in float64;
integer arrays exactly. Workspaces are not compared (the device layouts differ or go unused).
"""

from __future__ import annotations

import importlib
import inspect
import zlib

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import activation as cpu_activation
from netdsl.compiler.kernels.cpu import attention as cpu_attention
from netdsl.compiler.kernels.cpu import embed as cpu_embed
from netdsl.compiler.kernels.cpu import loss as cpu_loss
from netdsl.compiler.kernels.cpu import norm as cpu_norm
from netdsl.compiler.kernels.cpu import pool as cpu_pool
from netdsl.compiler.kernels.cpu import recurrent as cpu_recurrent
from netdsl.compiler.kernels.cuda import activation as cu_activation
from netdsl.compiler.kernels.cuda import embed as cu_embed
from netdsl.compiler.kernels.cuda import optim as cu_optim
from netdsl.runtime import optim as cpu_optim
from numba import cuda

DTYPES = [np.float32, np.float64]


class Host:
    """An argument that stays a host array on both sides (transpose's perm)."""

    def __init__(self, a):
        self.a = a


class Ws:
    """A workspace argument: passed to both sides, never compared."""

    def __init__(self, a):
        self.a = a


def tol(b: np.ndarray, dt) -> float:
    scale = float(np.max(np.abs(b[np.isfinite(b)]))) if b.size and np.isfinite(b).any() else 0.0
    return 1e-5 * scale + 1e-7 if dt == np.float32 else 1e-12 * scale + 1e-15


def assert_close(got, want, dt, what, scale_of=None):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, what
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN positions differ"
    ok = ~np.isnan(want)
    err = float(np.max(np.abs(got[ok].astype(np.float64) - want[ok]))) if ok.any() else 0.0
    limit = tol(want if scale_of is None else np.asarray(scale_of), dt)
    assert err <= limit, f"{what}: max |cuda - cpu| = {err:.3g} > {limit:.3g}"


# outputs that are zero up to rounding, compared at the scale of a sibling output: softmax is invariant to a
# shift of the keys, so attention's key-bias gradient is a sum that cancels (argument index -> scale index)
SCALE_FROM = {"attention.attention_backward[cross]": {20: 19}}


def run_pair(cpu_fn, cu_fn, args, dt, what):
    host, dev = [], []
    for a in args:
        if isinstance(a, Host):
            host.append(a.a)
            dev.append(a.a)
        elif isinstance(a, Ws):
            host.append(a.a.copy())
            dev.append(cuda.to_device(a.a))
        elif isinstance(a, np.ndarray):
            host.append(a.copy())
            dev.append(cuda.to_device(a))
        else:
            host.append(a)
            dev.append(a)
    r_cpu = cpu_fn(*host)
    r_cu = cu_fn(*dev)
    if r_cpu is not None:
        assert r_cu is not None, f"{what}: the CUDA kernel returned nothing"
        assert_close(float(r_cu), float(r_cpu), dt, f"{what} (returned value)")
    scales = SCALE_FROM.get(what, {})
    for i, (a, h, d) in enumerate(zip(args, host, dev, strict=True)):
        if isinstance(a, np.ndarray):
            assert_close(d.copy_to_host(), h, dt, f"{what} argument {i}", host[scales[i]] if i in scales else None)
    return host


# ------------------------------------------------------------------------------------------------ cases
# each case: (family, function, builder(rng, dt) -> argument list); outputs start as random garbage

CASES: list[tuple[str, str, str, object]] = []


def case(family, name, variant=""):
    def deco(build):
        CASES.append((family, name, variant, build))
        return build

    return deco


def R(rng, dt, *shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape).astype(dt)


def empty(dt, rank=1):
    return np.empty((0,) * rank, dt)


# activation
for _op, _y in (("relu", True), ("sigmoid", True), ("tanh", True), ("gelu", False), ("leaky_relu", False),
                ("identity", None)):
    def _f(rng, dt, op=_op):
        x = R(rng, dt, 3, 5)
        return [x, 0.1, R(rng, dt, 3, 5)] if op == "leaky_relu" else [x, R(rng, dt, 3, 5)]

    case("activation", f"{_op}_forward")(_f)

    def _b(rng, dt, op=_op, uses_y=_y):
        x = R(rng, dt, 3, 5)
        g = R(rng, dt, 3, 5)
        if op == "identity":
            return [g, R(rng, dt, 3, 5)]
        if op == "leaky_relu":
            return [g, x, 0.1, R(rng, dt, 3, 5)]
        z = x
        if uses_y:
            z = np.empty_like(x)
            getattr(cpu_activation, f"{op}_forward")(x, z)
        return [g, z, R(rng, dt, 3, 5)]

    case("activation", f"{_op}_backward")(_b)


@case("activation", "softmax_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 5, 3, lo=-30, hi=30), R(rng, dt, 2, 5, 3)]


@case("activation", "softmax_backward")
def _(rng, dt):
    y = np.empty((2, 5, 3), dt)
    cpu_activation.softmax_forward(R(rng, dt, 2, 5, 3), y)
    return [R(rng, dt, 2, 5, 3), y, R(rng, dt, 2, 5, 3)]


@case("activation", "dropout_forward")
def _(rng, dt):
    return [R(rng, dt, 4, 9), 0.3, 7, 3, 11, R(rng, dt, 4, 9)]


@case("activation", "dropout_backward")
def _(rng, dt):
    return [R(rng, dt, 4, 9), 0.3, 7, 3, 11, R(rng, dt, 4, 9)]


# elementwise
for _op in ("add", "sub", "mul", "div"):
    for _v, (_sa, _sb) in {"same": ((2, 3, 4), (2, 3, 4)), "bcast": ((2, 3, 4), (1, 3, 1)),
                           "bcast_a": ((1, 1, 4), (2, 3, 4))}.items():
        def _f(rng, dt, sa=_sa, sb=_sb, op=_op):
            b = R(rng, dt, *sb, lo=0.5, hi=2.0) if op == "div" else R(rng, dt, *sb)
            out = np.broadcast_shapes(sa, sb)
            return [R(rng, dt, *sa), b, R(rng, dt, *out)]

        case("elementwise", f"{_op}_forward", _v)(_f)

        def _b(rng, dt, sa=_sa, sb=_sb, op=_op):
            b = R(rng, dt, *sb, lo=0.5, hi=2.0) if op == "div" else R(rng, dt, *sb)
            out = np.broadcast_shapes(sa, sb)
            return [R(rng, dt, *out), R(rng, dt, *sa), b, R(rng, dt, *sa), R(rng, dt, *sb), True, True]

        case("elementwise", f"{_op}_backward", _v)(_b)


@case("elementwise", "mul_backward", "only_b")
def _(rng, dt):
    return [R(rng, dt, 2, 3), R(rng, dt, 2, 3), R(rng, dt, 1, 3), empty(dt, 2), R(rng, dt, 1, 3), False, True]


@case("elementwise", "neg_forward")
def _(rng, dt):
    return [R(rng, dt, 3, 4), R(rng, dt, 3, 4)]


@case("elementwise", "neg_backward")
def _(rng, dt):
    return [R(rng, dt, 3, 4), R(rng, dt, 3, 4)]


# shape
@case("shape", "concat_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), 2, R(rng, dt, 2, 7, 4)]


@case("shape", "concat_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 7, 4), 2, R(rng, dt, 2, 3, 4)]


@case("shape", "transpose_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4, 5), Host(np.array([0, 2, 3, 1], np.int64)), R(rng, dt, 2, 4, 5, 3)]


@case("shape", "transpose_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 4, 5, 3), Host(np.array([0, 2, 3, 1], np.int64)), R(rng, dt, 2, 3, 4, 5)]


@case("shape", "mean_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), R(rng, dt, 2, 4)]


@case("shape", "mean_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 4), R(rng, dt, 2, 3, 4)]


for _n in ("reshape", "flatten"):
    case("shape", f"{_n}_forward")(lambda rng, dt: [R(rng, dt, 2, 3, 4), R(rng, dt, 2, 12)])
    case("shape", f"{_n}_backward")(lambda rng, dt: [R(rng, dt, 2, 12), R(rng, dt, 2, 3, 4)])


@case("shape", "last_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), R(rng, dt, 2, 4)]


@case("shape", "last_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 4), R(rng, dt, 2, 3, 4)]


# pool: overlapping windows with padding; ceil-mode overhang for avgpool
@case("pool", "maxpool2d_forward")
def _(rng, dt):
    x = R(rng, dt, 2, 2, 7, 7)
    x[0, 0, 1, 1] = x[0, 0, 1, 2]  # a tie: the first maximum wins
    return [x, 3, 3, 2, 2, 1, 1, R(rng, dt, 2, 2, 4, 4), np.full((2, 2, 4, 4), 99, np.int64)]


@case("pool", "maxpool2d_backward")
def _(rng, dt):
    x = R(rng, dt, 2, 2, 7, 7)
    out, am = np.empty((2, 2, 4, 4), dt), np.empty((2, 2, 4, 4), np.int64)
    cpu_pool.maxpool2d_forward(x, 3, 3, 2, 2, 1, 1, out, am)
    return [R(rng, dt, 2, 2, 4, 4), am, R(rng, dt, 2, 2, 7, 7)]


@case("pool", "avgpool2d_forward")
def _(rng, dt):
    return [R(rng, dt, 1, 2, 6, 6), 3, 3, 2, 2, 1, 1, R(rng, dt, 1, 2, 4, 4)]


@case("pool", "avgpool2d_backward")
def _(rng, dt):
    return [R(rng, dt, 1, 2, 4, 4), 3, 3, 2, 2, 1, 1, R(rng, dt, 1, 2, 6, 6)]


@case("pool", "global_avgpool_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 5), R(rng, dt, 2, 3)]


@case("pool", "global_avgpool_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 3), R(rng, dt, 2, 3, 5)]


# norm
@case("norm", "lrn_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 5, 4), 3, 1e-2, 0.75, 2.0, R(rng, dt, 2, 5, 4), R(rng, dt, 2, 5, 4)]


@case("norm", "lrn_backward")
def _(rng, dt):
    x = R(rng, dt, 2, 5, 4)
    out, scale = np.empty_like(x), np.empty_like(x)
    cpu_norm.lrn_forward(x, 4, 1e-2, 0.75, 2.0, out, scale)
    return [R(rng, dt, 2, 5, 4), x, out, scale, 4, 1e-2, 0.75, R(rng, dt, 2, 5, 4)]


@case("norm", "batchnorm_forward_train")
def _(rng, dt):
    C = 3
    return [R(rng, dt, 4, C, 5), R(rng, dt, C), R(rng, dt, C), 1e-5, 0.1, R(rng, dt, C), R(rng, dt, C, lo=0.5),
            True, R(rng, dt, 4, C, 5), R(rng, dt, C), R(rng, dt, C)]


@case("norm", "batchnorm_forward_eval")
def _(rng, dt):
    C = 3
    return [R(rng, dt, 4, C, 5), R(rng, dt, C), R(rng, dt, C), R(rng, dt, C), R(rng, dt, C, lo=0.5), 1e-5,
            R(rng, dt, 4, C, 5)]


@case("norm", "batchnorm_backward")
def _(rng, dt):
    C = 3
    x = R(rng, dt, 4, C, 5)
    mean, inv = np.empty(C, dt), np.empty(C, dt)
    cpu_norm.batchnorm_forward_train(x, np.ones(C, dt), np.zeros(C, dt), 1e-5, 0.1, np.zeros(C, dt),
                                     np.ones(C, dt), False, np.empty_like(x), mean, inv)
    return [R(rng, dt, 4, C, 5), x, R(rng, dt, C), mean, inv, R(rng, dt, 4, C, 5), R(rng, dt, C), R(rng, dt, C),
            True]


@case("norm", "batchnorm_backward_eval")
def _(rng, dt):
    C = 3
    return [R(rng, dt, 4, C, 5), R(rng, dt, 4, C, 5), R(rng, dt, C), R(rng, dt, C), R(rng, dt, C, lo=0.5), 1e-5,
            R(rng, dt, 4, C, 5), R(rng, dt, C), R(rng, dt, C), True]


for _v, _affine in (("affine", True), ("plain", False)):
    def _f(rng, dt, affine=_affine):
        w, b = (R(rng, dt, 8), R(rng, dt, 8)) if affine else (empty(dt), empty(dt))
        return [R(rng, dt, 6, 8), w, b, 1e-5, R(rng, dt, 6, 8), R(rng, dt, 6), R(rng, dt, 6)]

    case("norm", "layernorm_forward", _v)(_f)

    def _b(rng, dt, affine=_affine):
        x = R(rng, dt, 6, 8)
        w, b = (R(rng, dt, 8), R(rng, dt, 8)) if affine else (empty(dt), empty(dt))
        mean, inv = np.empty(6, dt), np.empty(6, dt)
        cpu_norm.layernorm_forward(x, w, b, 1e-5, np.empty_like(x), mean, inv)
        gw, gb = (R(rng, dt, 8), R(rng, dt, 8)) if affine else (empty(dt), empty(dt))
        return [R(rng, dt, 6, 8), x, w, mean, inv, R(rng, dt, 6, 8), gw, gb, True]

    case("norm", "layernorm_backward", _v)(_b)


# dense: contractions shorter than a tile depth take the untiled kernel, longer ones the tiled one
for _v, (_bias, _N, _I, _O) in {"bias": (True, 5, 7, 6), "nobias": (False, 5, 7, 6),
                                "tiled": (True, 18, 21, 9)}.items():
    case("dense", "dense_forward", _v)(
        lambda rng, dt, bias=_bias, N=_N, I=_I, O=_O: [R(rng, dt, N, I), R(rng, dt, O, I),
                                                       R(rng, dt, O) if bias else empty(dt), R(rng, dt, N, O)])
    case("dense", "dense_backward", _v)(
        lambda rng, dt, bias=_bias, N=_N, I=_I, O=_O: [R(rng, dt, N, O), R(rng, dt, N, I), R(rng, dt, O, I),
                                                       R(rng, dt, N, I), R(rng, dt, O, I),
                                                       R(rng, dt, O) if bias else empty(dt), True, True])

for _v, (_ba, _bb, _k) in {"batched": (3, 3, 5), "shared_a": (1, 3, 5), "shared_b": (3, 1, 5),
                           "tiled": (3, 3, 17), "tiled_shared_a": (1, 3, 17)}.items():
    case("dense", "matmul_forward", _v)(
        lambda rng, dt, ba=_ba, bb=_bb, k=_k: [R(rng, dt, ba, 4, k), R(rng, dt, bb, k, 6), R(rng, dt, 3, 4, 6)])
    case("dense", "matmul_backward", _v)(
        lambda rng, dt, ba=_ba, bb=_bb, k=_k: [R(rng, dt, 3, 4, 6), R(rng, dt, ba, 4, k), R(rng, dt, bb, k, 6),
                                               R(rng, dt, ba, 4, k), R(rng, dt, bb, k, 6), True, True,
                                               Ws(np.zeros(6 * k, dt))])

# conv: grouped, strided, padded, dilated and the direct 1x1 path
CONVS = {"grouped": ((2, 4, 7, 7), (6, 2, 3, 3), 2, 2, 1, 1, 1, 1, 2),
         "dilated": ((1, 3, 7, 6), (4, 3, 2, 3), 1, 1, 2, 1, 2, 2, 1),
         "direct": ((2, 4, 3, 3), (6, 2, 1, 1), 1, 1, 0, 0, 1, 1, 2)}


def _conv_out(xs, ws, sh, sw, ph, pw, dh, dw):
    P = (xs[2] + 2 * ph - dh * (ws[2] - 1) - 1) // sh + 1
    Q = (xs[3] + 2 * pw - dw * (ws[3] - 1) - 1) // sw + 1
    return (xs[0], ws[0], P, Q)


for _v, (_xs, _ws, _sh, _sw, _ph, _pw, _dh, _dw, _g) in CONVS.items():
    def _f(rng, dt, xs=_xs, ws=_ws, geo=(_sh, _sw, _ph, _pw, _dh, _dw), g=_g):
        out = _conv_out(xs, ws, *geo)
        return [R(rng, dt, *xs), R(rng, dt, *ws), R(rng, dt, ws[0]), *geo, g, R(rng, dt, *out),
                Ws(np.zeros(4096, dt))]

    case("conv", "conv2d_forward", _v)(_f)

    def _b(rng, dt, xs=_xs, ws=_ws, geo=(_sh, _sw, _ph, _pw, _dh, _dw), g=_g):
        out = _conv_out(xs, ws, *geo)
        return [R(rng, dt, *out), R(rng, dt, *xs), R(rng, dt, *ws), *geo, g, R(rng, dt, *xs), R(rng, dt, *ws),
                R(rng, dt, ws[0]), True, True, Ws(np.zeros(4096, dt))]

    case("conv", "conv2d_backward", _v)(_b)


# the kernels lowering picks for 3×3 stride-1 layers and for layers with few filters: on the device the same
# implicit GEMM; on the CPU, with a geometry and workspace this small, Winograd's im2col fallback
# (tests/kernels/test_winograd.py checks the Winograd path itself against the definition) and transposed
# columns (padded here); the direct loops below, with each activation they may have fused
def _conv3_forward(rng, dt):
    xs, ws = (2, 3, 6, 5), (4, 3, 3, 3)
    geo = (1, 1, 1, 1, 1, 1)
    return [R(rng, dt, *xs), R(rng, dt, *ws), R(rng, dt, 4), *geo, 1, R(rng, dt, *_conv_out(xs, ws, *geo)),
            Ws(np.zeros(4096, dt))]


def _conv3_backward(rng, dt):
    xs, ws = (2, 3, 6, 5), (4, 3, 3, 3)
    geo = (1, 1, 1, 1, 1, 1)
    return [R(rng, dt, *_conv_out(xs, ws, *geo)), R(rng, dt, *xs), R(rng, dt, *ws), *geo, 1, R(rng, dt, *xs),
            R(rng, dt, *ws), R(rng, dt, 4), True, True, Ws(np.zeros(4096, dt))]


for _kernel in ("conv2d_winograd", "conv2d_few"):
    case("conv", f"{_kernel}_forward")(_conv3_forward)
    case("conv", f"{_kernel}_backward")(_conv3_backward)


for _act, _name in enumerate(("none", "relu", "tanh", "sigmoid")):
    def _f(rng, dt, act=_act):
        xs, ws = (2, 2, 7, 6), (3, 2, 5, 5)
        geo = (1, 1, 0, 0, 1, 1)
        return [R(rng, dt, *xs), R(rng, dt, *ws), R(rng, dt, 3), *geo, 1, act,
                R(rng, dt, *_conv_out(xs, ws, *geo)), Ws(np.zeros(4096, dt))]

    case("conv", "conv2d_direct_forward", _name)(_f)

    def _b(rng, dt, act=_act):
        xs, ws = (2, 2, 7, 6), (3, 2, 5, 5)
        geo = (1, 1, 0, 0, 1, 1)
        out = _conv_out(xs, ws, *geo)
        gout = R(rng, dt, *out)
        y = R(rng, dt, *out, lo=-0.9, hi=0.9) if act == 2 else R(rng, dt, *out, lo=0.05, hi=0.95)
        if act == 1:
            y = R(rng, dt, *out) * (R(rng, dt, *out) > 0)  # a relu's output: zeros where the input was <= 0
        return [gout, y if act else gout, R(rng, dt, *xs), R(rng, dt, *ws), *geo, 1, act, R(rng, dt, *xs),
                R(rng, dt, *ws), R(rng, dt, 3), True, True, Ws(np.zeros(4096, dt))]

    case("conv", "conv2d_direct_backward", _name)(_b)


# loss
@case("loss", "cross_entropy_forward")
def _(rng, dt):
    labels = np.array([0, 3, 2, 1, 2, 3], np.int64)
    return [R(rng, dt, 6, 4, lo=-5, hi=5), labels, 0.1, 2, R(rng, dt, 6, 4)]


@case("loss", "cross_entropy_backward")
def _(rng, dt):
    labels = np.array([0, 3, 2, 1, 2, 3], np.int64)
    probs = np.empty((6, 4), dt)
    cpu_loss.cross_entropy_forward(R(rng, dt, 6, 4), labels, 0.1, 2, probs)
    return [0.7, probs, labels, 0.1, 2, R(rng, dt, 6, 4)]


@case("loss", "mse_forward")
def _(rng, dt):
    return [R(rng, dt, 3, 5), R(rng, dt, 3, 5)]


@case("loss", "mse_backward")
def _(rng, dt):
    return [0.7, R(rng, dt, 3, 5), R(rng, dt, 3, 5), R(rng, dt, 3, 5), R(rng, dt, 3, 5), True]


# embed
IDS = np.array([1, 4, 1, 6, 0, 1], np.int64)  # repeated ids add up in backward


@case("embed", "embedding_forward")
def _(rng, dt):
    return [IDS, R(rng, dt, 7, 4), R(rng, dt, 6, 4)]


@case("embed", "embedding_backward")
def _(rng, dt):
    return [R(rng, dt, 6, 4), IDS, R(rng, dt, 7, 4)]


@case("embed", "unembed_forward")
def _(rng, dt):
    return [R(rng, dt, 6, 4), R(rng, dt, 7, 4), R(rng, dt, 6, 7)]


@case("embed", "unembed_backward")
def _(rng, dt):
    return [R(rng, dt, 6, 7), R(rng, dt, 6, 4), R(rng, dt, 7, 4), R(rng, dt, 6, 4), R(rng, dt, 7, 4), True, True]


@case("embed", "positional_encoding_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 5, 6), R(rng, dt, 2, 5, 6)]


@case("embed", "positional_encoding_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 5, 6), R(rng, dt, 2, 5, 6)]


@case("embed", "positional_embedding_forward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), R(rng, dt, 5, 4), R(rng, dt, 2, 3, 4)]


@case("embed", "positional_embedding_backward")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), R(rng, dt, 2, 3, 4), R(rng, dt, 5, 4), True]


# attention: cross attention with different widths, and causal self-attention
ATT = {"cross": (2, 3, 4, 4, 2, (5, 3, 6), False, True), "causal": (2, 3, 3, 6, 3, (6, 6, 6), True, False)}


def _att_params(rng, dt, D, dq, dk, dv, bias):
    b = (lambda: R(rng, dt, D)) if bias else (lambda: empty(dt))
    return [R(rng, dt, D, dq), b(), R(rng, dt, D, dk), b(), R(rng, dt, D, dv), b(), R(rng, dt, D, D), b()]


for _v, (_B, _Tq, _Tk, _D, _H, (_dq, _dk, _dv), _causal, _bias) in ATT.items():
    def _f(rng, dt, B=_B, Tq=_Tq, Tk=_Tk, D=_D, H=_H, dq=_dq, dk=_dk, dv=_dv, causal=_causal, bias=_bias):
        ins = [R(rng, dt, B, Tq, dq), R(rng, dt, B, Tk, dk), R(rng, dt, B, Tk, dv)]
        saves = [R(rng, dt, B, Tq, D), R(rng, dt, B, Tk, D), R(rng, dt, B, Tk, D), R(rng, dt, B, H, Tq, Tk),
                 R(rng, dt, B, Tq, D)]
        n = cpu_attention.attention_forward_workspace_size(B, Tq, Tk, D, H)
        return [*ins, *_att_params(rng, dt, D, dq, dk, dv, bias), H, causal, R(rng, dt, B, Tq, D), *saves,
                Ws(np.zeros(n, dt))]

    case("attention", "attention_forward", _v)(_f)

    def _b(rng, dt, B=_B, Tq=_Tq, Tk=_Tk, D=_D, H=_H, dq=_dq, dk=_dk, dv=_dv, causal=_causal, bias=_bias):
        ins = [R(rng, dt, B, Tq, dq), R(rng, dt, B, Tk, dk), R(rng, dt, B, Tk, dv)]
        params = _att_params(rng, dt, D, dq, dk, dv, bias)
        saves = [np.empty((B, Tq, D), dt), np.empty((B, Tk, D), dt), np.empty((B, Tk, D), dt),
                 np.empty((B, H, Tq, Tk), dt), np.empty((B, Tq, D), dt)]
        n = cpu_attention.attention_forward_workspace_size(B, Tq, Tk, D, H)
        cpu_attention.attention_forward(*ins, *params, H, causal, np.empty((B, Tq, D), dt), *saves, np.empty(n, dt))
        weights = params[0::2]
        grads = [R(rng, dt, B, Tq, dq), R(rng, dt, B, Tk, dk), R(rng, dt, B, Tk, dv)]
        pgrads = [R(rng, dt, *p.shape) for p in params]
        n = cpu_attention.attention_backward_workspace_size(B, Tq, Tk, D, H)
        return [R(rng, dt, B, Tq, D), *ins, *weights, H, *saves, *grads, *pgrads, True, True, True,
                Ws(np.zeros(n, dt))]

    case("attention", "attention_backward", _v)(_b)


# recurrent: B=2, T=3, D=3, H=4, both directions
_B, _T, _D, _Hh = 2, 3, 3, 4


def _cell(rng, dt, cell):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    if cell == "rnn":
        return [R(rng, dt, _Hh, _D), R(rng, dt, _Hh), R(rng, dt, _Hh, _Hh)]
    out = []
    for _ in range(G):
        out += [R(rng, dt, _Hh, _Hh + _D, lo=-1, hi=1), R(rng, dt, _Hh)]
    return out


def _ws(cell, which):
    return getattr(cpu_recurrent, f"{cell}_{which}_workspace_size")(_B, _T, _D, _Hh)


for _cellname in ("rnn", "lstm", "gru"):
    for _rev in (False, True):
        def _f(rng, dt, cell=_cellname, rev=_rev):
            xs = R(rng, dt, _B, _T, _D)
            states = [R(rng, dt, _B, _Hh)] * (2 if cell == "lstm" else 1)
            states = [R(rng, dt, _B, _Hh) for _ in states]
            outs = [R(rng, dt, _B, _T, _Hh)] + [R(rng, dt, _B, _Hh) for _ in states]
            saves = {"rnn": [], "lstm": [R(rng, dt, _B, _T, 4 * _Hh), R(rng, dt, _B, _T, _Hh)],
                     "gru": [R(rng, dt, _B, _T, 3 * _Hh)]}[cell]
            return [xs, *states, *_cell(rng, dt, cell), rev, *outs, *saves, Ws(np.zeros(_ws(cell, "forward"), dt))]

        case("recurrent", f"{_cellname}_forward", "reverse" if _rev else "")(_f)

        def _b(rng, dt, cell=_cellname, rev=_rev):
            fwd = _f(rng, dt, cell, rev)
            host = [a.a if isinstance(a, Ws) else a for a in fwd]
            getattr(cpu_recurrent, f"{cell}_forward")(*host)
            xs = host[0]
            ns = 2 if cell == "lstm" else 1
            states = host[1:1 + ns]
            params = host[1 + ns:1 + ns + (3 if cell == "rnn" else 2 * {"lstm": 4, "gru": 3}[cell])]
            k = 1 + ns + len(params)
            ys = host[k + 1]
            saves = host[k + 2 + ns:len(host) - 1]
            weights = [params[0], params[2]] if cell == "rnn" else params[0::2]
            gouts = [R(rng, dt, _B, _T, _Hh)] + [R(rng, dt, _B, _Hh) for _ in range(ns)]
            gxs = R(rng, dt, _B, _T, _D)
            g0 = [R(rng, dt, _B, _Hh) for _ in range(ns)]
            pg = [R(rng, dt, *p.shape) for p in params]
            return [*gouts, xs, *states, *weights, ys, *saves, rev, gxs, *g0, *pg, True, True,
                    Ws(np.zeros(_ws(cell, "backward"), dt))]

        case("recurrent", f"{_cellname}_backward", "reverse" if _rev else "")(_b)


# the LSTM fed by an embedding: V 5 <= T·B 6 takes the CPU's table of input terms, V 9 its gather; the device
# always gathers
for _V in (5, 9):
    for _rev in (False, True):
        def _ef(rng, dt, V=_V, rev=_rev):
            ids = rng.integers(0, V, (_B, _T)).astype(np.int64)
            ids[0, :2] = V - 1
            states = [R(rng, dt, _B, _Hh) for _ in range(2)]
            outs = [R(rng, dt, _B, _T, _Hh), R(rng, dt, _B, _Hh), R(rng, dt, _B, _Hh)]
            saves = [R(rng, dt, _B, _T, 4 * _Hh), R(rng, dt, _B, _T, _Hh)]
            n = cpu_recurrent.lstm_embed_forward_workspace_size(_B, _T, V, _D, _Hh)
            return [ids, R(rng, dt, V, _D), *states, *_cell(rng, dt, "lstm"), rev, *outs, *saves,
                    Ws(np.zeros(n, dt))]

        case("recurrent", "lstm_embed_forward", f"V{_V}" + (" reverse" if _rev else ""))(_ef)

        def _eb(rng, dt, V=_V, rev=_rev):
            host = [a.a if isinstance(a, Ws) else a for a in _ef(rng, dt, V, rev)]
            cpu_recurrent.lstm_embed_forward(*host)
            ids, table, h0, c0 = host[:4]
            params = host[4:12]
            ys, saves = host[13], host[16:18]
            gouts = [R(rng, dt, _B, _T, _Hh), R(rng, dt, _B, _Hh), R(rng, dt, _B, _Hh)]
            g0 = [R(rng, dt, _B, _Hh) for _ in range(2)]
            pg = [R(rng, dt, *p.shape) for p in params]
            n = cpu_recurrent.lstm_embed_backward_workspace_size(_B, _T, V, _D, _Hh)
            return [*gouts, ids, table, h0, c0, *params[0::2], ys, *saves, rev, R(rng, dt, V, _D), *g0, *pg,
                    True, True, Ws(np.zeros(n, dt))]

        case("recurrent", "lstm_embed_backward", f"V{_V}" + (" reverse" if _rev else ""))(_eb)

# util
@case("util", "copy", "same")
def _(rng, dt):
    return [R(rng, dt, 3, 4), R(rng, dt, 3, 4)]


@case("util", "copy", "bcast")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), R(rng, dt, 3, 1)]


@case("util", "accumulate")
def _(rng, dt):
    return [R(rng, dt, 3, 4), R(rng, dt, 3, 4)]


@case("util", "zero")
def _(rng, dt):
    return [R(rng, dt, 3, 4)]


@case("util", "fill")
def _(rng, dt):
    return [R(rng, dt, 3, 4), 1.5]


@case("util", "time_major")
def _(rng, dt):
    return [R(rng, dt, 2, 3, 4), R(rng, dt, 3, 2, 4)]


@case("util", "batch_major")
def _(rng, dt):
    return [R(rng, dt, 3, 2, 4), R(rng, dt, 2, 3, 4)]


# optimizer updates (runtime/optim.py's kernels work on flat arrays)
@case("optim", "sgd_kernel", "nesterov")
def _(rng, dt):
    return [R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20), 0.1, 0.9, True, 0.01, 0.5]


@case("optim", "sgd_kernel", "plain")
def _(rng, dt):
    return [R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20), 0.1, 0.0, False, 0.0, 1.0]


@case("optim", "adam_kernel", "adamw")
def _(rng, dt):
    return [R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20, lo=0, hi=1), 1e-2, 0.9, 0.999, 1e-8,
            0.01, True, 1 - 0.9**3, 1 - 0.999**3, 0.8]


@case("optim", "adam_kernel", "adam")
def _(rng, dt):
    return [R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20, lo=0, hi=1), 1e-2, 0.9, 0.999, 1e-8,
            0.01, False, 0.1, 0.001, 1.0]


@case("optim", "rmsprop_kernel")
def _(rng, dt):
    return [R(rng, dt, 20), R(rng, dt, 20), R(rng, dt, 20, lo=0, hi=1), R(rng, dt, 20), 1e-2, 0.99, 1e-8, 0.9,
            0.01, 1.0]


@case("optim", "sumsq_kernel")
def _(rng, dt):
    return [R(rng, dt, 300)]


def _modules(family):
    if family == "optim":
        return cpu_optim, cu_optim
    return (importlib.import_module(f"netdsl.compiler.kernels.cpu.{family}"),
            importlib.import_module(f"netdsl.compiler.kernels.cuda.{family}"))


def _id(c):
    return f"{c[0]}.{c[1]}" + (f"[{c[2]}]" if c[2] else "")


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", CASES, ids=[_id(c) for c in CASES])
def test_cuda_kernel_matches_cpu(c, dt):
    family, name, _, build = c
    cpu_mod, cu_mod = _modules(family)
    rng = np.random.default_rng(zlib.crc32(_id(c).encode()))
    args = build(rng, dt)
    run_pair(getattr(cpu_mod, name), getattr(cu_mod, name), args, dt, _id(c))


def _public_kernels(mod, family):
    out = []
    for n in dir(mod):
        f = getattr(mod, n)
        if n.startswith("_") or not callable(f):
            continue
        if family == "util":
            if getattr(f, "__module__", "").endswith("cpu.util"):
                out.append(n)
        elif hasattr(f, "py_func") and (n.endswith(("_forward", "_backward")) or family == "optim"):
            out.append(n)
    return out


FAMILIES = ("activation", "attention", "conv", "dense", "elementwise", "embed", "loss", "norm", "pool",
            "recurrent", "shape", "util")


def test_every_cpu_kernel_has_a_comparison_case():
    covered = {(c[0], c[1]) for c in CASES}
    missing = []
    for family in FAMILIES + ("optim",):
        cpu_mod, _ = _modules(family)
        for n in _public_kernels(cpu_mod, family):
            if (family, n) not in covered:
                missing.append(f"{family}.{n}")
    assert not missing, missing


def test_workspace_helpers_and_tables_match():
    # the device kernels keep the CPU's workspace layouts where they use one (the fused recurrences) and
    # need none elsewhere; attention's backward needs room for one head's score gradient per sample
    for family in FAMILIES:
        cpu_mod, cu_mod = _modules(family)
        for n in dir(cpu_mod):
            if n.endswith("_workspace_size"):
                fn = getattr(cpu_mod, n)
                k = sum(1 for p in inspect.signature(fn).parameters.values() if p.default is p.empty)
                args = [2, 3, 4, 6, 2, 1][:k]
                got = getattr(cu_mod, n)(*args)
                if family == "recurrent":
                    assert got == fn(*args), f"{family}.{n}"
                elif n == "attention_backward_workspace_size":
                    B, Tq, Tk, D, _ = args
                    assert got >= max(fn(*args), B * Tq * D + 2 * B * Tk * D + B * Tq * Tk)
                else:
                    assert got == 0, f"{family}.{n}"
    np.testing.assert_allclose(cu_embed.sinusoid_table(9, 6), cpu_embed.sinusoid_table(9, 6), rtol=0, atol=1e-15)
    for seed, step, node in ((0, 0, 0), (7, 3, 11), (2**40, 12345, 2**20)):
        assert int(cu_activation.dropout_key(seed, step, node)) == int(cpu_activation.dropout_key(seed, step, node))


def test_loss_kernels_write_into_a_device_buffer_and_take_a_device_gradient():
    from netdsl.compiler.kernels.cuda import loss as cu_loss

    rng = np.random.default_rng(5)
    logits = R(rng, np.float32, 4, 3)
    labels = np.array([0, 2, 1, 1], np.int64)
    probs = np.empty_like(logits)
    want = cpu_loss.cross_entropy_forward(logits, labels, 0.0, -1, probs)
    out = cuda.to_device(np.zeros(1, np.float32))
    ret = cu_loss.cross_entropy_forward(cuda.to_device(logits), cuda.to_device(labels), 0.0, -1,
                                        cuda.device_array((4, 3), np.float32), out=out)
    assert ret is out
    assert abs(float(out.copy_to_host()[0]) - want) <= 1e-6 * abs(want)
    g_host = np.empty_like(logits)
    cpu_loss.cross_entropy_backward(0.5, probs, labels, 0.0, -1, g_host)
    g_dev = cuda.device_array((4, 3), np.float32)
    cu_loss.cross_entropy_backward(cuda.to_device(np.array([0.5], np.float32)), cuda.to_device(probs),
                                   cuda.to_device(labels), 0.0, -1, g_dev)
    assert_close(g_dev.copy_to_host(), g_host, np.float32, "cross_entropy_backward with a device gloss")
    gp = cuda.device_array((4, 3), np.float32)
    cu_loss.mse_backward(cuda.to_device(np.array([2.0], np.float32)), cuda.to_device(logits),
                         cuda.to_device(probs), gp, cuda.device_array((4, 3), np.float32), False)
    want_gp, unused = np.empty_like(logits), np.empty_like(logits)
    cpu_loss.mse_backward(2.0, logits, probs, want_gp, unused, False)
    assert_close(gp.copy_to_host(), want_gp, np.float32, "mse_backward with a device gloss")


def test_out_of_range_ids_do_not_raise_on_the_device():
    from netdsl.compiler.kernels.cuda import loss as cu_loss

    logits = cuda.to_device(np.zeros((2, 3), np.float32))
    loss = cu_loss.cross_entropy_forward(logits, cuda.to_device(np.array([0, 7], np.int64)), 0.0, -1,
                                         cuda.device_array((2, 3), np.float32))
    assert np.isnan(loss)
    out = cuda.device_array((2, 2), np.float32)
    cu_embed.embedding_forward(cuda.to_device(np.array([1, 9], np.int64)), cuda.to_device(np.ones((3, 2),
                                                                                                   np.float32)), out)
    got = out.copy_to_host()
    assert np.all(got[0] == 1) and np.all(np.isnan(got[1]))
