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


@njit(cache=True, error_model="numpy")
def applies(C, K, kh, kw, sh, sw, dh, dw, groups, P, Q):
    """Whether a convolution's geometry takes this path (the batch decides again at run time): 3×3, stride 1,
    undilated, ungrouped, 16 channels in and out at least (fewer starve the GEMMs) and an output of 8×8 at
    least (four tiles a sample; smaller ones, ResNet's last stage at 4×4, stay with im2col)."""
    return (kh == 3 and kw == 3 and sh == 1 and sw == 1 and dh == 1 and dw == 1 and groups == 1
            and C >= 16 and K >= 16 and P >= 8 and Q >= 8)


@njit(cache=True, error_model="numpy")
def forward_lane(C, K, P, Q):
    """Elements of one lane's forward area: chunk tiles (V, M and two rows of scratch per position) and the
    filter-transform scratch, which lane 0's area lends before the lanes start."""
    tpi = ((P + 3) // 4) * ((Q + 3) // 4)
    return max(tpi * NA * (C + K + 2), BUDGET, 18 * K * C)


@njit(cache=True, error_model="numpy")
def backward_lane(C, K, P, Q):
    """One lane's backward area: a chunk's filter gradient in the transformed domain (36·K·C), the filter
    transform's scratch (18·K·C), the chunk's tiles (V, Z and scratch) and the lane's partial filter gradient
    (9·K·C)."""
    tpi = ((P + 3) // 4) * ((Q + 3) // 4)
    return 63 * K * C + max(tpi * NA * (C + K + 2), BUDGET)


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


@njit(cache=True, error_model="numpy")
def _tf_in(D, T, V, k2, k4, k5):
    # D (36, n) input tiles, position i*6+j -> V (36, n) = Bᵀ d B per tile; T (36, n) scratch
    for j in range(6):
        _bt(D[j], D[6 + j], D[12 + j], D[18 + j], D[24 + j], D[30 + j],
            T[j], T[6 + j], T[12 + j], T[18 + j], T[24 + j], T[30 + j], k2, k4, k5)
    for u in range(6):
        r = u * 6
        _bt(T[r], T[r + 1], T[r + 2], T[r + 3], T[r + 4], T[r + 5],
            V[r], V[r + 1], V[r + 2], V[r + 3], V[r + 4], V[r + 5], k2, k4, k5)


@njit(cache=True, error_model="numpy")
def _tf_back_in(V, T, D, k2, k4, k5):
    # the adjoint of _tf_in: V (36, n) -> D (36, n) = B v Bᵀ; T (36, n) scratch
    for u in range(6):
        r = u * 6
        _b(V[r], V[r + 1], V[r + 2], V[r + 3], V[r + 4], V[r + 5],
           T[r], T[r + 1], T[r + 2], T[r + 3], T[r + 4], T[r + 5], k2, k4, k5)
    for j in range(6):
        _b(T[j], T[6 + j], T[12 + j], T[18 + j], T[24 + j], T[30 + j],
           D[j], D[6 + j], D[12 + j], D[18 + j], D[24 + j], D[30 + j], k2, k4, k5)


@njit(cache=True, error_model="numpy")
def _tf_out(M, S, Y, k2, k4, k8):
    # M (36, n) products, position u*6+v -> Y (16, n) = Aᵀ m A per tile; S (24, n) scratch
    for v in range(6):
        _at(M[v], M[6 + v], M[12 + v], M[18 + v], M[24 + v], M[30 + v],
            S[v], S[6 + v], S[12 + v], S[18 + v], k2, k4, k8)
    for p in range(4):
        r = p * 6
        _at(S[r], S[r + 1], S[r + 2], S[r + 3], S[r + 4], S[r + 5],
            Y[p * 4], Y[p * 4 + 1], Y[p * 4 + 2], Y[p * 4 + 3], k2, k4, k8)


@njit(cache=True, error_model="numpy")
def _tf_back_out(Y, S, Z, k2, k4, k8):
    # the adjoint of _tf_out: Y (16, n) output-gradient tiles -> Z (36, n) = A y Aᵀ; S (24, n) scratch
    for q in range(4):
        _a(Y[q], Y[4 + q], Y[8 + q], Y[12 + q], S[q], S[4 + q], S[8 + q], S[12 + q], S[16 + q], S[20 + q],
           k2, k4, k8)
    for u in range(6):
        r = u * 4
        _a(S[r], S[r + 1], S[r + 2], S[r + 3], Z[u * 6], Z[u * 6 + 1], Z[u * 6 + 2], Z[u * 6 + 3], Z[u * 6 + 4],
           Z[u * 6 + 5], k2, k4, k8)


# ------------------------------------------------------------------- filters: U = G g Gᵀ and its adjoint

@njit(cache=True, error_model="numpy")
def _filters(w, S, U):
    # w (K, C, 3, 3) -> U (36, K*C); S (18, K*C) scratch. In float64 arithmetic (the 1/6 and 1/24 of G), once
    # per call; the vector runs over (k, c) pairs.
    KC = w.shape[0] * w.shape[1]
    wf = w.reshape(KC, 9)
    for j in range(3):
        s0 = S[j]
        s1 = S[3 + j]
        s2 = S[6 + j]
        s3 = S[9 + j]
        s4 = S[12 + j]
        s5 = S[15 + j]
        for t in range(KC):
            g0 = np.float64(wf[t, j])
            g1 = np.float64(wf[t, 3 + j])
            g2 = np.float64(wf[t, 6 + j])
            s0[t] = g0 / 4.0
            s1[t] = -(g0 + g1 + g2) / 6.0
            s2[t] = -(g0 - g1 + g2) / 6.0
            s3[t] = g0 / 24.0 + g1 / 12.0 + g2 / 6.0
            s4[t] = g0 / 24.0 - g1 / 12.0 + g2 / 6.0
            s5[t] = g2
    for u in range(6):
        a = S[u * 3]
        b = S[u * 3 + 1]
        c = S[u * 3 + 2]
        r = u * 6
        for t in range(KC):
            g0 = np.float64(a[t])
            g1 = np.float64(b[t])
            g2 = np.float64(c[t])
            U[r, t] = g0 / 4.0
            U[r + 1, t] = -(g0 + g1 + g2) / 6.0
            U[r + 2, t] = -(g0 - g1 + g2) / 6.0
            U[r + 3, t] = g0 / 24.0 + g1 / 12.0 + g2 / 6.0
            U[r + 4, t] = g0 / 24.0 - g1 / 12.0 + g2 / 6.0
            U[r + 5, t] = g2


@njit(cache=True, error_model="numpy")
def _filters_back(dU, S, gwf, add):
    # the adjoint of _filters: dU (36, K*C) -> gwf (K*C, 9) (+= when add); S (18, K*C) scratch
    KC = gwf.shape[0]
    for u in range(6):
        r = u * 6
        a = S[u * 3]
        b = S[u * 3 + 1]
        c = S[u * 3 + 2]
        for t in range(KC):
            u0 = np.float64(dU[r, t])
            u1 = np.float64(dU[r + 1, t])
            u2 = np.float64(dU[r + 2, t])
            u3 = np.float64(dU[r + 3, t])
            u4 = np.float64(dU[r + 4, t])
            u5 = np.float64(dU[r + 5, t])
            a[t] = u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0
            b[t] = (u2 - u1) / 6.0 + (u3 - u4) / 12.0
            c[t] = (u3 + u4 - u1 - u2) / 6.0 + u5
    for j in range(3):
        s0 = S[j]
        s1 = S[3 + j]
        s2 = S[6 + j]
        s3 = S[9 + j]
        s4 = S[12 + j]
        s5 = S[15 + j]
        for t in range(KC):
            u0 = np.float64(s0[t])
            u1 = np.float64(s1[t])
            u2 = np.float64(s2[t])
            u3 = np.float64(s3[t])
            u4 = np.float64(s4[t])
            u5 = np.float64(s5[t])
            g0 = u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0
            g1 = (u2 - u1) / 6.0 + (u3 - u4) / 12.0
            g2 = (u3 + u4 - u1 - u2) / 6.0 + u5
            if add:
                gwf[t, j] += g0
                gwf[t, 3 + j] += g1
                gwf[t, 6 + j] += g2
            else:
                gwf[t, j] = g0
                gwf[t, 3 + j] = g1
                gwf[t, 6 + j] = g2


# ------------------------------------------------------------------- tiles in and out of images

@njit(cache=True, error_model="numpy")
def _gather(xc, ph, pw, th, tw, D):
    # xc (H, W) one channel -> D (36, th*tw): tile (ty, tx) position i*6+j = xc[4ty-ph+i, 4tx-pw+j], 0 outside
    H, W = xc.shape
    for ty in range(th):
        base = ty * tw
        for i in range(6):
            h = 4 * ty - ph + i
            for j in range(6):
                d = D[i * 6 + j, base:base + tw]
                if h < 0 or h >= H:
                    for t in range(tw):
                        d[t] = 0.0
                    continue
                off = j - pw
                lo = min(tw, max(0, -(off // 4)))  # first tx with 4tx + off >= 0
                hi = max(lo, min(tw, (W - 1 - off) // 4 + 1))  # past the last with 4tx + off <= W-1
                for t in range(lo):
                    d[t] = 0.0
                src = xc[h, 4 * lo + off:W:4]
                for t in range(hi - lo):
                    d[lo + t] = src[t]
                for t in range(hi, tw):
                    d[t] = 0.0


@njit(cache=True, error_model="numpy")
def _scatter_add(D, ph, pw, th, tw, gc):
    # the adjoint of _gather: gc (H, W) += D's tiles at their places (tiles overlap by two rows and columns)
    H, W = gc.shape
    for ty in range(th):
        base = ty * tw
        for i in range(6):
            h = 4 * ty - ph + i
            if h < 0 or h >= H:
                continue
            for j in range(6):
                d = D[i * 6 + j, base:base + tw]
                off = j - pw
                lo = min(tw, max(0, -(off // 4)))
                hi = max(lo, min(tw, (W - 1 - off) // 4 + 1))
                dst = gc[h, 4 * lo + off:W:4]
                for t in range(hi - lo):
                    dst[t] += d[lo + t]


@njit(cache=True, error_model="numpy")
def _put(Y, bias, th, tw, ok):
    # Y (16, th*tw) output tiles -> ok (P, Q) one output channel, + bias; the parts of edge tiles past P or Q
    # are dropped
    P, Q = ok.shape
    for ty in range(th):
        base = ty * tw
        for p in range(4):
            r = 4 * ty + p
            if r >= P:
                break
            for q in range(4):
                dst = ok[r, q:Q:4]
                y = Y[p * 4 + q, base:base + tw]
                for t in range(min(tw, dst.shape[0])):
                    dst[t] = y[t] + bias


@njit(cache=True, error_model="numpy")
def _take(gk, th, tw, Y):
    # the adjoint of _put: gk (P, Q) one output channel's gradient -> Y (16, th*tw), 0 past P or Q
    P, Q = gk.shape
    for ty in range(th):
        base = ty * tw
        for p in range(4):
            r = 4 * ty + p
            for q in range(4):
                y = Y[p * 4 + q, base:base + tw]
                n = 0
                if r < P:
                    src = gk[r, q:Q:4]
                    n = min(tw, src.shape[0])
                    for t in range(n):
                        y[t] = src[t]
                for t in range(n, tw):
                    y[t] = 0.0


# ------------------------------------------------------------------- the passes of one lane

@njit(cache=True, error_model="numpy")
def _chunk_images(lo, hi, tpi, per_tile, area):
    # images per chunk: as many as the area holds, spread evenly over the chunks the lane needs
    m = hi - lo
    fit = max(1, min(m, area // (tpi * per_tile)))
    chunks = -(-m // fit) if m > 0 else 1
    return max(1, -(-m // chunks))


@njit(cache=True, error_model="numpy")
def _input_tiles(x, n0, m, ph, pw, th, tw, D, T, V, k2, k4, k5):
    # V (36, C, m*tpi) = the transformed input tiles of samples n0 .. n0+m-1
    C = x.shape[1]
    tpi = th * tw
    for c in range(C):
        for j in range(m):
            _gather(x[n0 + j, c], ph, pw, th, tw, D[:, j * tpi:(j + 1) * tpi])
        _tf_in(D, T, V[:, c, :], k2, k4, k5)


@njit(cache=True, error_model="numpy")
def _forward_samples(x, U, b, ph, pw, lo, hi, out, area):
    C = x.shape[1]
    K = out.shape[1]
    th, tw = (out.shape[2] + 3) // 4, (out.shape[3] + 3) // 4
    tpi = th * tw
    k2, k4, k5, k8 = _consts(x)
    per_tile = NA * (C + K + 2)
    nb = _chunk_images(lo, hi, tpi, per_tile, area.size)
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        nt = m * tpi
        V = area[0:NA * C * nt].reshape(NA, C, nt)
        M = area[NA * C * nt:NA * (C + K) * nt].reshape(NA, K, nt)
        D = area[NA * (C + K) * nt:NA * (C + K + 1) * nt].reshape(NA, nt)
        T = area[NA * (C + K + 1) * nt:NA * (C + K + 2) * nt].reshape(NA, nt)
        _input_tiles(x, n0, m, ph, pw, th, tw, D, T, V, k2, k4, k5)
        for a in range(NA):
            np.dot(U[a], V[a], M[a])
        for k in range(K):
            _tf_out(M[:, k, :], T, D, k2, k4, k8)
            bk = b[k] if b.shape[0] > 0 else k2 - k2  # zero in the data's dtype
            for j in range(m):
                _put(D[:16, j * tpi:(j + 1) * tpi], bk, th, tw, out[n0 + j, k])


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
    _filters(w, rest[0:18 * KC].reshape(18, KC), U.reshape(NA, KC))
    if nl == 1:
        _forward_samples(x, U, b, ph, pw, 0, x.shape[0], out, rest)
    else:
        _forward_lanes(x, U, b, ph, pw, nl, lane, out, rest)


@njit(cache=True, error_model="numpy")
def _backward_samples(gout, x, U, ph, pw, lo, hi, gx, gwp, need_gx, need_gw, area):
    # samples lo .. hi-1: gx[lo:hi] overwritten, their filter gradient into gwp (K*C, 9), overwritten.
    # area: a chunk's filter gradient dU (36, K, C), the filter transform's scratch (18, K*C), the tiles
    C = x.shape[1]
    K = gout.shape[1]
    KC = K * C
    th, tw = (gout.shape[2] + 3) // 4, (gout.shape[3] + 3) // 4
    tpi = th * tw
    k2, k4, k5, k8 = _consts(x)
    dU = area[0:NA * KC].reshape(NA, KC)
    S = area[NA * KC:(NA + 18) * KC].reshape(18, KC)
    tiles_ws = area[(NA + 18) * KC:]
    per_tile = NA * (C + K + 2)
    nb = _chunk_images(lo, hi, tpi, per_tile, tiles_ws.size)
    if need_gw and hi <= lo:
        gwp[:] = 0.0
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        nt = m * tpi
        V = tiles_ws[0:NA * C * nt].reshape(NA, C, nt)
        Z = tiles_ws[NA * C * nt:NA * (C + K) * nt].reshape(NA, K, nt)
        D = tiles_ws[NA * (C + K) * nt:NA * (C + K + 1) * nt].reshape(NA, nt)
        T = tiles_ws[NA * (C + K + 1) * nt:NA * (C + K + 2) * nt].reshape(NA, nt)
        for k in range(K):
            for j in range(m):
                _take(gout[n0 + j, k], th, tw, D[:16, j * tpi:(j + 1) * tpi])
            _tf_back_out(D, T, Z[:, k, :], k2, k4, k8)
        if need_gw:
            _input_tiles(x, n0, m, ph, pw, th, tw, D, T, V, k2, k4, k5)
            for a in range(NA):
                np.dot(Z[a], V[a].T, dU[a].reshape(K, C))
            _filters_back(dU, S, gwp, n0 != lo)
        if need_gx:
            for a in range(NA):
                np.dot(U[a].T, Z[a], V[a])  # V's slot now holds the gradient of the input tiles
            for j in range(m):
                gx[n0 + j][:] = 0.0
            for c in range(C):
                _tf_back_in(V[:, c, :], T, D, k2, k4, k5)
                for j in range(m):
                    _scatter_add(D[:, j * tpi:(j + 1) * tpi], ph, pw, th, tw, gx[n0 + j, c])


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
    _filters(w, rest[NA * KC:(NA + 18) * KC].reshape(18, KC), U.reshape(NA, KC))
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
