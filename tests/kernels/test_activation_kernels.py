"""Activation kernels against numpy / scipy references, finite differences, and the dropout hash."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import activation as act
from scipy.special import erf
from scipy.special import softmax as sp_softmax

from .gradcheck import assert_f32_matches, check_directional, check_gradients

A = 0.1  # leaky_relu slope

# name -> (reference, forward call, backward call); backward reads y or x as the kernel documents
POINTWISE = {
    "relu": (lambda x: np.maximum(x, 0), lambda x, o: act.relu_forward(x, o),
             lambda g, x, y, gx: act.relu_backward(g, y, gx)),
    "leaky_relu": (lambda x: np.where(x > 0, x, A * x), lambda x, o: act.leaky_relu_forward(x, A, o),
                   lambda g, x, y, gx: act.leaky_relu_backward(g, x, A, gx)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x, o: act.sigmoid_forward(x, o),
                lambda g, x, y, gx: act.sigmoid_backward(g, y, gx)),
    "tanh": (np.tanh, lambda x, o: act.tanh_forward(x, o), lambda g, x, y, gx: act.tanh_backward(g, y, gx)),
    "gelu": (lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))), lambda x, o: act.gelu_forward(x, o),
             lambda g, x, y, gx: act.gelu_backward(g, x, gx)),
    "identity": (lambda x: x, lambda x, o: act.identity_forward(x, o),
                 lambda g, x, y, gx: act.identity_backward(g, gx)),
}


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise(name):
    ref, fwd, bwd = POINTWISE[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)) * 3
    out = np.empty_like(x)
    fwd(x, out)
    np.testing.assert_allclose(out, ref(x), rtol=1e-13, atol=1e-15)
    R = rng.standard_normal(x.shape)
    gx = np.empty_like(x)
    bwd(R, x, out, gx)

    def f():
        fwd(x, out)
        return float(np.sum(out * R))

    check_gradients(f, {"x": x}, {"x": gx})
    big = rng.standard_normal((16, 20, 60))  # rank 3 like x: one compilation fewer
    ob = np.empty_like(big)
    fwd(big, ob)
    Rb = rng.standard_normal(big.shape)
    gb = np.empty_like(big)
    bwd(Rb, big, ob, gb)

    def fb():
        fwd(big, ob)
        return float(np.sum(ob * Rb))

    check_directional(fb, {"x": big}, {"x": gb}, rng)
    o32 = np.empty(big.shape, np.float32)
    fwd(big.astype(np.float32), o32)
    fwd(big, ob)
    assert_f32_matches(ob, o32)


def test_sigmoid_extremes_and_inplace():
    x = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    out = np.empty_like(x)
    act.sigmoid_forward(x, out)
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and out[-1] == 1.0 and out[2] == 0.5
    act.relu_forward(x, x)  # out may alias x
    np.testing.assert_array_equal(x, [0, 0, 0, 30, 800])


@pytest.mark.parametrize("view", [(4, 7, 1), (3, 5, 4)])
def test_softmax(view):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(view) * 4
    out = np.empty_like(x)
    act.softmax_forward(x, out)
    np.testing.assert_allclose(out, sp_softmax(x, axis=1), rtol=1e-13)
    R = rng.standard_normal(view)
    gx = np.empty_like(x)
    act.softmax_backward(R, out, gx)

    def f():
        act.softmax_forward(x, out)
        return float(np.sum(out * R))

    check_gradients(f, {"x": x}, {"x": gx})


def test_softmax_large_directional_and_float32():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 64, 40)) * 3
    out = np.empty_like(x)
    act.softmax_forward(x, out)
    np.testing.assert_allclose(out, sp_softmax(x, axis=1), rtol=1e-12)
    R = rng.standard_normal(x.shape)
    gx = np.empty_like(x)
    act.softmax_backward(R, out, gx)

    def f():
        act.softmax_forward(x, out)
        return float(np.sum(out * R))

    check_directional(f, {"x": x}, {"x": gx}, rng)
    o32 = np.empty(x.shape, np.float32)
    act.softmax_forward(x.astype(np.float32), o32)
    act.softmax_forward(x, out)
    assert_f32_matches(out, o32)


M64 = (1 << 64) - 1


def _py_splitmix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def py_dropout_uniform(seed, step, node_id, i):
    """The documented mask formula in plain Python (what a CUDA port must reproduce)."""
    k = _py_splitmix((seed + 0x9E3779B97F4A7C15) & M64)
    k = _py_splitmix(k ^ (step & M64))
    k = _py_splitmix(k ^ (node_id & M64))
    h = _py_splitmix((k + (i + 1) * 0x9E3779B97F4A7C15) & M64)
    return (h >> 11) / 2.0**53


def test_dropout_mask_is_the_documented_hash():
    p = 0.3
    x = np.ones(50)
    out = np.empty_like(x)
    act.dropout_forward(x, p, 42, 7, 3, out)
    expect = np.array([1 / (1 - p) if py_dropout_uniform(42, 7, 3, i) >= p else 0.0 for i in range(50)])
    np.testing.assert_allclose(out, expect, rtol=1e-15)


def test_dropout_determinism_rate_and_gradient():
    rng = np.random.default_rng(3)
    p = 0.25
    x = rng.standard_normal((40, 50))
    out, out2 = np.empty_like(x), np.empty_like(x)
    act.dropout_forward(x, p, 1, 5, 9, out)
    act.dropout_forward(x, p, 1, 5, 9, out2)
    np.testing.assert_array_equal(out, out2)  # a pure function of (seed, step, node)
    for other in [(2, 5, 9), (1, 6, 9), (1, 5, 10)]:
        act.dropout_forward(x, p, *other, out2)
        assert not np.array_equal(out == 0, out2 == 0)
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.03
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-15)
    R = rng.standard_normal(x.shape)
    gx = np.empty_like(x)
    act.dropout_backward(R, p, 1, 5, 9, gx)
    np.testing.assert_allclose(gx, np.where(kept, R / (1 - p), 0.0), rtol=1e-15)
    xs = x[:3].copy()
    os_ = np.empty_like(xs)
    gs = np.empty_like(xs)
    act.dropout_backward(R[:3].copy(), p, 1, 5, 9, gs)

    def f():
        act.dropout_forward(xs, p, 1, 5, 9, os_)
        return float(np.sum(os_ * R[:3]))

    check_gradients(f, {"x": xs}, {"x": gs})
    check_directional(lambda: (act.dropout_forward(x, p, 1, 5, 9, out), float(np.sum(out * R)))[1],
                      {"x": x}, {"x": gx}, rng)
    o32 = np.empty(x.shape, np.float32)
    act.dropout_forward(x.astype(np.float32), p, 1, 5, 9, o32)
    assert_f32_matches(out, o32)
    np.testing.assert_array_equal(o32 == 0, out == 0)  # the same mask whatever the dtype
    act.dropout_forward(x, 0.0, 1, 5, 9, out2)
    np.testing.assert_array_equal(out2, x)
    act.dropout_forward(x, 1.0, 1, 5, 9, out2)
    np.testing.assert_array_equal(out2, 0.0)
