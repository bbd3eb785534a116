"""Embedding, unembed and positional kernels against numpy references and finite differences."""

import math

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import embed

from .fdcheck import assert_f32_matches, check_directional, check_gradients

Z64 = np.zeros(0)


def test_embedding_forward_and_scatter_backward():
    rng = np.random.default_rng(0)
    V, D = 7, 5
    w = rng.standard_normal((V, D))
    ids = np.array([3, 0, 3, 6, 3, 1], np.int64)  # repeated ids must add up in the gradient
    out = np.empty((ids.size, D))
    embed.embedding_forward(ids, w, out)
    np.testing.assert_array_equal(out, w[ids])
    g = rng.standard_normal(out.shape)
    gw = np.full((V, D), 123.0)  # overwritten, not accumulated
    embed.embedding_backward(g, ids, gw)
    ref = np.zeros((V, D))
    np.add.at(ref, ids, g)
    np.testing.assert_allclose(gw, ref, rtol=0, atol=1e-15)
    assert np.all(gw[[2, 4, 5]] == 0.0)

    R = rng.standard_normal(out.shape)

    def f():
        embed.embedding_forward(ids, w, out)
        return float(np.sum(out * R))

    embed.embedding_backward(R, ids, gw)
    check_gradients(f, {"w": w}, {"w": gw})


def test_embedding_bad_id_raises():
    w = np.zeros((4, 2))
    out = np.empty((1, 2))
    with pytest.raises(IndexError):
        embed.embedding_forward(np.array([4], np.int64), w, out)
    with pytest.raises(IndexError):
        embed.embedding_forward(np.array([-1], np.int64), w, out)


def test_embedding_float32():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((9, 4))
    ids = rng.integers(0, 9, 11).astype(np.int64)
    out64 = np.empty((11, 4))
    out32 = np.empty((11, 4), np.float32)
    embed.embedding_forward(ids, w, out64)
    embed.embedding_forward(ids, w.astype(np.float32), out32)
    assert_f32_matches(out64, out32)


@pytest.mark.parametrize("N,D,V", [(3, 4, 6), (20, 16, 30)])
def test_unembed(N, D, V):
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, D))
    w = rng.standard_normal((V, D))
    out = np.empty((N, V))
    embed.unembed_forward(x, w, out)
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-13, atol=1e-13)
    R = rng.standard_normal(out.shape)

    def f():
        embed.unembed_forward(x, w, out)
        return float(np.sum(out * R))

    gx = np.full_like(x, 7.0)
    gw = np.full_like(w, 7.0)
    embed.unembed_backward(R, x, w, gx, gw, True, True)
    grads = {"x": gx, "w": gw}
    if N * D * V < 200:
        check_gradients(f, {"x": x, "w": w}, grads)
    check_directional(f, {"x": x, "w": w}, grads, rng)
    # need_* flags: zero-size placeholders of the right rank are left alone
    embed.unembed_backward(R, x, w, np.empty((0, 0)), gw, False, True)
    embed.unembed_backward(R, x, w, gx, np.empty((0, 0)), True, False)
    out32 = np.empty((N, V), np.float32)
    embed.unembed_forward(x.astype(np.float32), w.astype(np.float32), out32)
    assert_f32_matches(x @ w.T, out32)


def test_sinusoid_table_matches_formula_d128():
    T, D = 64, 128
    table = embed.sinusoid_table(T, D)
    assert table.dtype == np.float64 and table.shape == (T, D)
    ref = np.empty((T, D))
    for pos in range(T):
        for i in range(D // 2):
            ang = pos / 10000 ** (2 * i / D)
            ref[pos, 2 * i] = math.sin(ang)
            ref[pos, 2 * i + 1] = math.cos(ang)
    np.testing.assert_allclose(table, ref, rtol=0, atol=1e-14)
    # the kernel adds exactly this table
    x = np.zeros((2, T, D))
    out = np.empty_like(x)
    embed.positional_encoding_forward(x, out)
    np.testing.assert_array_equal(out[0], table)
    np.testing.assert_array_equal(out[1], table)


def test_sinusoid_odd_width():
    t = embed.sinusoid_table(5, 3)
    for pos in range(5):
        np.testing.assert_allclose(t[pos], [math.sin(pos), math.cos(pos), math.sin(pos / 10000 ** (2 / 3))],
                                   rtol=0, atol=1e-15)


def test_positional_encoding():
    rng = np.random.default_rng(2)
    B, T, D = 3, 6, 8
    x = rng.standard_normal((B, T, D))
    out = np.empty_like(x)
    embed.positional_encoding_forward(x, out)
    np.testing.assert_allclose(out, x + embed.sinusoid_table(T, D)[None], rtol=0, atol=1e-15)
    # in place
    y = x.copy()
    embed.positional_encoding_forward(y, y)
    np.testing.assert_array_equal(y, out)
    g = rng.standard_normal(x.shape)
    gx = np.full_like(x, 5.0)
    embed.positional_encoding_backward(g, gx)
    np.testing.assert_array_equal(gx, g)
    out32 = np.empty((B, T, D), np.float32)
    embed.positional_encoding_forward(x.astype(np.float32), out32)
    assert_f32_matches(out, out32)


def test_positional_embedding():
    rng = np.random.default_rng(3)
    B, T, D, L = 2, 4, 3, 6
    x = rng.standard_normal((B, T, D))
    table = rng.standard_normal((L, D))
    out = np.empty_like(x)
    embed.positional_embedding_forward(x, table, out)
    np.testing.assert_allclose(out, x + table[None, :T], rtol=0, atol=1e-15)
    R = rng.standard_normal(out.shape)

    def f():
        embed.positional_embedding_forward(x, table, out)
        return float(np.sum(out * R))

    gx = np.full_like(x, 9.0)
    gt = np.full_like(table, 9.0)
    embed.positional_embedding_backward(R, gx, gt, True)
    np.testing.assert_array_equal(gt[T:], 0.0)
    np.testing.assert_allclose(gt[:T], R.sum(0), rtol=1e-15)
    check_gradients(f, {"x": x, "table": table}, {"x": gx, "table": gt})
    gt2 = np.full_like(table, 9.0)
    embed.positional_embedding_backward(R, np.empty((0, 0, 0)), gt2, False)
    np.testing.assert_array_equal(gt2, gt)
    with pytest.raises(ValueError):
        embed.positional_embedding_forward(np.zeros((1, L + 1, D)), table, np.zeros((1, L + 1, D)))
    out32 = np.empty((B, T, D), np.float32)
    embed.positional_embedding_forward(x.astype(np.float32), table.astype(np.float32), out32)
    assert_f32_matches(out, out32)
