"""Pooling kernels against numpy references (PyTorch semantics), finite differences, the lecture example."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import pool

from .gradcheck import assert_f32_matches, check_directional, check_gradients
from .test_conv_kernels import out_size


def ref_maxpool(x, k, s, p, P, Q):
    B, C, H, W = x.shape
    Hp = max(H + 2 * p[0], (P - 1) * s[0] + k[0])
    Wp = max(W + 2 * p[1], (Q - 1) * s[1] + k[1])
    xp = np.full((B, C, Hp, Wp), -np.inf)
    xp[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    out = np.empty((B, C, P, Q))
    arg = np.empty((B, C, P, Q), np.int64)
    for i in range(P):
        for j in range(Q):
            win = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]].reshape(B, C, -1)
            out[:, :, i, j] = win.max(-1)
            a = win.argmax(-1)
            h = i * s[0] + a // k[1] - p[0]
            w = j * s[1] + a % k[1] - p[1]
            arg[:, :, i, j] = h * W + w
    return out, arg


def ref_avgpool(x, k, s, p, P, Q):
    B, C, H, W = x.shape
    Hp, Wp = H + 2 * p[0], W + 2 * p[1]
    xp = np.zeros((B, C, Hp + k[0] + s[0], Wp + k[1] + s[1]))
    xp[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    out = np.empty((B, C, P, Q))
    for i in range(P):
        for j in range(Q):
            h0, w0 = i * s[0], j * s[1]
            h1, w1 = min(h0 + k[0], Hp), min(w0 + k[1], Wp)  # divisor: window clipped to the padded input
            out[:, :, i, j] = xp[:, :, h0:h1, w0:w1].sum((-1, -2)) / ((h1 - h0) * (w1 - w0))
    return out


class Pool:
    def __init__(self, rng, B, C, H, W, k, s=None, p=(0, 0), ceil=False, dtype=np.float64):
        s = s or k
        self.k, self.s, self.p = k, s, p
        self.x = rng.standard_normal((B, C, H, W)).astype(dtype)
        self.P = out_size(H, k[0], s[0], p[0], 1, ceil)
        self.Q = out_size(W, k[1], s[1], p[1], 1, ceil)
        self.out = np.empty((B, C, self.P, self.Q), dtype)
        self.arg = np.empty((B, C, self.P, self.Q), np.int64)

    def attrs(self):
        return (*self.k, *self.s, *self.p)

    def max_forward(self):
        pool.maxpool2d_forward(self.x, *self.attrs(), self.out, self.arg)
        return self.out

    def avg_forward(self):
        pool.avgpool2d_forward(self.x, *self.attrs(), self.out)
        return self.out

    def max_backward(self, g):
        gx = np.empty_like(self.x)
        pool.maxpool2d_backward(g, self.arg, gx)
        return gx

    def avg_backward(self, g):
        gx = np.empty_like(self.x)
        pool.avgpool2d_backward(g, *self.attrs(), gx)
        return gx


def case(**attrs):
    return attrs


CASES = [
    case(B=2, C=3, H=6, W=6, k=(2, 2)),
    case(B=1, C=2, H=7, W=6, k=(3, 3), s=(2, 2), p=(1, 1)),
    case(B=2, C=2, H=7, W=8, k=(3, 2), s=(2, 3), p=(1, 0), ceil=True),
    case(B=1, C=3, H=5, W=5, k=(2, 2), ceil=True),
    # the fast paths: 2x2 windows with a floor-mode row and column left out; interior windows of another size
    case(B=2, C=3, H=7, W=9, k=(2, 2)),
    case(B=2, C=2, H=9, W=8, k=(3, 2), s=(2, 2)),
]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference(case):
    c = Pool(np.random.default_rng(0), **case)
    out, arg = ref_maxpool(c.x, c.k, c.s, c.p, c.P, c.Q)
    np.testing.assert_array_equal(c.max_forward(), out)
    np.testing.assert_array_equal(c.arg, arg)
    ref = ref_avgpool(c.x, c.k, c.s, c.p, c.P, c.Q)
    np.testing.assert_allclose(c.avg_forward(), ref, rtol=1e-12, atol=1e-14)


def test_lecture_maxpool():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float64).reshape(1, 1, 4, 4)
    out = np.empty((1, 1, 2, 2))
    arg = np.empty((1, 1, 2, 2), np.int64)
    pool.maxpool2d_forward(x, 2, 2, 2, 2, 0, 0, out, arg)
    np.testing.assert_array_equal(out[0, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(arg[0, 0], [[5, 7], [8, 15]])


def test_avgpool_ceil_divisor_like_pytorch():
    # torch.nn.functional.avg_pool2d(ones(1,1,5,5), 2, ceil_mode=True): the overhanging window divides by 1
    x = np.ones((1, 1, 5, 5))
    out = np.empty((1, 1, 3, 3))
    pool.avgpool2d_forward(x, 2, 2, 2, 2, 0, 0, out)
    np.testing.assert_array_equal(out, 1.0)
    # with padding the pad counts: a 3x3 window at the corner with pad 1 sees 4 ones of 9
    out = np.empty((1, 1, 3, 3))
    pool.avgpool2d_forward(x, 3, 3, 2, 2, 1, 1, out)
    assert out[0, 0, 0, 0] == pytest.approx(4 / 9)


@pytest.mark.parametrize("case", CASES[1:3] + CASES[4:])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_gradients_finite_difference(case, kind):
    rng = np.random.default_rng(1)
    c = Pool(rng, **case)
    fwd, bwd = (c.max_forward, c.max_backward) if kind == "max" else (c.avg_forward, c.avg_backward)
    fwd()
    R = rng.standard_normal(c.out.shape)
    gx = bwd(R)
    check_gradients(lambda: float(np.sum(fwd() * R)), {"x": c.x}, {"x": gx})


@pytest.mark.parametrize("kind", ["max", "avg", "avg2x2"])
def test_directional_larger(kind):
    # large enough for the parallel path, which must agree with the reference too
    rng = np.random.default_rng(2)
    if kind == "avg2x2":  # the 2x2 fast path in lanes
        c, kind = Pool(rng, B=4, C=8, H=65, W=64, k=(2, 2)), "avg"
    else:
        c = Pool(rng, B=4, C=8, H=33, W=32, k=(3, 3), s=(2, 2), p=(1, 1), ceil=True)
    fwd, bwd = (c.max_forward, c.max_backward) if kind == "max" else (c.avg_forward, c.avg_backward)
    fwd()
    if kind == "max":
        out, arg = ref_maxpool(c.x, c.k, c.s, c.p, c.P, c.Q)
        np.testing.assert_array_equal(c.out, out)
        np.testing.assert_array_equal(c.arg, arg)
    else:
        np.testing.assert_allclose(c.out, ref_avgpool(c.x, c.k, c.s, c.p, c.P, c.Q), rtol=1e-12, atol=1e-14)
    R = rng.standard_normal(c.out.shape)
    gx = bwd(R)
    check_directional(lambda: float(np.sum(fwd() * R)), {"x": c.x}, {"x": gx}, rng)


def test_float32_matches_float64():
    c64 = Pool(np.random.default_rng(3), **CASES[2])
    c32 = Pool(np.random.default_rng(3), **CASES[2], dtype=np.float32)
    assert_f32_matches(c64.max_forward(), c32.max_forward())
    np.testing.assert_array_equal(c64.arg, c32.arg)
    assert_f32_matches(c64.avg_forward(), c32.avg_forward())


def test_global_avgpool():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 10))
    out = np.empty((3, 4))
    pool.global_avgpool_forward(x, out)
    np.testing.assert_allclose(out, x.mean(-1), rtol=1e-13)
    R = rng.standard_normal(out.shape)
    gx = np.empty_like(x)
    pool.global_avgpool_backward(R, gx)

    def f():
        pool.global_avgpool_forward(x, out)
        return float(np.sum(out * R))

    check_gradients(f, {"x": x}, {"x": gx})
    big = rng.standard_normal((8, 16, 49))
    outb = np.empty((8, 16))
    Rb = rng.standard_normal(outb.shape)
    gb = np.empty_like(big)
    pool.global_avgpool_backward(Rb, gb)

    def fb():
        pool.global_avgpool_forward(big, outb)
        return float(np.sum(outb * Rb))

    check_directional(fb, {"x": big}, {"x": gb}, rng)
    o32 = np.empty((8, 16), np.float32)
    pool.global_avgpool_forward(big.astype(np.float32), o32)
    pool.global_avgpool_forward(big, outb)
    assert_f32_matches(outb, o32)


def test_maxpool_nan_and_ties_like_pytorch():
    # ties: the first maximum wins; a NaN in the window wins (and propagates), as in PyTorch
    x = np.array([[3.0, 3.0, 1.0, np.nan], [0.0, 2.0, 5.0, 0.0]]).reshape(1, 1, 2, 4)
    out = np.empty((1, 1, 1, 2))
    arg = np.empty((1, 1, 1, 2), np.int64)
    pool.maxpool2d_forward(x, 2, 2, 2, 2, 0, 0, out, arg)
    assert out[0, 0, 0, 0] == 3.0 and arg[0, 0, 0, 0] == 0
    assert np.isnan(out[0, 0, 0, 1]) and arg[0, 0, 0, 1] == 3
