"""The Winograd F(4×4, 3×3) path of conv2d against the direct definition, and conv2d's choice of it.

The references are the definition written with NumPy over the nine filter taps (forward, input gradient and
filter gradient), in float64, where Winograd is exact to rounding; float32 is held to the error the module
docstring states. Edge tiles (outputs that are not multiples of 4), padding 0, 1 and 2, lanes and chunks of
samples are all exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import conv
from netdsl.compiler.kernels.cpu import winograd as wg

from .gradcheck import check_directional


def _pad(x, p):
    B, C, H, W = x.shape
    xp = np.zeros((B, C, H + 2 * p, W + 2 * p))
    xp[:, :, p:p + H, p:p + W] = x
    return xp


def ref_forward(x, w, b, p):
    xp = _pad(x.astype(np.float64), p)
    P, Q = xp.shape[2] - 2, xp.shape[3] - 2
    out = np.zeros((x.shape[0], w.shape[0], P, Q))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,kc->nkhw", xp[:, :, i:i + P, j:j + Q], w[:, :, i, j].astype(np.float64))
    return out + (b.astype(np.float64)[None, :, None, None] if b.size else 0.0)


def ref_backward(gout, x, w, p):
    xp = _pad(x.astype(np.float64), p)
    P, Q = gout.shape[2], gout.shape[3]
    gxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    g = gout.astype(np.float64)
    for i in range(3):
        for j in range(3):
            gw[:, :, i, j] = np.einsum("nkhw,nchw->kc", g, xp[:, :, i:i + P, j:j + Q])
            gxp[:, :, i:i + P, j:j + Q] += np.einsum("nkhw,kc->nchw", g, w[:, :, i, j].astype(np.float64))
    H, W = x.shape[2], x.shape[3]
    return gxp[:, :, p:p + H, p:p + W], gw


def _case(rng, B, C, H, W, K, p, dtype=np.float64):
    x = rng.standard_normal((B, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    P, Q = H + 2 * p - 2, W + 2 * p - 2
    return x, w, b, P, Q


def _run(x, w, b, p, P, Q, gout, lanes=1, need=(True, True), ws_f=None, ws_b=None):
    B, C = x.shape[:2]
    K = w.shape[0]
    geo = (C, K, 3, 3, P, Q, 1, 1, 1, p, p, 1, 1)
    out = np.full((B, K, P, Q), np.nan, x.dtype)
    ws = ws_f if ws_f is not None else np.full(conv.conv2d_workspace_size(*geo, lanes=lanes), np.nan, x.dtype)
    conv.conv2d_winograd_forward(x, w, b, 1, 1, p, p, 1, 1, 1, out, ws)
    gx = np.full_like(x, np.nan) if need[0] else np.empty((0, 0, 0, 0), x.dtype)
    gw = np.full_like(w, np.nan) if need[1] else np.empty((0, 0, 0, 0), x.dtype)
    gb = np.empty_like(b)
    wsb = ws_b if ws_b is not None else np.full(conv.conv2d_backward_workspace_size(*geo, lanes=lanes), np.nan,
                                                 x.dtype)
    conv.conv2d_winograd_backward(gout, x, w, 1, 1, p, p, 1, 1, 1, gx, gw, gb, need[0], need[1], wsb)
    return out, gx, gw, gb


GEOMS = [
    # B, C, H, W, K, pad: 8×8 outputs (whole tiles), 9×11 and 10×10 (edge tiles), pads 0, 1, 2
    (8, 16, 8, 8, 16, 1),
    (4, 16, 9, 11, 24, 1),
    (6, 17, 12, 10, 16, 0),
    (8, 16, 6, 6, 20, 2),
]


@pytest.mark.parametrize("geom", GEOMS)
def test_winograd_matches_the_definition_float64(geom):
    B, C, H, W, K, p = geom
    rng = np.random.default_rng(0)
    x, w, b, P, Q = _case(rng, B, C, H, W, K, p)
    assert wg.applies(C, K, 3, 3, 1, 1, 1, 1, 1, P, Q) and B * ((P + 3) // 4) * ((Q + 3) // 4) >= 32
    gout = rng.standard_normal((B, K, P, Q))
    out, gx, gw, gb = _run(x, w, b, p, P, Q, gout)
    np.testing.assert_allclose(out, ref_forward(x, w, b, p), rtol=1e-11, atol=1e-11)
    rgx, rgw = ref_backward(gout, x, w, p)
    np.testing.assert_allclose(gx, rgx, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gw, rgw, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(gb, gout.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_winograd_gradients_directional():
    # the backward is the adjoint of the forward actually computed (not only of the definition)
    rng = np.random.default_rng(1)
    B, C, H, W, K, p = GEOMS[1]
    x, w, b, P, Q = _case(rng, B, C, H, W, K, p)
    R = rng.standard_normal((B, K, P, Q))
    geo = (C, K, 3, 3, P, Q, 1, 1, 1, p, p, 1, 1)
    ws = np.empty(conv.conv2d_workspace_size(*geo))
    out = np.empty((B, K, P, Q))

    def loss():
        conv.conv2d_winograd_forward(x, w, b, 1, 1, p, p, 1, 1, 1, out, ws)
        return float(np.sum(out * R))

    _, gx, gw, gb = _run(x, w, b, p, P, Q, R)
    check_directional(loss, {"x": x, "w": w, "b": b}, {"x": gx, "w": gw, "b": gb}, rng)


def test_float32_error_is_bounded():
    rng = np.random.default_rng(2)
    B, C, H, W, K, p = 8, 64, 16, 16, 32, 1
    x, w, b, P, Q = _case(rng, B, C, H, W, K, p, np.float32)
    gout = rng.standard_normal((B, K, P, Q)).astype(np.float32)
    out, gx, gw, _ = _run(x, w, b, p, P, Q, gout)
    rgx, rgw = ref_backward(gout, x, w, p)
    for got, want in ((out, ref_forward(x, w, b, p)), (gx, rgx), (gw, rgw)):
        assert got.dtype == np.float32
        err = np.abs(got - want).max() / np.abs(want).max()
        # measured 5.9e-6 (forward), 2.6e-6 (input gradient), 4.9e-6 (filter gradient); im2col's direct float32
        # sum gives 4.8e-7 and 1.6e-7 on the same data: F(4×4)'s coefficients cost about ten times that
        assert err < 1.5e-5, err


def test_lanes_chunks_and_flags_agree():
    # lanes (threads) with their own partial filter gradients, several chunks per lane, and the need_* flags
    rng = np.random.default_rng(3)
    B, C, H, W, K, p = 9, 16, 10, 10, 16, 1
    x, w, b, P, Q = _case(rng, B, C, H, W, K, p)
    gout = rng.standard_normal((B, K, P, Q))
    one = _run(x, w, b, p, P, Q, gout, lanes=1)
    three = _run(x, w, b, p, P, Q, gout, lanes=3)
    for a, c in zip(one, three, strict=True):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)
    # a lane area that holds two samples' tiles (the kernels called directly: conv2d would size it larger):
    # chunks of samples, the filter gradient summed over them
    area = 2 * wg._per_image(C, K, P, Q) + wg._fixed(C, K)
    out = np.full((B, K, P, Q), np.nan)
    wg.winograd_forward(x, w, b, p, p, 1, out, np.full(36 * K * C + area, np.nan))
    np.testing.assert_allclose(out, one[0], rtol=1e-11, atol=1e-11)
    gx, gw = np.full_like(x, np.nan), np.full_like(w, np.nan)
    for nl in (1, 2):
        wg.winograd_backward(gout, x, w, p, p, nl, gx, gw, True, True,
                             np.full(36 * K * C + nl * (45 * K * C + area), np.nan))
        np.testing.assert_allclose(gx, one[1], rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(gw, one[2], rtol=1e-11, atol=1e-11)
    _, gx_only, _, _ = _run(x, w, b, p, P, Q, gout, need=(True, False))
    _, _, gw_only, _ = _run(x, w, b, p, P, Q, gout, need=(False, True))
    np.testing.assert_array_equal(gx_only, one[1])
    np.testing.assert_array_equal(gw_only, one[2])


def test_choice_of_path():
    # the geometry decides (strides, dilation, groups, thin layers and outputs under 4×4 stay with im2col)
    assert wg.applies(64, 64, 3, 3, 1, 1, 1, 1, 1, 32, 32)
    assert wg.applies(512, 512, 3, 3, 1, 1, 1, 1, 1, 4, 4)  # ResNet's last stage: one tile a sample
    assert not wg.applies(512, 512, 3, 3, 1, 1, 1, 1, 1, 2, 2)
    assert not wg.applies(64, 64, 3, 3, 2, 2, 1, 1, 1, 16, 16)
    assert not wg.applies(64, 64, 3, 3, 1, 1, 2, 2, 1, 28, 28)
    assert not wg.applies(64, 64, 3, 3, 1, 1, 1, 1, 2, 32, 32)
    assert not wg.applies(3, 64, 3, 3, 1, 1, 1, 1, 1, 32, 32)
    assert not wg.applies(64, 64, 5, 5, 1, 1, 1, 1, 1, 28, 28)
    # and a batch with too few tiles runs im2col from the same workspace, with the same result
    rng = np.random.default_rng(4)
    x, w, b, P, Q = _case(rng, 1, 16, 8, 8, 16, 1)
    gout = rng.standard_normal((1, 16, P, Q))
    out, gx, gw, _ = _run(x, w, b, 1, P, Q, gout)
    np.testing.assert_allclose(out, ref_forward(x, w, b, 1), rtol=1e-12, atol=1e-12)
    rgx, rgw = ref_backward(gout, x, w, 1)
    np.testing.assert_allclose(gx, rgx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, rgw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geom", [
    # C, K, kh, kw, P, Q, groups, stride, dilation, pad
    (64, 64, 3, 3, 32, 32, 1, 1, 1, 1), (512, 512, 3, 3, 4, 4, 1, 1, 1, 1), (64, 128, 3, 3, 16, 16, 1, 2, 1, 1),
    (16, 16, 3, 3, 9, 11, 1, 1, 1, 1), (6, 16, 5, 5, 10, 10, 1, 1, 1, 1), (32, 32, 3, 3, 8, 8, 2, 1, 1, 1),
    # the direct loops (conv_direct.py): LeNet's layers, and a tall narrow plane whose rows pass the chunk
    (1, 6, 5, 5, 28, 28, 1, 1, 1, 0), (6, 16, 5, 5, 10, 10, 1, 1, 1, 0), (1, 31, 1, 3, 5000, 6, 1, 1, 1, 0),
])
def test_lowering_sizes_the_workspace_as_the_kernels_do(geom):
    # rules.py restates conv.py's workspace helpers (it must not import Numba): the two must agree
    from types import SimpleNamespace

    from netdsl.compiler import rules

    C, K, kh, kw, P, Q, g, s, d, p = geom
    node = SimpleNamespace(attrs={"stride": (s, s), "dilation": (d, d), "groups": g, "pad": (p, p)})
    args = (C, K, kh, kw, P, Q, g, s, s, p, p, d, d)
    assert rules._conv_ws(node, C, K, kh, kw, P, Q, False) == conv.conv2d_workspace_size(*args)
    assert rules._conv_ws(node, C, K, kh, kw, P, Q, True) == conv.conv2d_backward_workspace_size(*args)


def test_lowering_picks_the_winograd_kernels_only_where_they_apply():
    # LeNet (5×5 filters, 6 and 16 channels) never compiles the Winograd path (seconds of cold compile); a
    # CIFAR ResNet's 3×3 stride-1 layers call it, its strided and 1×1 layers do not
    from pathlib import Path

    import netdsl

    specs = Path(__file__).resolve().parents[2] / "specs"
    lenet = netdsl.compile(netdsl.load(specs / "lenet5.net"), batch=2).code()
    # and no columns at all: c1 (25 taps) and c3 (150 taps, 16 filters) run direct loops
    assert "winograd" not in lenet and "conv2d_forward(" not in lenet and "conv2d_backward(" not in lenet
    assert "conv2d_few" not in lenet
    assert lenet.count("conv2d_direct_forward(") == 2 and lenet.count("conv2d_direct_backward(") == 2
    resnet = netdsl.compile(netdsl.load(specs / "resnet20_cifar.net", classes=10), batch=2).code()
    # 18 3×3 layers in 9 blocks, two of them strided; the 3-channel stem (16 filters) takes the few-filter
    # kernel, the strided layers and the two 1×1 projections the general one
    assert resnet.count("conv2d_winograd_forward(") == 16 and resnet.count("conv2d_winograd_backward(") == 16
    assert resnet.count("conv2d_few_forward(") == 1 and resnet.count("conv2d_forward(") == 2 + 2


def test_a_nan_stays_in_its_tile():
    # a non-finite input spoils the output tiles whose inputs hold it (Winograd mixes a whole tile), nothing
    # else: without a bias, the zero added is not taken from the data
    rng = np.random.default_rng(5)
    x, w, _, P, Q = _case(rng, 8, 16, 8, 8, 16, 1)
    x[3, 2, 0, 0] = np.nan  # inside output tile (0, 0) only, whose (0, 0) output the channel-last copy holds first
    out, _, _, _ = _run(x, w, np.empty(0), 1, P, Q, rng.standard_normal((8, 16, P, Q)))
    assert np.isnan(out[3, :, :4, :4]).all()
    assert np.isfinite(out[3, :, 4:]).all() and np.isfinite(out[3, :, :, 4:]).all()
    assert np.isfinite(np.delete(out, 3, axis=0)).all()
