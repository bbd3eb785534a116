"""conv2d kernels against scipy's correlate2d, finite differences and the lecture's worked example."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import conv
from scipy.signal import correlate2d

from .gradcheck import assert_f32_matches, check_directional, check_gradients


def out_size(n, k, s, p, d, ceil=False):
    span = n + 2 * p - d * (k - 1) - 1
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p:  # PyTorch: the last window must start inside the input or left pad
        o -= 1
    return o


def reference(x, w, b, s, p, d, g, P, Q):
    B, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    Hp = max(H + 2 * p[0], (P - 1) * s[0] + d[0] * (kh - 1) + 1)
    Wp = max(W + 2 * p[1], (Q - 1) * s[1] + d[1] * (kw - 1) + 1)
    xp = np.zeros((B, C, Hp, Wp))
    xp[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    wd = np.zeros((K, Cg, d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1))
    wd[:, :, ::d[0], ::d[1]] = w
    out = np.zeros((B, K, P, Q))
    Kg = K // g
    for n in range(B):
        for k in range(K):
            c0 = (k // Kg) * Cg
            acc = sum(correlate2d(xp[n, c0 + c], wd[k, c], mode="valid") for c in range(Cg))
            out[n, k] = acc[::s[0], ::s[1]][:P, :Q] + (b[k] if b.size else 0.0)
    return out


class Conv:
    """One conv configuration: shapes, buffers and the forward/backward calls."""

    def __init__(self, rng, B, C, H, W, K, kh, kw, s=(1, 1), p=(0, 0), d=(1, 1), g=1, bias=True,
                 ceil=False, dtype=np.float64):
        self.x = rng.standard_normal((B, C, H, W)).astype(dtype)
        self.w = rng.standard_normal((K, C // g, kh, kw)).astype(dtype)
        self.b = rng.standard_normal(K).astype(dtype) if bias else np.empty(0, dtype)
        self.s, self.p, self.d, self.g = s, p, d, g
        self.P = out_size(H, kh, s[0], p[0], d[0], ceil)
        self.Q = out_size(W, kw, s[1], p[1], d[1], ceil)
        self.out = np.empty((B, K, self.P, self.Q), dtype)
        args = (C, K, kh, kw, self.P, self.Q, g, *s, *p, *d)
        self.ws = np.empty(conv.conv2d_workspace_size(*args), dtype)
        self.wsb = np.empty(conv.conv2d_backward_workspace_size(*args), dtype)

    def attrs(self):
        return (*self.s, *self.p, *self.d, self.g)

    def forward(self, kind="", act=0):
        # the direct kernels take the fused activation's code (conv_direct.py's ACT_*) before out
        extra = (act,) if kind == "_direct" else ()
        getattr(conv, f"conv2d{kind}_forward")(self.x, self.w, self.b, *self.attrs(), *extra, self.out, self.ws)
        return self.out

    def backward(self, gout, need_gx=True, need_gw=True, kind="", act=0, y=None):
        gx = np.empty_like(self.x) if need_gx else np.empty((0, 0, 0, 0), self.x.dtype)
        gw = np.empty_like(self.w) if need_gw else np.empty((0, 0, 0, 0), self.x.dtype)
        gb = np.empty_like(self.b)
        if kind == "_direct":  # and the activation's output y (any array of gout's shape without one)
            conv.conv2d_direct_backward(gout, gout if y is None else y, self.x, self.w, *self.attrs(), act, gx, gw,
                                        gb, need_gx, need_gw, self.wsb)
            return gx, gw, gb
        getattr(conv, f"conv2d{kind}_backward")(gout, self.x, self.w, *self.attrs(), gx, gw, gb, need_gx, need_gw,
                                                self.wsb)
        return gx, gw, gb


def case(**attrs):
    return attrs


CASES = [
    case(B=2, C=3, H=7, W=6, K=4, kh=3, kw=3),
    case(B=2, C=4, H=8, W=7, K=6, kh=3, kw=2, s=(2, 1), p=(1, 2), d=(1, 2), g=2, bias=False),
    case(B=1, C=2, H=5, W=4, K=3, kh=1, kw=1),
    case(B=2, C=4, H=9, W=9, K=4, kh=3, kw=3, s=(2, 2), p=(1, 1), d=(2, 1), g=4),
    case(B=1, C=2, H=8, W=7, K=2, kh=3, kw=2, s=(3, 2), p=(1, 0), ceil=True),
    case(B=2, C=3, H=6, W=6, K=2, kh=1, kw=1, s=(2, 2)),
    case(B=2, C=4, H=6, W=7, K=4, kh=2, kw=3, g=2),  # valid (unpadded, stride 1) and grouped: channel offsets
    # the paths by filter count and taps (conv.py's _FEW_FILTERS, _DIRECT_TAPS): direct with 5-wide, 3-wide
    # and other window rows; transposed columns with LeNet's 5x5 windows, with 3x3 ones, padded and strided;
    # 32 filters or more, columns through the filters-by-columns GEMM
    case(B=2, C=1, H=9, W=8, K=3, kh=5, kw=5),
    case(B=2, C=2, H=6, W=7, K=3, kh=2, kw=4, bias=False),
    case(B=3, C=2, H=8, W=9, K=3, kh=5, kw=5),
    case(B=2, C=4, H=6, W=6, K=3, kh=3, kw=3),
    case(B=2, C=2, H=7, W=6, K=3, kh=3, kw=3, s=(2, 1), p=(1, 1)),
    case(B=2, C=2, H=6, W=6, K=33, kh=3, kw=3, p=(1, 1)),
]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_scipy(case):
    c = Conv(np.random.default_rng(0), **case)
    ref = reference(c.x, c.w, c.b, c.s, c.p, c.d, c.g, c.P, c.Q)
    np.testing.assert_allclose(c.forward(), ref, rtol=1e-12, atol=1e-12)


def test_lecture_example():
    img = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
                   np.float64).reshape(1, 1, 5, 5)
    filt = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float64).reshape(1, 1, 3, 3)
    out = np.empty((1, 1, 3, 3))
    ws = np.empty(conv.conv2d_workspace_size(1, 1, 3, 3, 3, 3))
    conv.conv2d_forward(img, filt, np.empty(0), 1, 1, 0, 0, 1, 1, 1, out, ws)
    np.testing.assert_array_equal(out[0, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[3], CASES[4], *CASES[7:]])
def test_gradients_finite_difference(case):
    rng = np.random.default_rng(1)
    c = Conv(rng, **case)
    R = rng.standard_normal(c.out.shape)
    gx, gw, gb = c.backward(R)
    wrt = {"x": c.x, "w": c.w}
    grads = {"x": gx, "w": gw}
    if c.b.size:
        wrt["b"], grads["b"] = c.b, gb
    check_gradients(lambda: float(np.sum(c.forward() * R)), wrt, grads)


def test_backward_flags_skip_and_match():
    rng = np.random.default_rng(2)
    c = Conv(rng, **CASES[0])
    R = rng.standard_normal(c.out.shape)
    gx, gw, gb = c.backward(R)
    gx2, _, gb2 = c.backward(R, need_gw=False)
    _, gw3, _ = c.backward(R, need_gx=False)
    np.testing.assert_array_equal(gx, gx2)
    np.testing.assert_array_equal(gw, gw3)
    np.testing.assert_array_equal(gb, gb2)


def test_directional_larger():
    # large enough that im2col / col2im take their parallel path
    rng = np.random.default_rng(3)
    c = Conv(rng, B=2, C=8, H=32, W=33, K=6, kh=3, kw=3, p=(1, 1), g=2)
    R = rng.standard_normal(c.out.shape)
    ref = reference(c.x, c.w, c.b, c.s, c.p, c.d, c.g, c.P, c.Q)
    np.testing.assert_allclose(c.forward(), ref, rtol=1e-11, atol=1e-11)
    gx, gw, gb = c.backward(R)
    check_directional(lambda: float(np.sum(c.forward() * R)), {"x": c.x, "w": c.w, "b": c.b},
                      {"x": gx, "w": gw, "b": gb}, rng)


def test_float32_matches_float64():
    c64 = Conv(np.random.default_rng(4), **CASES[3])
    c32 = Conv(np.random.default_rng(4), **CASES[3], dtype=np.float32)
    assert_f32_matches(c64.forward(), c32.forward())


# the few-filter kernels lowering picks (conv_few.py), on the cases they take: every geometry with groups 1 for
# the transposed columns, stride-1 unpadded ones for the direct loops (here with up to 150 taps, LeNet's c3)
FEW_CASES = [c for c in CASES if c.get("g", 1) == 1 and c["K"] < 32]
DIRECT_CASES = [c for c in FEW_CASES if c.get("s", (1, 1)) == (1, 1) and c.get("p", (0, 0)) == (0, 0)
                and c.get("d", (1, 1)) == (1, 1)] + [case(B=3, C=6, H=9, W=10, K=5, kh=5, kw=5)]


@pytest.mark.parametrize("kind,case", [("_few", c) for c in FEW_CASES] + [("_direct", c) for c in DIRECT_CASES])
def test_few_filter_kernels_match_scipy_and_finite_differences(kind, case):
    rng = np.random.default_rng(5)
    c = Conv(rng, **case)
    ref = reference(c.x, c.w, c.b, c.s, c.p, c.d, c.g, c.P, c.Q)
    np.testing.assert_allclose(c.forward(kind), ref, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(c.out.shape)
    gx, gw, gb = c.backward(R, kind=kind)
    wrt = {"x": c.x, "w": c.w}
    grads = {"x": gx, "w": gw}
    if c.b.size:
        wrt["b"], grads["b"] = c.b, gb
    check_gradients(lambda: float(np.sum(c.forward(kind) * R)), wrt, grads)
    gx2, _, _ = c.backward(R, need_gw=False, kind=kind)
    _, gw3, _ = c.backward(R, need_gx=False, kind=kind)
    np.testing.assert_array_equal(gx, gx2)
    np.testing.assert_array_equal(gw, gw3)


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_few_filter_kernels_split_samples_over_lanes(lanes):
    # a workspace of `lanes` lanes (conv.py sizes by lanes): each lane's partial weight gradient is summed
    rng = np.random.default_rng(6)
    for kind, geom in (("_direct", {"B": 5, "C": 2, "H": 12, "W": 11, "K": 4, "kh": 5, "kw": 5}),
                       ("_few", {"B": 5, "C": 3, "H": 10, "W": 9, "K": 6, "kh": 3, "kw": 3, "p": (1, 1)})):
        c = Conv(rng, **geom)
        args = (geom["C"], geom["K"], geom["kh"], geom["kw"], c.P, c.Q, 1, 1, 1, *c.p, 1, 1)
        c.ws = np.full(conv.conv2d_workspace_size(*args, lanes=lanes), np.nan)
        c.wsb = np.full(conv.conv2d_backward_workspace_size(*args, lanes=lanes), np.nan)
        ref = reference(c.x, c.w, c.b, c.s, c.p, c.d, c.g, c.P, c.Q)
        np.testing.assert_allclose(c.forward(kind), ref, rtol=1e-12, atol=1e-12)
        R = rng.standard_normal(c.out.shape)
        gx, gw, gb = c.backward(R, kind=kind)
        gx0, gw0, gb0 = c.backward(R)  # the general kernel (its own lanes) on the same workspace
        np.testing.assert_allclose(gx, gx0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw, gw0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gb, gb0, rtol=1e-12, atol=1e-12)


def test_direct_kernel_refuses_a_geometry_it_does_not_compute():
    c = Conv(np.random.default_rng(7), B=1, C=2, H=6, W=6, K=3, kh=3, kw=3, s=(2, 2))
    with pytest.raises(ValueError, match="conv2d_direct"):
        c.forward("_direct")


@pytest.mark.parametrize("kind", ["", "_few", "_direct"])
def test_one_lane_without_a_weight_gradient(kind):
    # batch 1 runs one lane, which writes the weight gradient straight into gw: a frozen filter passes a
    # zero-length gw, which must be left alone (the general kernel once reshaped it and failed)
    rng = np.random.default_rng(8)
    c = Conv(rng, B=1, C=2, H=7, W=7, K=3, kh=3, kw=3)
    R = rng.standard_normal(c.out.shape)
    gx, _, gb = c.backward(R, kind=kind)
    gx2, gw2, gb2 = c.backward(R, need_gw=False, kind=kind)
    assert gw2.size == 0
    np.testing.assert_array_equal(gx, gx2)
    np.testing.assert_array_equal(gb, gb2)


ACTS = {1: lambda v: np.where(v <= 0, 0.0, v), 2: np.tanh, 3: lambda v: 1.0 / (1.0 + np.exp(-v))}


@pytest.mark.parametrize("act", [1, 2, 3])
def test_direct_kernels_apply_a_fused_activation(act):
    # out = act(conv + b), and the backward takes act's output gradient and output: against the definition and
    # finite differences of sum(R * act(conv)) through x, w and b (two lanes: the bias partial sums too)
    rng = np.random.default_rng(9)
    c = Conv(rng, B=3, C=2, H=9, W=8, K=3, kh=5, kw=5)
    args = (2, 3, 5, 5, c.P, c.Q, 1, 1, 1, 0, 0, 1, 1)
    c.ws = np.empty(conv.conv2d_workspace_size(*args, lanes=2))
    c.wsb = np.empty(conv.conv2d_backward_workspace_size(*args, lanes=2))
    ref = ACTS[act](reference(c.x, c.w, c.b, c.s, c.p, c.d, c.g, c.P, c.Q))
    np.testing.assert_allclose(c.forward("_direct", act), ref, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(c.out.shape)
    y = c.forward("_direct", act).copy()
    gx, gw, gb = c.backward(R, kind="_direct", act=act, y=y)
    check_gradients(lambda: float(np.sum(c.forward("_direct", act) * R)), {"x": c.x, "w": c.w, "b": c.b},
                    {"x": gx, "w": gw, "b": gb})


def test_direct_kernels_size_lanes_for_tall_narrow_planes():
    # a direct layer's W-wide planes can pass the chunk of columns a lane is sized for (1-row filters on a tall,
    # narrow image): the size helpers and the kernels' lane count make room for them (two lanes here once
    # overflowed a lane into the next one's partial sums)
    rng = np.random.default_rng(10)
    c = Conv(rng, B=2, C=1, H=5000, W=8, K=31, kh=1, kw=3)
    args = (1, 31, 1, 3, c.P, c.Q, 1, 1, 1, 0, 0, 1, 1)
    c.ws = np.full(conv.conv2d_workspace_size(*args, lanes=2), np.nan)
    c.wsb = np.full(conv.conv2d_backward_workspace_size(*args, lanes=2), np.nan)
    ref = reference(c.x, c.w, c.b, c.s, c.p, c.d, c.g, c.P, c.Q)
    np.testing.assert_allclose(c.forward("_direct"), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.forward(), ref, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(c.out.shape)
    gx, gw, gb = c.backward(R, kind="_direct")
    gx0, gw0, gb0 = c.backward(R, kind="_few")  # the transposed columns: another path to the same gradients
    np.testing.assert_allclose(gx, gx0, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gw, gw0, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gb, gb0, rtol=1e-11, atol=1e-11)
