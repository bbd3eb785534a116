"""Winograd F(4×4, 3×3) convolution: the path conv.py takes for 3×3, stride-1, undilated, ungrouped layers.

A 3×3 filter slid over a 6×6 input tile gives a 4×4 output tile. Lavin & Gray ("Fast Algorithms for
Convolutional Neural Networks", 2016) write it as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A: 36 multiplies per tile and
channel pair where the direct form needs 144, so the GEMMs that carry the work shrink fourfold. Per 6×6
position a (36 of them) the channel sums are one GEMM: M[a] (K, tiles) = U[a] (K, C) @ V[a] (C, tiles), with
U = G g Gᵀ the transformed filters and V = Bᵀ d B the transformed input tiles. The backward pass is the
exact adjoint of that forward (so a gradient check of it holds to rounding): with Z = A dY Aᵀ the transformed
output gradient, the input gradient is B (U[a]ᵀ @ Z[a]) Bᵀ scattered back onto the overlapping input tiles,
and the filter gradient is Gᵀ (Σ Z[a] @ V[a]ᵀ) G.

Rounding: the transforms' coefficients (up to 8 and 1/24) make F(4×4) less exact than the direct sum: in
float32 the largest error relative to the output's scale is ~6e-6 against im2col's ~5e-7 (64 channels,
measured in tests/kernels/test_winograd.py), the price cuDNN's and oneDNN's F(4×4) pay too and well inside
what float32 training tolerates; in float64 it agrees with the definition to ~1e-13. The filter transforms
run in float64 whatever the data's dtype. The transforms run over vectors of tiles (the tile axis is the contiguous one), so they vectorise.

Work is split as conv.py splits it: the batch into lanes (one thread each), every lane through its samples in
chunks whose transformed tiles fit its part of the workspace; the filter gradient of each lane is a partial
sum of its own, added up after the lanes in lane order. Workspace layout (``ws``, the data's dtype): the
transformed filters U (36·K·C), then one area per lane; the size helpers are in conv.py, which owns the
choice between this path and im2col.
"""

import numpy as np
from numba import njit, prange

NA = 36  # positions of a 6×6 tile
# elements of a lane's area its chunk of transformed tiles may fill (16 MB of float32): large enough for wide
# GEMMs (LeNet-sized chunks would starve BLAS), small enough to keep the workspace near im2col's
BUDGET = 1 << 22
FB = 512  # filters per block of the filter transforms: their intermediate rows (21 × FB) stay in cache


@njit(cache=True, error_model="numpy")
def applies(C, K, kh, kw, sh, sw, dh, dw, groups, P, Q):
    """Whether a convolution's geometry takes this path (the batch decides again at run time): 3×3, stride 1,
    undilated, ungrouped, 16 channels in and out at least (fewer starve the GEMMs) and an output of 4×4 at
    least (one tile a sample: ResNet's last stage, where Winograd halves im2col's time at batch 32)."""
    return (kh == 3 and kw == 3 and sh == 1 and sw == 1 and dh == 1 and dw == 1 and groups == 1
            and C >= 16 and K >= 16 and P >= 4 and Q >= 4)


