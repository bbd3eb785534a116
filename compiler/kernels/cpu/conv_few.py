"""Convolution with few filters (LeNet's, a CIFAR ResNet's stem): transposed columns.

With fewer than 32 filters a GEMM of filters x columns has too few rows for BLAS to run well, so these layers
build the columns transposed (one output position per row, written contiguously), multiply columns x filters,
and transpose back (LeNet-5's second layer at batch 64: forward 1.0 -> 0.56 ms, backward 2.1 -> 1.3 ms).
Helpers of conv.py's ``_forward_samples`` / ``_backward_samples`` (same conventions; see conv.py), and kernels
of their own that lowering picks for such layers, ``conv2d_few_forward/backward``, with conv2d_forward's
arguments and workspace; conv_direct.py has the stride-1 unpadded layers with few taps. A network then
compiles only the paths its layers take (LeNet-5 neither im2col nor these columns), and its kernels compile on
the cores in parallel rather than two large ones (each level of a Numba call tree is optimised again in every
caller, and a parallel kernel's body four times: its gufunc, two wrappers and the kernel).
"""

import numpy as np
from numba import njit, prange

# elements of workspace a lane's chunk of samples may fill (conv.py's sizes: one sample's columns at least)
_CHUNK = 1 << 20
# a convolution with fewer filters than this (groups=1) computes the transposed product, columns x filters,
# in chunks of at most _FEW_CHUNK elements of columns and result, so that they stay in the core's L2 cache
_FEW_FILTERS = 32
_FEW_CHUNK = 1 << 17
# such a convolution with at most this many taps per output (C/groups * kh * kw), stride 1 and no padding, runs
# directly, with no columns at all: LeNet's c3 (150 taps, 16 filters, batch 64 on 2 cores) forward 0.33 against
# 0.47 ms through the columns, backward 0.96 against 0.89; LeNet then compiles no columns path at all
_DIRECT_TAPS = 160


@njit(cache=True, error_model="numpy", inline="always")
def _copy_run(src, s, dst, d, n):
    # dst[d:d+n] = src[s:s+n] for a window's row: the common widths as fixed-length copies, which LLVM
    # unrolls; a loop of a runtime length 5 made LeNet's transposed im2col 4-5x slower
    if n == 5:
        dst[d] = src[s]
        dst[d + 1] = src[s + 1]
        dst[d + 2] = src[s + 2]
        dst[d + 3] = src[s + 3]
        dst[d + 4] = src[s + 4]
    elif n == 3:
        dst[d] = src[s]
        dst[d + 1] = src[s + 1]
        dst[d + 2] = src[s + 2]
    else:
        for j in range(n):
            dst[d + j] = src[s + j]


@njit(cache=True, error_model="numpy")
def _im2col_t(xb, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, colsT):
    # xb (C, H, W) one sample -> colsT (P*Q, C*kh*kw), the transpose of _im2col's columns for groups=1:
    # row p*Q + q holds output (p, q)'s window, 0 outside the input. Built row by row it writes contiguously
    # (LeNet's layers: 1.4-2x faster than _im2col's layout), and it is the operand the few-filter GEMM wants
    C = xb.shape[0]
    H = xb.shape[1]
    W = xb.shape[2]
    if sh == 1 and sw == 1 and ph == 0 and pw == 0 and dh == 1 and dw == 1:
        xf = xb.reshape(xb.size)
        if kh == 5 and kw == 5:  # LeNet's windows, with the loop bounds constant
            for p in range(P):
                for q in range(Q):
                    row = colsT[p * Q + q]
                    for c in range(C):
                        for i in range(5):
                            _copy_run(xf, (c * H + p + i) * W + q, row, (c * 5 + i) * 5, 5)
            return
        for p in range(P):
            for q in range(Q):
                row = colsT[p * Q + q]
                r = 0
                for c in range(C):
                    for i in range(kh):
                        _copy_run(xf, (c * H + p + i) * W + q, row, r, kw)
                        r += kw
        return
    for p in range(P):
        for q in range(Q):
            row = colsT[p * Q + q]
            r = 0
            for c in range(C):
                for i in range(kh):
                    h = p * sh - ph + i * dh
                    for j in range(kw):
                        v = q * sw - pw + j * dw
                        row[r + j] = xb[c, h, v] if 0 <= h < H and 0 <= v < W else 0.0
                    r += kw


@njit(cache=True, error_model="numpy", inline="always")
def _add_run(src, s, dst, d, n):
    # dst[d:d+n] += src[s:s+n], unrolled for the common widths as _copy_run
    if n == 5:
        dst[d] += src[s]
        dst[d + 1] += src[s + 1]
        dst[d + 2] += src[s + 2]
        dst[d + 3] += src[s + 3]
        dst[d + 4] += src[s + 4]
    elif n == 3:
        dst[d] += src[s]
        dst[d + 1] += src[s + 1]
        dst[d + 2] += src[s + 2]
    else:
        for j in range(n):
            dst[d + j] += src[s + j]


