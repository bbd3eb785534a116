"""Broadcasting add/sub/mul/div (and neg) against numpy, finite differences, float32 agreement."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import elementwise as ew

from .gradcheck import assert_f32_matches, check_directional, check_gradients

OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}

# (a shape, b shape, out shape): rank-matched views as the caller passes them, plus numpy's lower-rank rule.
# Each distinct rank combination is a separate Numba compilation, so the cases reuse rank 3 where they can.
SHAPES = [
    ((2, 3, 4), (2, 3, 4), (2, 3, 4)),
    ((2, 3, 4), (1, 3, 1), (2, 3, 4)),
    ((2, 1, 4), (1, 3, 1), (2, 3, 4)),
    ((1, 1, 1), (3, 1, 2), (3, 1, 2)),
    ((2, 3, 4), (2, 1, 4), (2, 3, 4)),
    ((1, 3, 4), (2, 3, 1), (2, 3, 4)),
]
BIAS4 = ((2, 3, 4, 5), (1, 3, 1, 1), (2, 3, 4, 5))  # a per-channel term on (B, C, H, W)
RANK5 = ((2, 1, 3, 1, 2), (1, 2, 1, 4, 2), (2, 2, 3, 4, 2))
LOWER = ((3, 4), (4,), (3, 4))


def operands(rng, sa, sb, dtype=np.float64):
    a = rng.standard_normal(sa).astype(dtype)
    b = (rng.uniform(0.5, 2.0, sb) * rng.choice([-1, 1], sb)).astype(dtype)  # away from 0 for div
    return a, b


def grads(op, R, a, b):
    ga, gb = np.empty_like(a), np.empty_like(b)
    getattr(ew, f"{op}_backward")(R, a, b, ga, gb, True, True)
    return ga, gb


@pytest.mark.parametrize(("op", "shapes"), [(op, sh) for op in sorted(OPS) for sh in SHAPES]
                         + [("mul", RANK5), ("add", LOWER), ("add", BIAS4)])
def test_forward_matches_numpy(op, shapes):
    sa, sb, so = shapes
    a, b = operands(np.random.default_rng(0), sa, sb)
    out = np.empty(so)
    getattr(ew, f"{op}_forward")(a, b, out)
    np.testing.assert_allclose(out, OPS[op](a, b), rtol=1e-15)


@pytest.mark.parametrize(("op", "shapes"), [(op, sh) for op in sorted(OPS) for sh in SHAPES[::2]]
                         + [("mul", RANK5), ("div", SHAPES[3]), ("sub", SHAPES[4]), ("mul", SHAPES[5]),
                            ("add", LOWER), ("add", BIAS4)])
def test_gradients(op, shapes):
    sa, sb, so = shapes
    rng = np.random.default_rng(1)
    a, b = operands(rng, sa, sb)
    out = np.empty(so)
    fwd = getattr(ew, f"{op}_forward")
    R = rng.standard_normal(so)
    ga, gb = grads(op, R, a, b)
    assert ga.shape == a.shape and gb.shape == b.shape

    def f():
        fwd(a, b, out)
        return float(np.sum(out * R))

    check_gradients(f, {"a": a, "b": b}, {"a": ga, "b": gb})


@pytest.mark.parametrize("op", sorted(OPS))
def test_large_directional_and_float32(op):
    rng = np.random.default_rng(2)
    so = (8, 16, 120)
    a, b = operands(rng, so, (1, 16, 1))
    out = np.empty(so)
    fwd = getattr(ew, f"{op}_forward")
    R = rng.standard_normal(so)
    ga, gb = grads(op, R, a, b)

    def f():
        fwd(a, b, out)
        return float(np.sum(out * R))

    check_directional(f, {"a": a, "b": b}, {"a": ga, "b": gb}, rng)
    o32 = np.empty(so, np.float32)
    fwd(a.astype(np.float32), b.astype(np.float32), o32)
    fwd(a, b, out)
    assert_f32_matches(out, o32)


def test_geometry_merges_axes():
    # a channel bias on (B, C, H, W) walks B*C rows of H*W: axes merged where both operands allow it
    n, sa, sb = ew._geometry(np.empty((2, 3, 4, 5)), np.empty((2, 3, 4, 5)), np.empty((1, 3, 1, 1)))
    assert list(n) == [1, 1, 2, 3, 20] and list(sa) == [0, 0, 60, 20, 1] and list(sb) == [0, 0, 0, 1, 0]


def test_need_flags_skip():
    rng = np.random.default_rng(3)
    a, b = operands(rng, (2, 3), (1, 3))
    R = rng.standard_normal((2, 3))
    gb = grads("mul", R, a, b)[1]
    gb2 = np.empty_like(b)
    ew.mul_backward(R, a, b, np.empty((0, 0)), gb2, False, True)
    np.testing.assert_array_equal(gb2, gb)


def test_neg():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4))
    out = np.empty_like(x)
    ew.neg_forward(x, out)
    np.testing.assert_array_equal(out, -x)
    R = rng.standard_normal(x.shape)
    gx = np.empty_like(x)
    ew.neg_backward(R, gx)

    def f():
        ew.neg_forward(x, out)
        return float(np.sum(out * R))

    check_gradients(f, {"x": x}, {"x": gx})
    check_directional(f, {"x": x}, {"x": gx}, rng)
    o32 = np.empty(x.shape, np.float32)
    ew.neg_forward(x.astype(np.float32), o32)
    assert_f32_matches(out, o32)
