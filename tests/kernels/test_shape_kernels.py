"""concat, transpose, mean, last and the reshape/flatten copies against numpy, with gradient checks."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import shape

from .gradcheck import assert_f32_matches, check_directional, check_gradients


def test_concat():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((3, L, 4)) for L in (2, 1, 3)]
    out = np.empty((3, 6, 4))
    offs = [0, 2, 3]

    def fwd():
        for x, o in zip(xs, offs):
            shape.concat_forward(x, o, out)
        return out

    np.testing.assert_array_equal(fwd(), np.concatenate(xs, axis=1))
    R = rng.standard_normal(out.shape)
    gs = [np.empty_like(x) for x in xs]
    for g, o in zip(gs, offs):
        shape.concat_backward(R, o, g)
    wrt = {str(i): x for i, x in enumerate(xs)}
    grads = {str(i): g for i, g in enumerate(gs)}
    check_gradients(lambda: float(np.sum(fwd() * R)), wrt, grads)
    check_directional(lambda: float(np.sum(fwd() * R)), wrt, grads, rng)
    o32 = np.empty(out.shape, np.float32)
    for x, o in zip(xs, offs):
        shape.concat_forward(x.astype(np.float32), o, o32)
    assert_f32_matches(fwd(), o32)


@pytest.mark.parametrize("perm", [(0, 2, 1), (2, 0, 1), (0, 1, 2), (0, 2, 1, 3), (3, 1, 0, 2)])
def test_transpose(perm):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5)[:len(perm)])
    p = np.array(perm, np.int64)
    out = np.empty(np.transpose(x, perm).shape)

    def fwd():
        shape.transpose_forward(x, p, out)
        return out

    np.testing.assert_array_equal(fwd(), np.transpose(x, perm))
    R = rng.standard_normal(out.shape)
    gx = np.empty_like(x)
    shape.transpose_backward(R, p, gx)
    np.testing.assert_array_equal(gx, np.transpose(R, np.argsort(perm)))
    check_gradients(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx})


def test_transpose_large_directional_and_float32():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16, 8, 12))
    p = np.array([0, 2, 1, 3], np.int64)
    out = np.empty((4, 8, 16, 12))
    R = rng.standard_normal(out.shape)
    gx = np.empty_like(x)
    shape.transpose_backward(R, p, gx)

    def f():
        shape.transpose_forward(x, p, out)
        return float(np.sum(out * R))

    check_directional(f, {"x": x}, {"x": gx}, rng)
    o32 = np.empty(out.shape, np.float32)
    shape.transpose_forward(x.astype(np.float32), p, o32)
    shape.transpose_forward(x, p, out)
    assert_f32_matches(out, o32)


@pytest.mark.parametrize("view", [(3, 4, 5), (6, 7, 1), (1, 5, 3)])
def test_mean(view):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(view)
    out = np.empty((view[0], view[2]))

    def fwd():
        shape.mean_forward(x, out)
        return out

    np.testing.assert_allclose(fwd(), x.mean(1), rtol=1e-14)
    R = rng.standard_normal(out.shape)
    gx = np.empty_like(x)
    shape.mean_backward(R, gx)
    check_gradients(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx})
    check_directional(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx}, rng)
    o32 = np.empty(out.shape, np.float32)
    shape.mean_forward(x.astype(np.float32), o32)
    assert_f32_matches(fwd(), o32)


def test_last():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 4))
    out = np.empty((3, 4))

    def fwd():
        shape.last_forward(x, out)
        return out

    np.testing.assert_array_equal(fwd(), x[:, -1])
    R = rng.standard_normal(out.shape)
    gx = np.full_like(x, np.nan)  # backward must overwrite every element
    shape.last_backward(R, gx)
    check_gradients(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx})
    check_directional(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx}, rng)
    o32 = np.empty(out.shape, np.float32)
    shape.last_forward(x.astype(np.float32), o32)
    assert_f32_matches(fwd(), o32)


@pytest.mark.parametrize("kind", ["reshape", "flatten"])
def test_copies(kind):
    rng = np.random.default_rng(5)
    fwd_k, bwd_k = getattr(shape, f"{kind}_forward"), getattr(shape, f"{kind}_backward")
    x = rng.standard_normal((2, 3, 4))
    out = np.empty((2, 12))

    def fwd():
        fwd_k(x, out)
        return out

    np.testing.assert_array_equal(fwd(), x.reshape(2, 12))
    R = rng.standard_normal(out.shape)
    gx = np.empty_like(x)
    bwd_k(R, gx)
    np.testing.assert_array_equal(gx, R.reshape(x.shape))
    check_gradients(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx})
    check_directional(lambda: float(np.sum(fwd() * R)), {"x": x}, {"x": gx}, rng)
    o32 = np.empty(out.shape, np.float32)
    fwd_k(x.astype(np.float32), o32)
    assert_f32_matches(fwd(), o32)