@njit(cache=True, error_model="numpy")
def _col2im_t(gcolsT, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb):
    # adds gcolsT (P*Q, C*kh*kw), _im2col_t's layout, back into gxb (C, H, W)
    C = gxb.shape[0]
    H = gxb.shape[1]
    W = gxb.shape[2]
    if sh == 1 and sw == 1 and ph == 0 and pw == 0 and dh == 1 and dw == 1:
        gf = gxb.reshape(gxb.size)
        if kh == 5 and kw == 5:
            for p in range(P):
                for q in range(Q):
                    row = gcolsT[p * Q + q]
                    for c in range(C):
                        for i in range(5):
                            _add_run(row, (c * 5 + i) * 5, gf, (c * H + p + i) * W + q, 5)
            return
        for p in range(P):
            for q in range(Q):
                row = gcolsT[p * Q + q]
                r = 0
                for c in range(C):
                    for i in range(kh):
                        _add_run(row, r, gf, (c * H + p + i) * W + q, kw)
                        r += kw
        return
    for p in range(P):
        for q in range(Q):
            row = gcolsT[p * Q + q]
            r = 0
            for c in range(C):
                for i in range(kh):
                    h = p * sh - ph + i * dh
                    if 0 <= h < H:
                        for j in range(kw):
                            v = q * sw - pw + j * dw
                            if 0 <= v < W:
                                gxb[c, h, v] += row[r + j]
                    r += kw


