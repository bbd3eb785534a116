"""The parallel paths of the kernels compute what the serial paths do.

Most kernels take their parallel path only above `_PAR_MIN` elements (millions, so tests never reach it through
the public kernels): these tests call each parallel helper directly on a moderate tensor instead. The conv
kernels split the batch into lanes by their workspace size, which the test chooses.
"""

from __future__ import annotations

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import activation as act
from netdsl.compiler.kernels.cpu import conv, norm, pool


def test_softmax_parallel_matches_serial():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 9, 5))
    a, b = np.empty_like(x), np.empty_like(x)
    act.softmax_forward(x, a)
    act._softmax_fwd_par(x, b)
    np.testing.assert_array_equal(a, b)
    g = rng.standard_normal(x.shape)
    ga, gb = np.empty_like(x), np.empty_like(x)
    act.softmax_backward(g, a, ga)
    act._softmax_bwd_par(g, a, gb)
    np.testing.assert_array_equal(ga, gb)


@pytest.mark.parametrize("geom", [
    # B, C, H, W, K, kh, kw, stride, pad, groups
    (5, 3, 9, 10, 4, 3, 3, 2, 1, 1),
    (7, 4, 6, 6, 6, 1, 1, 1, 0, 1),  # 1×1 stride 1: the input is the column matrix
    (4, 4, 17, 16, 6, 3, 3, 1, 1, 2),  # grouped, 272 output positions (one sample per GEMM)
    (5, 1, 12, 11, 6, 5, 5, 1, 0, 1),  # LeNet's first layer: direct
    (5, 6, 10, 9, 16, 5, 5, 1, 0, 1),  # LeNet's second: transposed columns
    (5, 3, 8, 8, 40, 3, 3, 1, 1, 1),  # 40 filters: filters-by-columns GEMM
])
def test_conv_lanes_match_one_lane(geom):
    # the batch split into lanes (threads), each with its own scratch and partial weight gradient, computes
    # what one lane does
    B, C, H, W, K, kh, kw, s, p, g = geom
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, C, H, W))
    w = rng.standard_normal((K, C // g, kh, kw))
    b = rng.standard_normal(K)
    P, Q = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
    gout = rng.standard_normal((B, K, P, Q))
    attrs = (s, s, p, p, 1, 1, g)
    geo = (C, K, kh, kw, P, Q, g)
    results = []
    for lanes in (1, 3):
        out = np.empty((B, K, P, Q))
        conv.conv2d_forward(x, w, b, *attrs, out, np.empty(conv.conv2d_workspace_size(*geo, lanes=lanes)))
        gx, gw, gb = np.full_like(x, np.nan), np.full_like(w, np.nan), np.empty(K)
        conv.conv2d_backward(gout, x, w, *attrs, gx, gw, gb, True, True,
                             np.full(conv.conv2d_backward_workspace_size(*geo, lanes=lanes), np.nan))
        results.append((out, gx, gw, gb))
    for one, many in zip(*results, strict=True):
        np.testing.assert_allclose(many, one, rtol=1e-12, atol=1e-12)


def test_norm_parallel_matches_serial():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 8, 7))
    o1, o2, s1, s2 = (np.empty_like(x) for _ in range(4))
    norm.lrn_forward(x, 5, 1e-2, 0.75, 2.0, o1, s1)
    norm._lrn_fwd_par(x, 5, 1e-2, 0.75, 2.0, o2, s2)
    np.testing.assert_array_equal(o1, o2)
    g = rng.standard_normal(x.shape)
    g1, g2 = np.empty_like(x), np.empty_like(x)
    norm.lrn_backward(g, x, o1, s1, 5, 1e-2, 0.75, g1)
    norm._lrn_bwd_par(g, x, o1, s1, 5, 1e-2, 0.75, g2)
    np.testing.assert_array_equal(g1, g2)
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    outs = []
    for f in (norm.batchnorm_forward_train, norm._bn_train_par):
        rm, rv, out, m, s = np.zeros(8), np.ones(8), np.empty_like(x), np.empty(8), np.empty(8)
        f(x, gamma, beta, 1e-5, 0.1, rm, rv, True, out, m, s)
        outs.append((out, rm, rv, m, s))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    out, _, _, m, s = outs[0]
    grads = []
    for f in (norm.batchnorm_backward, norm._bn_bwd_par):
        gx, gg, gb = np.empty_like(x), np.empty(8), np.empty(8)
        f(g, x, gamma, m, s, gx, gg, gb, True)
        grads.append((gx, gg, gb))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    x2 = rng.standard_normal((12, 16))
    lo = []
    for f in (norm.layernorm_forward, norm._ln_fwd_par):
        out, m, s = np.empty_like(x2), np.empty(12), np.empty(12)
        f(x2, gamma[:1].repeat(16), beta[:1].repeat(16), 1e-5, out, m, s)
        lo.append((out, m, s))
    for a, b in zip(*lo, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pool_parallel_matches_serial():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8))
    shape = (2, 3, 5, 4)
    o1, o2 = np.empty(shape), np.empty(shape)
    a1, a2 = np.empty(shape, np.int64), np.empty(shape, np.int64)
    pool.maxpool2d_forward(x, 3, 3, 2, 2, 1, 1, o1, a1)
    pool._maxpool_par(x, 3, 3, 2, 2, 1, 1, o2, a2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(a1, a2)
    # avgpool splits its planes (or, for 2x2, its rows) over the lanes above _PAR_MIN elements: the same
    # result as each plane pooled on its own (below it, one lane)
    big = rng.standard_normal((2, 3, (pool._PAR_MIN // 48) + 2, 8))  # H*W*6 >= _PAR_MIN; H even and odd rows
    for k, s, pad in ((3, 2, 1), (2, 2, 0)):
        P = (big.shape[2] + 2 * pad - k) // s + 1
        Q = (big.shape[3] + 2 * pad - k) // s + 1
        whole = np.empty((2, 3, P, Q))
        pool.avgpool2d_forward(big, k, k, s, s, pad, pad, whole)
        for b in range(2):
            for c in range(3):
                one = np.empty((1, 1, P, Q))
                pool.avgpool2d_forward(np.ascontiguousarray(big[b:b + 1, c:c + 1]), k, k, s, s, pad, pad, one)
                np.testing.assert_array_equal(whole[b, c], one[0, 0])


# (B, T, H, lanes): 3 lanes of 7 units over one chunk of steps; 2 lanes of 16 units over chunks of 2 steps
# (the backward's gate gradients of the next step are read by every lane while each writes its own rows)
@pytest.mark.parametrize("B, T, H, lanes", [(7, 5, 7, 3), (2100, 3, 16, 2)])
def test_lstm_step_lanes_match_one_lane(B, T, H, lanes):
    # the lanes split each step's units (their rows of the GEMM, then their gate arithmetic): whatever the
    # lane count, the same gates, states and gradients (the packed weights' row order depends on it), with and
    # without the table path's input terms and token columns
    from netdsl.compiler.kernels.cpu import recurrent_lstm as lstm

    rng = np.random.default_rng(4)
    D, V = 2, 3
    assert (lstm.gate_chunk(T, B, H) < T) == (B > 1000)
    HD = H + D
    w = [rng.standard_normal((H, HD)) * 0.5 for _ in range(4)]
    bias_in = [rng.standard_normal(H) for _ in range(4)]
    Z0 = rng.standard_normal((T + 1, HD + 1, B))
    Z0[:, HD] = 1.0  # the row of ones the packed biases multiply
    c0T = rng.standard_normal((H, B))
    gyT = rng.standard_normal((T, H, B))
    Zc = rng.standard_normal((T * B, HD + 1))
    ids = rng.integers(0, V, (T, B))
    P0 = rng.standard_normal((4 * H, V))  # by gate and unit; each lane count packs its rows in its own order

    def by_gate(a, nl):
        # rows in lane order (row 4*j0 + k*n + jj is gate k of unit j0 + jj) -> by gate
        out = np.empty_like(a)
        for lane in range(nl):
            j0, j1 = lane * H // nl, (lane + 1) * H // nl
            for k in range(4):
                out[k * H + j0:k * H + j1] = a[4 * j0 + k * (j1 - j0):4 * j0 + (k + 1) * (j1 - j0)]
        return out

    def to_lanes(a, nl):
        out = np.empty_like(a)
        out[by_gate(np.arange(4 * H), nl)] = a
        return out

    for table in (False, True):
        results = []
        for nl in (1, lanes):
            W = np.empty((4 * H, HD + 1))
            lstm._pack_lanes(w[0], bias_in[0], w[1], bias_in[1], w[2], bias_in[2], w[3], bias_in[3], H, nl, W)
            Z, G, C = Z0.copy(), np.empty((T, 4 * H, B)), np.empty((T, H, B))
            P = to_lanes(P0, nl) if table else np.empty((0, 0))
            idsT = ids if table else np.empty((0, 0), np.int64)
            lstm._lstm_fwd_steps(nl, W, Z, G, C, c0T, np.empty((4 * H, B)), P, idsT, False)
            WhT, Wx = np.empty((H, 4 * H)), np.empty((4 * H, D))
            for task in range(4 * nl):  # the backward's packing, as its set-up region runs it
                lstm._pack_task(task, w[0], w[1], w[2], w[3], H, nl, WhT, Wx)
            dG = np.empty((4 * H, lstm.gate_chunk(T, B, H) * B + lstm.GATE_PAD))
            dh, dc = np.full((H, B), 0.2), np.full((H, B), -0.1)
            gW, gx = np.empty((4 * H, HD + 1)), np.empty((T * B, D))
            S = np.zeros((4 * H, V)) if table else np.empty((0, 0))
            lstm._lstm_bwd_steps(nl, True, WhT, G, C, c0T, gyT, dG, np.empty((4 * H, B)), dh, dc, S, idsT, False,
                                 Zc, gW, Wx, gx)
            results.append((Z, G, C, by_gate(gW, nl), gx, dh, dc,
                            by_gate(S, nl) if table else S))
        for a, b in zip(*results, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-14)
        assert np.abs(results[0][3]).min() > 0  # every weight gradient was written


def test_attention_lanes_match_one_lane():
    from netdsl.compiler.kernels.cpu import attention as att

    rng = np.random.default_rng(5)
    B, T, D, heads = 5, 6, 8, 2
    dk = D // heads
    Q, K, V = (rng.standard_normal((B, T, D)) for _ in range(3))
    gctx = rng.standard_normal((B, T, D))
    results = []
    for nl in (1, 3):
        P, C = np.empty((B, heads, T, T)), np.empty((B, T, D))
        per = 2 * T * dk + 2 * T * dk
        if nl == 1:
            att._fwd_heads(0, B, heads, True, Q, K, V, P, C, np.empty(per))
        else:
            att._fwd_lanes(nl, heads, True, Q, K, V, P, C, np.empty(nl * per), per)
        gQ, gK, gV = gctx.copy(), np.empty((B, T, D)), np.empty((B, T, D))
        per = 3 * T * dk + 4 * T * dk + T * T
        if nl == 1:
            att._bwd_heads(0, B, heads, 0.5, Q, K, V, P, gQ, gK, gV, np.empty(per))
        else:
            att._bwd_lanes(nl, heads, 0.5, Q, K, V, P, gQ, gK, gV, np.empty(nl * per), per)
        results.append((P, C, gQ, gK, gV))
    for one, many in zip(*results, strict=True):
        np.testing.assert_allclose(many, one, rtol=1e-13, atol=1e-15)


def test_gelu_lanes_match_serial():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(1001)
    g = rng.standard_normal(1001)
    a, b = np.empty_like(x), np.empty_like(x)
    act._gelu_fwd_range(x, a, 0, x.size)
    act._gelu_fwd_par(x, b, 3)
    np.testing.assert_array_equal(a, b)
    act._gelu_bwd_range(g, x, a, 0, x.size)
    act._gelu_bwd_par(g, x, b, 3)
    np.testing.assert_array_equal(a, b)


SNIPPET = """
import numpy as np
from netdsl.compiler.kernels.cpu import conv, dense
x = np.random.rand(200, 160); w = np.random.rand(640, 160); o = np.empty((200, 640))
dense.dense_forward(x, w, np.empty(0), o)
xi = np.random.rand(4, 3, 9, 9); wi = np.random.rand(5, 3, 3, 3); oi = np.empty((4, 5, 7, 7))
conv.conv2d_forward(xi, wi, np.empty(0), 1, 1, 0, 0, 1, 1, 1, oi,
                    np.empty(conv.conv2d_workspace_size(3, 5, 3, 3, 7, 7, lanes=2)))
print(abs(o - x @ w.T).max() < 1e-9)
"""


def test_cached_kernels_reach_their_parallel_helpers_in_a_fresh_process():
    # a kernel loaded from Numba's cache calls its prange helpers without the dispatcher that starts the thread
    # pool: the package starts it on import, or the second process (warm cache) dies of SIGSEGV
    import subprocess
    import sys

    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=600, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == "True"


def test_row_split_gemms_match_numpy():
    # pdot_tn's partial sums over the reduction at 3 lanes whatever this machine has; pdot's row split
    from netdsl.compiler.kernels.cpu import _common as common

    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((37, 11)), rng.standard_normal((37, 13))
    out = np.full((11, 13), np.nan)
    parts = np.full((2, 11, 13), np.nan)
    common._tn_partials(a, b, out, parts, 3)
    np.testing.assert_allclose(out + parts[0] + parts[1], a.T @ b, rtol=1e-12, atol=1e-12)
    # pdot splits rows over this machine's lanes once each lane gets _SPLIT_MACS multiply-adds
    wide, w = rng.standard_normal((1001, 300)), rng.standard_normal((200, 300))
    assert 1001 * 300 * 200 >= 3 * common._SPLIT_MACS
    o2 = np.full((1001, 200), np.nan)
    common.pdot(wide, w.T, o2)
    np.testing.assert_allclose(o2, wide @ w.T, rtol=1e-10, atol=1e-10)
    big_a, big_b = rng.standard_normal((600, 300)), rng.standard_normal((600, 200))  # large enough to split
    o3 = np.empty((300, 200))
    common.pdot_tn(big_a, big_b, o3)
    np.testing.assert_allclose(o3, big_a.T @ big_b, rtol=1e-10, atol=1e-10)