@njit(cache=True, error_model="numpy")
def _per_image(C, K, P, Q):
    # a sample's share of a chunk: its transformed tiles (V and M or Z), its input (backward: then its input
    # gradient) channel-last and its output (gradient) channel-last; (P+2)(Q+2) bounds H·W
    tpi = ((P + 3) // 4) * ((Q + 3) // 4)
    return NA * tpi * (C + K) + (P + 2) * (Q + 2) * C + P * Q * K


@njit(cache=True, error_model="numpy")
def _fixed(C, K):
    # a lane's scratch: T, R (36 rows each), S (24), a zero row and a sink row, of max(C, K); then the filter
    # transforms' blocks (21 × FB, the area's last elements)
    return 100 * max(C, K) + 21 * FB


@njit(cache=True, error_model="numpy")
def forward_lane(C, K, P, Q):
    """Elements of one lane's forward area: a chunk of samples (one at least) and the per-tile scratch."""
    return max(_per_image(C, K, P, Q), BUDGET) + _fixed(C, K)


@njit(cache=True, error_model="numpy")
def backward_lane(C, K, P, Q):
    """One lane's backward area: a chunk's filter gradient in the transformed domain (36·K·C), a chunk of
    samples and the per-tile scratch, and the lane's partial filter gradient (9·K·C)."""
    return 45 * K * C + max(_per_image(C, K, P, Q), BUDGET) + _fixed(C, K)


# ------------------------------------------------------------------- transforms over vectors of tiles
# Each takes the rows of one 6×6 (or 4×4) tile position as 1-D arrays and writes the transformed rows; the
# constants come in the data's dtype (a float64 constant would widen float32 arithmetic).

@njit(cache=True, error_model="numpy")
def _bt(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5, k2, k4, k5):
    # rows of Bᵀ: o_u = Σ_i Bᵀ[u, i] d_i
    for t in range(o0.shape[0]):
        a0 = d0[t]
        a1 = d1[t]
        a2 = d2[t]
        a3 = d3[t]
        a4 = d4[t]
        a5 = d5[t]
        o0[t] = k4 * a0 - k5 * a2 + a4
        o1[t] = a3 + a4 - k4 * (a1 + a2)
        o2[t] = k4 * (a1 - a2) - a3 + a4
        o3[t] = k2 * (a3 - a1) + a4 - a2
        o4[t] = k2 * (a1 - a3) + a4 - a2
        o5[t] = k4 * a1 - k5 * a3 + a5


@njit(cache=True, error_model="numpy")
def _b(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3, o4, o5, k2, k4, k5):
    # columns of Bᵀ (the adjoint of _bt): o_i = Σ_u Bᵀ[u, i] v_u
    for t in range(o0.shape[0]):
        a0 = v0[t]
        a1 = v1[t]
        a2 = v2[t]
        a3 = v3[t]
        a4 = v4[t]
        a5 = v5[t]
        o0[t] = k4 * a0
        o1[t] = k4 * (a2 - a1 + a5) + k2 * (a4 - a3)
        o2[t] = -k5 * a0 - k4 * (a1 + a2) - a3 - a4
        o3[t] = a1 - a2 + k2 * (a3 - a4) - k5 * a5
        o4[t] = a0 + a1 + a2 + a3 + a4
        o5[t] = a5


@njit(cache=True, error_model="numpy")
def _at(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3, k2, k4, k8):
    # rows of Aᵀ: 6 -> 4
    for t in range(o0.shape[0]):
        a1 = m1[t]
        a2 = m2[t]
        a3 = m3[t]
        a4 = m4[t]
        s12 = a1 + a2
        d12 = a1 - a2
        s34 = a3 + a4
        d34 = a3 - a4
        o0[t] = m0[t] + s12 + s34
        o1[t] = d12 + k2 * d34
        o2[t] = s12 + k4 * s34
        o3[t] = d12 + k8 * d34 + m5[t]


@njit(cache=True, error_model="numpy")
def _a(y0, y1, y2, y3, o0, o1, o2, o3, o4, o5, k2, k4, k8):
    # columns of Aᵀ (the adjoint of _at): 4 -> 6
    for t in range(o0.shape[0]):
        a0 = y0[t]
        a1 = y1[t]
        a2 = y2[t]
        a3 = y3[t]
        e = a0 + a2
        f = a1 + a3
        g = a0 + k4 * a2
        h = k2 * a1 + k8 * a3
        o0[t] = a0
        o1[t] = e + f
        o2[t] = e - f
        o3[t] = g + h
        o4[t] = g - h
        o5[t] = a3


@njit(cache=True, error_model="numpy")
def _consts(dtype_of):
    c = np.empty(4, dtype_of.dtype)
    c[0] = 2.0
    c[1] = 4.0
    c[2] = 5.0
    c[3] = 8.0
    return c[0], c[1], c[2], c[3]


# ------------------------------------------------------------------- filters: U = G g Gᵀ and its adjoint

_SIXTH, _TWELFTH, _TWENTYFOURTH = 1.0 / 6.0, 1.0 / 12.0, 1.0 / 24.0

@njit(cache=True, error_model="numpy")
def _g_rows(g0, g1, g2, o0, o1, o2, o3, o4, o5):
    # rows of G: three rows -> six, in float64 arithmetic (G's 1/6 and 1/24)
    for t in range(o0.shape[0]):
        a = np.float64(g0[t])
        b = np.float64(g1[t])
        c = np.float64(g2[t])
        s = a + c
        o0[t] = a * 0.25
        o1[t] = -(s + b) * _SIXTH
        o2[t] = (b - s) * _SIXTH
        o3[t] = a * _TWENTYFOURTH + b * _TWELFTH + c * _SIXTH
        o4[t] = a * _TWENTYFOURTH - b * _TWELFTH + c * _SIXTH
        o5[t] = c


@njit(cache=True, error_model="numpy")
def _filter_block(wf, S, U):
    # wf (n, 9) filters -> U (36, n) = G g Gᵀ; S (18, >= n) scratch: down each column of the 3×3 filters,
    # then along each row
    n = wf.shape[0]
    for j in range(3):
        _g_rows(wf[:, j], wf[:, 3 + j], wf[:, 6 + j],
                S[j, :n], S[3 + j, :n], S[6 + j, :n], S[9 + j, :n], S[12 + j, :n], S[15 + j, :n])
    for u in range(6):
        r = u * 6
        _g_rows(S[u * 3, :n], S[u * 3 + 1, :n], S[u * 3 + 2, :n], U[r], U[r + 1], U[r + 2], U[r + 3], U[r + 4],
                U[r + 5])


@njit(cache=True, error_model="numpy")
def _filter_range(wf, U, t0, t1, S):
    for b0 in range(t0, t1, FB):
        b1 = min(t1, b0 + FB)
        _filter_block(wf[b0:b1], S, U[:, b0:b1])


@njit(cache=True, error_model="numpy", parallel=True)
def _filter_lanes(wf, U, nl, rest, lane, tail):
    KC = wf.shape[0]
    for i in prange(nl):
        end = (i + 1) * lane - tail
        S = rest[end - 21 * FB:end].reshape(21, FB)
        _filter_range(wf, U, i * KC // nl, (i + 1) * KC // nl, S)


@njit(cache=True, error_model="numpy")
def _filters(w, U, nl, rest, lane, tail):
    # w (K, C, 3, 3) -> U (36, K*C) = G g Gᵀ per filter, split over the nl lanes; each lane's scratch is the
    # last 21·FB elements of its area before `tail` (512×512 filters: 38 MB of U)
    KC = w.shape[0] * w.shape[1]
    wf = w.reshape(KC, 9)
    if nl == 1:
        _filter_range(wf, U, 0, KC, rest[lane - tail - 21 * FB:lane - tail].reshape(21, FB))
    else:
        _filter_lanes(wf, U, nl, rest, lane, tail)


@njit(cache=True, error_model="numpy")
def _gt3_rows(u0, u1, u2, u3, u4, u5, o0, o1, o2):
    # columns of G (the adjoint of the transform above): six rows -> three
    for t in range(o0.shape[0]):
        a0 = np.float64(u0[t])
        a1 = np.float64(u1[t])
        a2 = np.float64(u2[t])
        a3 = np.float64(u3[t])
        a4 = np.float64(u4[t])
        a5 = np.float64(u5[t])
        s34 = a3 + a4
        s12 = a1 + a2
        o0[t] = a0 * 0.25 - s12 * _SIXTH + s34 * _TWENTYFOURTH
        o1[t] = (a2 - a1) * _SIXTH + (a3 - a4) * _TWELFTH
        o2[t] = (s34 - s12) * _SIXTH + a5


@njit(cache=True, error_model="numpy")
def _filters_back(dU, gwf, add, S):
    # the adjoint of _filters: dU (36, K*C) -> gwf (K*C, 9) = Gᵀ du G (+= when add); S (21, FB) scratch:
    # rows i*6+v from the first pass, rows 18..20 one row i of the second
    KC = gwf.shape[0]
    for b0 in range(0, KC, FB):
        n = min(KC, b0 + FB) - b0
        d = dU[:, b0:b0 + n]
        for v in range(6):
            _gt3_rows(d[v], d[6 + v], d[12 + v], d[18 + v], d[24 + v], d[30 + v],
                      S[v, :n], S[6 + v, :n], S[12 + v, :n])
        g = gwf[b0:b0 + n]
        for i in range(3):
            r = i * 6
            o = S[18:21, :n]
            _gt3_rows(S[r, :n], S[r + 1, :n], S[r + 2, :n], S[r + 3, :n], S[r + 4, :n], S[r + 5, :n], o[0], o[1],
                      o[2])
            for t in range(n):
                gt = g[t]
                if add:
                    gt[i * 3] += o[0, t]
                    gt[i * 3 + 1] += o[1, t]
                    gt[i * 3 + 2] += o[2, t]
                else:
                    gt[i * 3] = o[0, t]
                    gt[i * 3 + 1] = o[1, t]
                    gt[i * 3 + 2] = o[2, t]


# ------------------------------------------------------------------- channel-last copies of a chunk
# The tile transforms run over vectors of channels: a chunk's input is copied channel-last once, and its
# output is written channel-last and copied back (the copies are single passes; gathering 6×6 tiles from
# channel-first images was slower than the GEMMs it fed).

@njit(cache=True, error_model="numpy")
def _to_last(x, n0, m, xt):
    # x[n0 .. n0+m-1] (m, C, H, W) -> xt (m, H*W, C): 16×16 blocks, so reads and writes both stay in lines
    C = x.shape[1]
    HW = x.shape[2] * x.shape[3]
    for j in range(m):
        src = x[n0 + j].reshape(C, HW)
        dst = xt[j]
        for c0 in range(0, C, 16):
            nc = min(16, C - c0)
            for s0 in range(0, HW, 16):
                ns = min(16, HW - s0)
                for s in range(ns):
                    d = dst[s0 + s]
                    for c in range(nc):
                        d[c0 + c] = src[c0 + c, s0 + s]


@njit(cache=True, error_model="numpy")
def _to_first(ot, bias, n0, m, out):
    # ot (m, P*Q, K) -> out[n0 .. n0+m-1] (m, K, P, Q), + bias (K,) or (0,)
    K = out.shape[1]
    PQ = out.shape[2] * out.shape[3]
    k2 = _consts(ot)[0]
    zero = k2 - k2  # in the data's dtype (not from the data: a NaN there must stay where it is)
    for j in range(m):
        dst = out[n0 + j].reshape(K, PQ)
        src = ot[j]
        for s0 in range(0, PQ, 32):
            n = min(32, PQ - s0)
            for k in range(K):
                row = dst[k, s0:s0 + n]
                bk = bias[k] if bias.shape[0] > 0 else zero
                for s in range(n):
                    row[s] = src[s0 + s, k] + bk


@njit(cache=True, error_model="numpy")
def _px(xj, h, w, H, W, zero):
    # position (h, w) of a channel-last image (H*W, C), or the zero row outside it
    if h < 0 or h >= H or w < 0 or w >= W:
        return zero
    return xj[h * W + w]


# ------------------------------------------------------------------- the tile transforms of a chunk

@njit(cache=True, error_model="numpy")
def _in_tiles(xt, H, W, ph, pw, th, tw, V, T, zero, k2, k4, k5):
    # xt (m, H*W, C) -> V (36, m*th*tw, C) = Bᵀ d B per 6×6 input tile; T (36, C) scratch
    tpi = th * tw
    for j in range(xt.shape[0]):
        xj = xt[j]
        for ty in range(th):
            h0 = 4 * ty - ph
            for tx in range(tw):
                t = j * tpi + ty * tw + tx
                w0 = 4 * tx - pw
                for c in range(6):
                    w_ = w0 + c
                    _bt(_px(xj, h0, w_, H, W, zero), _px(xj, h0 + 1, w_, H, W, zero),
                        _px(xj, h0 + 2, w_, H, W, zero), _px(xj, h0 + 3, w_, H, W, zero),
                        _px(xj, h0 + 4, w_, H, W, zero), _px(xj, h0 + 5, w_, H, W, zero),
                        T[c], T[6 + c], T[12 + c], T[18 + c], T[24 + c], T[30 + c], k2, k4, k5)
                for u in range(6):
                    r = u * 6
                    _bt(T[r], T[r + 1], T[r + 2], T[r + 3], T[r + 4], T[r + 5],
                        V[r, t], V[r + 1, t], V[r + 2, t], V[r + 3, t], V[r + 4, t], V[r + 5, t], k2, k4, k5)


@njit(cache=True, error_model="numpy")
def _out_tiles(M, P, Q, th, tw, ot, S, sink, k2, k4, k8):
    # M (36, m*th*tw, K) -> ot (m, P*Q, K) = Aᵀ m A per 4×4 output tile (edge-tile parts past P or Q go to the
    # sink row); S (24, K) scratch
    tpi = th * tw
    for j in range(ot.shape[0]):
        oj = ot[j]
        for ty in range(th):
            for tx in range(tw):
                t = j * tpi + ty * tw + tx
                for v in range(6):
                    _at(M[v, t], M[6 + v, t], M[12 + v, t], M[18 + v, t], M[24 + v, t], M[30 + v, t],
                        S[v], S[6 + v], S[12 + v], S[18 + v], k2, k4, k8)
                for p in range(4):
                    r = 4 * ty + p
                    q0 = 4 * tx
                    _at(S[p * 6], S[p * 6 + 1], S[p * 6 + 2], S[p * 6 + 3], S[p * 6 + 4], S[p * 6 + 5],
                        _px(oj, r, q0, P, Q, sink), _px(oj, r, q0 + 1, P, Q, sink),
                        _px(oj, r, q0 + 2, P, Q, sink), _px(oj, r, q0 + 3, P, Q, sink), k2, k4, k8)


@njit(cache=True, error_model="numpy")
def _grad_tiles(got, P, Q, th, tw, Z, S, zero, k2, k4, k8):
    # the adjoint of _out_tiles: got (m, P*Q, K) -> Z (36, m*th*tw, K) = A y Aᵀ; S (24, K) scratch
    tpi = th * tw
    for j in range(got.shape[0]):
        gj = got[j]
        for ty in range(th):
            r = 4 * ty
            for tx in range(tw):
                t = j * tpi + ty * tw + tx
                for q in range(4):
                    c = 4 * tx + q
                    _a(_px(gj, r, c, P, Q, zero), _px(gj, r + 1, c, P, Q, zero), _px(gj, r + 2, c, P, Q, zero),
                       _px(gj, r + 3, c, P, Q, zero), S[q], S[4 + q], S[8 + q], S[12 + q], S[16 + q], S[20 + q],
                       k2, k4, k8)
                for u in range(6):
                    r4 = u * 4
                    _a(S[r4], S[r4 + 1], S[r4 + 2], S[r4 + 3], Z[u * 6, t], Z[u * 6 + 1, t], Z[u * 6 + 2, t],
                       Z[u * 6 + 3, t], Z[u * 6 + 4, t], Z[u * 6 + 5, t], k2, k4, k8)


@njit(cache=True, error_model="numpy")
def _back_in_tiles(dV, H, W, ph, pw, th, tw, gxt, T, R, k2, k4, k5):
    # the adjoint of _in_tiles: gxt (m, H*W, C) += B dv Bᵀ of each tile at its place (tiles overlap by two
    # rows and columns); T, R (36, C) scratch
    tpi = th * tw
    C = gxt.shape[2]
    for j in range(gxt.shape[0]):
        gj = gxt[j]
        for ty in range(th):
            h0 = 4 * ty - ph
            for tx in range(tw):
                t = j * tpi + ty * tw + tx
                w0 = 4 * tx - pw
                for u in range(6):
                    r = u * 6
                    _b(dV[r, t], dV[r + 1, t], dV[r + 2, t], dV[r + 3, t], dV[r + 4, t], dV[r + 5, t],
                       T[r], T[r + 1], T[r + 2], T[r + 3], T[r + 4], T[r + 5], k2, k4, k5)
                for c in range(6):
                    _b(T[c], T[6 + c], T[12 + c], T[18 + c], T[24 + c], T[30 + c],
                       R[c], R[6 + c], R[12 + c], R[18 + c], R[24 + c], R[30 + c], k2, k4, k5)
                for i in range(6):
                    h = h0 + i
                    if h < 0 or h >= H:
                        continue
                    for c in range(6):
                        w_ = w0 + c
                        if w_ < 0 or w_ >= W:
                            continue
                        dst = gj[h * W + w_]
                        src = R[i * 6 + c]
                        for s in range(C):
                            dst[s] += src[s]


# ------------------------------------------------------------------- the passes of one lane

@njit(cache=True, error_model="numpy")
def _chunk_area(C, K, room):
    # how much of a lane's room one chunk fills: about a megaword, where the tiles stay near the cache between
    # transform and GEMM, but more for large filter banks, whose transforms are paid per chunk (measured
    # on one core, batch 16: 64 channels at 32×32 fastest at 2-4 samples a chunk, 512 at 4×4 at all 16)
    return min(room, max(1 << 20, 72 * K * C))


@njit(cache=True, error_model="numpy")
def _chunk_images(lo, hi, per_img, area):
    # images per chunk: as many as the area holds, spread evenly over the chunks the lane needs
    m = hi - lo
    fit = max(1, min(m, area // per_img))
    chunks = -(-m // fit) if m > 0 else 1
    return max(1, -(-m // chunks))


@njit(cache=True, error_model="numpy")
def _forward_samples(x, U, b, ph, pw, lo, hi, out, area):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, P, Q = out.shape[1], out.shape[2], out.shape[3]
    th, tw = (P + 3) // 4, (Q + 3) // 4
    tpi = th * tw
    k2, k4, k5, k8 = _consts(x)
    fixed = area[area.size - _fixed(C, K):]
    T = fixed[0:36 * C].reshape(36, C)
    S = fixed[72 * max(C, K):72 * max(C, K) + 24 * K].reshape(24, K)
    zero = fixed[96 * max(C, K):96 * max(C, K) + C]
    sink = fixed[98 * max(C, K):98 * max(C, K) + K]
    zero[:] = 0.0
    chunk = area[:area.size - _fixed(C, K)]
    nb = _chunk_images(lo, hi, _per_image(C, K, P, Q), _chunk_area(C, K, chunk.size))
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        nt = m * tpi
        V, o = _carve3(chunk, 0, NA, nt, C)
        M, o = _carve3(chunk, o, NA, nt, K)
        xt, o = _carve3(chunk, o, m, H * W, C)
        ot, o = _carve3(chunk, o, m, P * Q, K)
        _to_last(x, n0, m, xt)
        _in_tiles(xt, H, W, ph, pw, th, tw, V, T, zero[:C], k2, k4, k5)
        for a in range(NA):
            np.dot(V[a], U[a].T, M[a])
        _out_tiles(M, P, Q, th, tw, ot, S, sink, k2, k4, k8)
        _to_first(ot, b, n0, m, out)


@njit(cache=True, error_model="numpy")
def _carve3(ws, o, a, b, c):
    return ws[o:o + a * b * c].reshape(a, b, c), o + a * b * c


@njit(cache=True, error_model="numpy", parallel=True)
def _forward_lanes(x, U, b, ph, pw, nl, lane, out, lanes_ws):
    B = x.shape[0]
    for t in prange(nl):
        _forward_samples(x, U, b, ph, pw, t * B // nl, (t + 1) * B // nl, out, lanes_ws[t * lane:(t + 1) * lane])


@njit(cache=True, error_model="numpy")
def winograd_forward(x, w, b, ph, pw, nl, out, ws):
    # x (B, C, H, W), w (K, C, 3, 3), b (K,) or (0,) -> out (B, K, P, Q), stride 1; nl lanes, ws as conv.py
    # sizes it: U (36·K·C), then nl lane areas of equal size
    K, C = w.shape[0], w.shape[1]
    KC = K * C
    U = ws[0:NA * KC].reshape(NA, K, C)
    rest = ws[NA * KC:]
    lane = rest.size // nl
    _filters(w, U.reshape(NA, KC), nl, rest, lane, 0)
    if nl == 1:
        _forward_samples(x, U, b, ph, pw, 0, x.shape[0], out, rest)
    else:
        _forward_lanes(x, U, b, ph, pw, nl, lane, out, rest)


@njit(cache=True, error_model="numpy")
def _grad_to_first(gxt, n0, m, gx):
    # gxt (m, H*W, C) -> gx[n0 .. n0+m-1] (m, C, H, W)
    C = gx.shape[1]
    HW = gx.shape[2] * gx.shape[3]
    for j in range(m):
        dst = gx[n0 + j].reshape(C, HW)
        src = gxt[j]
        for s0 in range(0, HW, 32):
            n = min(32, HW - s0)
            for c in range(C):
                row = dst[c, s0:s0 + n]
                for s in range(n):
                    row[s] = src[s0 + s, c]


@njit(cache=True, error_model="numpy")
def _backward_samples(gout, x, U, ph, pw, lo, hi, gx, gwp, need_gx, need_gw, area):
    # samples lo .. hi-1: gx[lo:hi] overwritten, their filter gradient into gwp (K*C, 9), overwritten.
    # area: a chunk's filter gradient dU (36, K, C), the chunk, the per-tile scratch
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, P, Q = gout.shape[1], gout.shape[2], gout.shape[3]
    KC = K * C
    th, tw = (P + 3) // 4, (Q + 3) // 4
    tpi = th * tw
    k2, k4, k5, k8 = _consts(x)
    mx = max(C, K)
    dU = area[0:NA * KC].reshape(NA, KC)
    fixed = area[area.size - _fixed(C, K):]
    T = fixed[0:36 * C].reshape(36, C)
    R = fixed[36 * mx:36 * mx + 36 * C].reshape(36, C)
    S = fixed[72 * mx:72 * mx + 24 * K].reshape(24, K)
    zero = fixed[96 * mx:96 * mx + mx]  # one row of zeros serves C and K
    zero[:] = 0.0
    chunk = area[NA * KC:area.size - _fixed(C, K)]
    nb = _chunk_images(lo, hi, _per_image(C, K, P, Q), _chunk_area(C, K, chunk.size))
    if need_gw and hi <= lo:
        gwp[:] = 0.0
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        nt = m * tpi
        V, o = _carve3(chunk, 0, NA, nt, C)
        Z, o = _carve3(chunk, o, NA, nt, K)
        xt, o = _carve3(chunk, o, m, H * W, C)
        got, o = _carve3(chunk, o, m, P * Q, K)
        _to_last(gout, n0, m, got)
        _grad_tiles(got, P, Q, th, tw, Z, S, zero[:K], k2, k4, k8)
        if need_gw:
            _to_last(x, n0, m, xt)
            _in_tiles(xt, H, W, ph, pw, th, tw, V, T, zero[:C], k2, k4, k5)
            for a in range(NA):
                np.dot(Z[a].T, V[a], dU[a].reshape(K, C))
            _filters_back(dU, gwp, n0 != lo, fixed[fixed.size - 21 * FB:].reshape(21, FB))
        if need_gx:
            for a in range(NA):
                np.dot(Z[a], U[a], V[a])  # V's slot now holds the gradient of the input tiles
            gxt = xt  # the input's channel-last copy is not needed any more
            gxt[:] = 0.0
            _back_in_tiles(V, H, W, ph, pw, th, tw, gxt, T, R, k2, k4, k5)
            _grad_to_first(gxt, n0, m, gx)


@njit(cache=True, error_model="numpy", parallel=True)
def _backward_lanes(gout, x, U, ph, pw, nl, lane, gx, need_gx, need_gw, lanes_ws):
    B = x.shape[0]
    KC = U.shape[1] * U.shape[2]
    for t in prange(nl):
        part = lanes_ws[t * lane:(t + 1) * lane]
        _backward_samples(gout, x, U, ph, pw, t * B // nl, (t + 1) * B // nl, gx,
                          part[part.size - 9 * KC:].reshape(KC, 9), need_gx, need_gw, part[:part.size - 9 * KC])


@njit(cache=True, error_model="numpy")
def winograd_backward(gout, x, w, ph, pw, nl, gx, gw, need_gx, need_gw, ws):
    # gout (B, K, P, Q), x (B, C, H, W), w (K, C, 3, 3) -> gx like x, gw like w (the bias gradient is conv.py's);
    # ws: U (36·K·C), then nl lane areas, each ending in its partial filter gradient (9·K·C)
    K, C = w.shape[0], w.shape[1]
    KC = K * C
    U = ws[0:NA * KC].reshape(NA, K, C)
    rest = ws[NA * KC:]
    lane = rest.size // nl
    _filters(w, U.reshape(NA, KC), nl, rest, lane, 9 * KC)
    if nl == 1:
        _backward_samples(gout, x, U, ph, pw, 0, x.shape[0], gx, rest[lane - 9 * KC:lane].reshape(KC, 9),
                          need_gx, need_gw, rest[:lane - 9 * KC])
    else:
        _backward_lanes(gout, x, U, ph, pw, nl, lane, gx, need_gx, need_gw, rest)
    if need_gw:
        gwf = gw.reshape(KC * 9)
        for t in range(nl):
            p = rest[(t + 1) * lane - 9 * KC:(t + 1) * lane]
            if t == 0:
                for r in range(KC * 9):
                    gwf[r] = p[r]
            else:
                for r in range(KC * 9):
                    gwf[r] += p[r]