@njit(cache=True, error_model="numpy")
def _lanes(ws_size, lane, B):
    # how many lanes the workspace holds (at most one per sample)
    return max(1, min(B, ws_size // lane))


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _bias_grad(gout, gb):
    # gb[k] = sum of gout[:, k]; reassociation lets the sum vectorise (NaN/inf semantics unchanged)
    B, K, P, Q = gout.shape
    for k in range(K):
        acc = 0.0
        for n in range(B):
            gk = gout[n, k]
            for p in range(P):
                for q in range(Q):
                    acc += gk[p, q]
        gb[k] = acc


@njit(cache=True, error_model="numpy")
def _sum_partials(ws, nl, lane, gw2):
    # gw2 (K, ck) = the lanes' partial weight gradients at the end of each lane's part of ws, added in lane
    # order (the same sum whatever the scheduling)
    K, ck = gw2.shape
    for t in range(nl):
        gwp = ws[(t + 1) * lane - K * ck:(t + 1) * lane].reshape(K, ck)
        for k in range(K):
            a = gw2[k]
            p = gwp[k]
            if t == 0:
                for r in range(ck):
                    a[r] = p[r]
            else:
                for r in range(ck):
                    a[r] += p[r]


@njit(cache=True, error_model="numpy")
def _own_gw(gw, need_gw, ws, K, ck):
    # where one lane writes the weight gradient straight into gw (K, ck): gw itself, or, when it is not wanted
    # (and may be a zero-length array), the end of ws, which the lane leaves alone
    return gw.reshape(K, ck) if need_gw else ws[ws.size - K * ck:].reshape(K, ck)


@njit(cache=True, error_model="numpy")
def _few_forward_samples(x, w2, b, sh, sw, ph, pw, dh, dw, kh, kw, lo, hi, out, ws):
    # samples lo .. hi-1 of x (B, C, H, W) -> out (B, K, P, Q) for groups 1 and few filters, ws one lane's
    # scratch: (L, ck) x (ck, K) over chunks of L = m * P * Q output positions. BLAS runs a GEMM with few
    # columns at twice the rate of its transpose with few rows (LeNet's 6 and 16 filters); the transposing
    # copy into out adds the bias
    K = w2.shape[0]
    ck = w2.shape[1]
    P = out.shape[2]
    Q = out.shape[3]
    PQ = P * Q
    nb = max(1, min(hi - lo, ws.size // ((ck + K) * PQ), _FEW_CHUNK // ((ck + K) * PQ)))
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        L = m * PQ
        colsT = ws[0:L * ck].reshape(L, ck)
        resT = ws[L * ck:L * ck + L * K].reshape(L, K)
        for j in range(m):
            _im2col_t(x[n0 + j], kh, kw, sh, sw, ph, pw, dh, dw, P, Q, colsT[j * PQ:(j + 1) * PQ])
        np.dot(colsT, w2.T, resT)
        for j in range(m):
            oj = out[n0 + j].reshape(K, PQ)
            rj = resT[j * PQ:(j + 1) * PQ]
            for k in range(K):
                bk = b[k] if b.shape[0] > 0 else 0.0
                dst = oj[k]
                for s in range(PQ):
                    dst[s] = rj[s, k] + bk


@njit(cache=True, error_model="numpy")
def _few_backward_samples(gout, x, w2, sh, sw, ph, pw, dh, dw, kh, kw, lo, hi, gx, gwp, need_gx, need_gw, ws):
    # samples lo .. hi-1 as _few_forward_samples: gx[lo:hi] overwritten, their weight gradient into gwp (K, ck),
    # overwritten; ws one lane's scratch less its partial sum. The output gradient goes sample-major (L, K), so
    # both GEMMs have the long dimension L outside (columns^T x it for the weights, it x weights for the
    # columns' gradient)
    K = w2.shape[0]
    ck = w2.shape[1]
    P = gout.shape[2]
    Q = gout.shape[3]
    PQ = P * Q
    nb = max(1, min(hi - lo, (ws.size - K * ck) // ((2 * ck + K) * PQ), _FEW_CHUNK // ((2 * ck + K) * PQ)))
    if need_gw and hi <= lo:
        gwp[:] = 0.0
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        L = m * PQ
        colsT = ws[0:L * ck].reshape(L, ck)
        gcolsT = ws[L * ck:2 * L * ck].reshape(L, ck)
        gTT = ws[2 * L * ck:2 * L * ck + L * K].reshape(L, K)
        for j in range(m):
            gj = gout[n0 + j].reshape(K, PQ)
            gd = gTT[j * PQ:(j + 1) * PQ]
            for k in range(K):
                src = gj[k]
                for t in range(PQ):
                    gd[t, k] = src[t]
        if need_gw:
            for j in range(m):
                _im2col_t(x[n0 + j], kh, kw, sh, sw, ph, pw, dh, dw, P, Q, colsT[j * PQ:(j + 1) * PQ])
            tw = ws[ws.size - K * ck:].reshape(ck, K)
            np.dot(colsT.T, gTT, tw)
            for k in range(K):
                a = gwp[k]
                if n0 == lo:
                    for r in range(ck):
                        a[r] = tw[r, k]
                else:
                    for r in range(ck):
                        a[r] += tw[r, k]
        if need_gx:
            np.dot(gTT, w2, gcolsT)
            for j in range(m):
                gx[n0 + j][:] = 0.0
                _col2im_t(gcolsT[j * PQ:(j + 1) * PQ], kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gx[n0 + j])


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_few_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws):
    # x (B, C, H, W), w (K, C, kh, kw), b (K,) or (0,) -> out (B, K, P, Q); conv2d_forward's arguments and
    # workspace, for groups 1 (raises otherwise) and few filters: lanes of samples through transposed columns
    if groups != 1:
        raise ValueError("conv2d_few: only for groups 1")
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    nl = _lanes(ws.size, max((Cg * kh * kw + K) * out.shape[2] * out.shape[3], _CHUNK), B)
    w2 = w.reshape(K, Cg * kh * kw)
    lane = ws.size // nl
    if nl == 1:
        _few_forward_samples(x, w2, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, kh, kw, np.int64(0), B,
                             out, ws)
        return
    for t in prange(nl):
        _few_forward_samples(x, w2, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, kh, kw, t * B // nl,
                             (t + 1) * B // nl, out, ws[t * lane:(t + 1) * lane])


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_few_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                        gx, gw, gb, need_gx, need_gw, ws):
    # gout (B, K, P, Q), x (B, C, H, W), w (K, C, kh, kw) -> gx like x, gw like w, gb (K,) or (0,), as
    # conv2d_backward, for groups 1 (raises otherwise) and few filters
    if groups != 1:
        raise ValueError("conv2d_few: only for groups 1")
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    ck = Cg * kh * kw
    nl = _lanes(ws.size, max((2 * ck + K) * gout.shape[2] * gout.shape[3], _CHUNK) + 2 * K * ck, B)
    if gb.shape[0] > 0:
        _bias_grad(gout, gb)
    w2 = w.reshape(K, ck)
    lane = ws.size // nl
    if nl == 1:
        _few_backward_samples(gout, x, w2, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, kh, kw, np.int64(0), B,
                              gx, _own_gw(gw, need_gw, ws, K, ck), need_gx, need_gw, ws[:lane - K * ck])
        return
    for t in prange(nl):
        part = ws[t * lane:(t + 1) * lane]
        _few_backward_samples(gout, x, w2, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, kh, kw, t * B // nl,
                              (t + 1) * B // nl, gx, part[part.size - K * ck:].reshape(K, ck), need_gx, need_gw,
                              part[:part.size - K * ck])
    if need_gw:
        _sum_partials(ws, nl, lane, gw.reshape(K, ck))
