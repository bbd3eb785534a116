"""dense and matmul kernels against numpy, finite differences and float32 agreement."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import dense

from .gradcheck import assert_f32_matches, check_directional, check_gradients


def dense_case(rng, N, D, U, bias=True, dtype=np.float64):
    x = rng.standard_normal((N, D)).astype(dtype)
    w = rng.standard_normal((U, D)).astype(dtype)
    b = rng.standard_normal(U).astype(dtype) if bias else np.empty(0, dtype)
    return x, w, b, np.empty((N, U), dtype)


@pytest.mark.parametrize("bias", [True, False])
def test_dense(bias):
    rng = np.random.default_rng(0)
    x, w, b, out = dense_case(rng, 4, 5, 3, bias)
    dense.dense_forward(x, w, b, out)
    np.testing.assert_allclose(out, x @ w.T + (b if bias else 0), rtol=1e-13)
    R = rng.standard_normal(out.shape)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    dense.dense_backward(R, x, w, gx, gw, gb, True, True)

    def f():
        dense.dense_forward(x, w, b, out)
        return float(np.sum(out * R))

    wrt, grads = {"x": x, "w": w}, {"x": gx, "w": gw}
    if bias:
        wrt["b"], grads["b"] = b, gb
    check_gradients(f, wrt, grads)
    # skipped gradients take zero-size placeholders and leave the others unchanged
    gw2 = np.empty_like(w)
    dense.dense_backward(R, x, w, np.empty((0, 0)), gw2, gb, False, True)
    np.testing.assert_array_equal(gw2, gw)
    gx2 = np.empty_like(x)
    dense.dense_backward(R, x, w, gx2, np.empty((0, 0)), gb, True, False)
    np.testing.assert_array_equal(gx2, gx)


def test_dense_large_directional_and_float32():
    rng = np.random.default_rng(1)
    x, w, b, out = dense_case(rng, 64, 120, 50)
    R = rng.standard_normal(out.shape)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    dense.dense_backward(R, x, w, gx, gw, gb, True, True)

    def f():
        dense.dense_forward(x, w, b, out)
        return float(np.sum(out * R))

    check_directional(f, {"x": x, "w": w, "b": b}, {"x": gx, "w": gw, "b": gb}, rng)
    x32, w32, b32, o32 = (a.astype(np.float32) for a in (x, w, b, out))
    dense.dense_forward(x32, w32, b32, o32)
    dense.dense_forward(x, w, b, out)
    assert_f32_matches(out, o32)


def mm_grads(a, b, R):
    B = R.shape[0]
    ga, gb = np.empty_like(a), np.empty_like(b)
    ws = np.empty(dense.matmul_backward_workspace_size(B, a.shape[1], a.shape[2], b.shape[2], a.shape[0],
                                                       b.shape[0]))
    dense.matmul_backward(R, a, b, ga, gb, True, True, ws)
    return ga, gb


@pytest.mark.parametrize(("ba", "bb"), [(3, 3), (1, 3), (3, 1)])
def test_matmul(ba, bb):
    rng = np.random.default_rng(2)
    B, M, K, N = 3, 4, 5, 2
    a = rng.standard_normal((ba, M, K))
    b = rng.standard_normal((bb, K, N))
    out = np.empty((B, M, N))
    dense.matmul_forward(a, b, out)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-13)
    R = rng.standard_normal(out.shape)
    ga, gb = mm_grads(a, b, R)

    def f():
        dense.matmul_forward(a, b, out)
        return float(np.sum(out * R))

    check_gradients(f, {"a": a, "b": b}, {"a": ga, "b": gb})


def test_matmul_large_directional_and_float32():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 32, 24))
    b = rng.standard_normal((6, 24, 40))
    out = np.empty((6, 32, 40))
    R = rng.standard_normal(out.shape)
    ga, gb = mm_grads(a, b, R)

    def f():
        dense.matmul_forward(a, b, out)
        return float(np.sum(out * R))

    check_directional(f, {"a": a, "b": b}, {"a": ga, "b": gb}, rng)
    o32 = np.empty(out.shape, np.float32)
    dense.matmul_forward(a.astype(np.float32), b.astype(np.float32), o32)
    dense.matmul_forward(a, b, out)
    assert_f32_matches(out, o32)


@pytest.mark.parametrize(("N", "D", "U"), [(1, 5, 3), (4, 5, 1), (1, 1, 1)])
def test_dense_vector_shapes(N, D, U):
    # BLAS takes its gemv / dot branches for these; the results must not change
    rng = np.random.default_rng(4)
    x, w, b, out = dense_case(rng, N, D, U)
    dense.dense_forward(x, w, b, out)
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-13)
    R = rng.standard_normal(out.shape)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    dense.dense_backward(R, x, w, gx, gw, gb, True, True)
    np.testing.assert_allclose(gx, R @ w, rtol=1e-13)
    np.testing.assert_allclose(gw, R.T @ x, rtol=1e-13)
    np.testing.assert_allclose(gb, R.sum(0), rtol=1e-13)
