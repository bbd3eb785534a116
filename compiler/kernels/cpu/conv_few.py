"""Convolution paths for layers with few filters (LeNet's): transposed columns and direct loops.

Helpers of conv.py's ``_forward_samples`` / ``_backward_samples`` (same conventions; see conv.py). With fewer
than 32 filters a GEMM of filters x columns has too few rows for BLAS to run well, so these layers build the
columns transposed (one output position per row, written contiguously), multiply columns x filters, and
transpose back; a stride-1 unpadded layer with at most 32 taps per output skips the columns altogether
(``_direct_forward`` / ``_direct_backward``). Measured on the project's 2-core machine, batch 64, LeNet-5:
the first layer forward 1.0 -> 0.24 ms and backward 1.3 -> 0.42 ms, the second 1.0 -> 0.56 and 2.1 -> 1.3 ms.
"""

from numba import njit


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


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _direct_forward(x, w, b, lo, hi, out, owide):
    # samples lo .. hi-1 of a stride-1 unpadded convolution with few taps (LeNet's first layer):
    # x (B, C, H, W), w (K, C, kh, kw) -> out (B, K, P, Q), owide scratch of (P - 1) * W + Q.
    # The output plane is computed W wide (its last kw - 1 columns are junk) so that every tap is one pass of
    # one contiguous loop over the input; a window row of 5 or 3 taps is fused into one pass. For 25 taps and
    # 6 filters 3x faster than columns x filters through BLAS, whose GEMM with an inner dimension of 25 is slow
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, _, kh, kw = w.shape
    P, Q = out.shape[2], out.shape[3]
    Lw = (P - 1) * W + Q
    o = owide[:Lw]
    for n in range(lo, hi):
        xf = x[n].reshape(C * H * W)
        for k in range(K):
            o[:] = 0.0
            for c in range(C):
                for i in range(kh):
                    base = (c * H + i) * W
                    xs = xf[base:base + Lw + kw - 1]
                    if kw == 5:
                        w0, w1, w2, w3, w4 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2], w[k, c, i, 3], w[k, c, i, 4]
                        for s in range(Lw):
                            o[s] += w0 * xs[s] + w1 * xs[s + 1] + w2 * xs[s + 2] + w3 * xs[s + 3] + w4 * xs[s + 4]
                    elif kw == 3:
                        w0, w1, w2 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2]
                        for s in range(Lw):
                            o[s] += w0 * xs[s] + w1 * xs[s + 1] + w2 * xs[s + 2]
                    else:
                        for j in range(kw):
                            wj = w[k, c, i, j]
                            xj = xs[j:j + Lw]
                            for s in range(Lw):
                                o[s] += wj * xj[s]
            bk = b[k] if b.shape[0] > 0 else 0.0
            ok = out[n, k]
            for p in range(P):
                orow = ok[p]
                src = o[p * W:p * W + Q]
                for q in range(Q):
                    orow[q] = src[q] + bk


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _direct_backward(gout, x, w, lo, hi, gx, gwp, need_gx, need_gw, gwide):
    # _direct_forward's backward for samples lo .. hi-1: gx[lo:hi] overwritten, their weight gradient into gwp
    # (K, C*kh*kw), overwritten. gwide (K, (P - 1) * W + Q) holds the output gradient W wide with zeros in the
    # junk columns: each weight's gradient is one dot product over it (window rows of 5 share the loads), and
    # the input gradient one pass per tap. Reassociation lets the sums vectorise
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, _, kh, kw = w.shape
    P, Q = gout.shape[2], gout.shape[3]
    Lw = (P - 1) * W + Q
    zero = gwide.dtype.type(0.0)
    if need_gw:
        gwp[:] = 0.0
    for n in range(lo, hi):
        for k in range(K):
            gk = gwide[k]
            gk[:] = 0.0
            for p in range(P):
                src = gout[n, k, p]
                dst = gk[p * W:p * W + Q]
                for q in range(Q):
                    dst[q] = src[q]
        if need_gw:
            xf = x[n].reshape(C * H * W)
            for k in range(K):
                gk = gwide[k]
                ga = gwp[k]
                for c in range(C):
                    for i in range(kh):
                        base = (c * H + i) * W
                        xs = xf[base:base + Lw + kw - 1]
                        r = (c * kh + i) * kw
                        if kw == 5:
                            a0 = zero
                            a1 = zero
                            a2 = zero
                            a3 = zero
                            a4 = zero
                            for s in range(Lw):
                                g = gk[s]
                                a0 += g * xs[s]
                                a1 += g * xs[s + 1]
                                a2 += g * xs[s + 2]
                                a3 += g * xs[s + 3]
                                a4 += g * xs[s + 4]
                            ga[r] += a0
                            ga[r + 1] += a1
                            ga[r + 2] += a2
                            ga[r + 3] += a3
                            ga[r + 4] += a4
                        else:
                            for j in range(kw):
                                xj = xs[j:j + Lw]
                                a = zero
                                for s in range(Lw):
                                    a += gk[s] * xj[s]
                                ga[r + j] += a
        if need_gx:
            gf = gx[n].reshape(C * H * W)
            gf[:] = 0.0
            for c in range(C):
                for i in range(kh):
                    base = (c * H + i) * W
                    for j in range(kw):
                        gs = gf[base + j:base + j + Lw]
                        for k in range(K):
                            wj = w[k, c, i, j]
                            gk = gwide[k]
                            for s in range(Lw):
                                gs[s] += wj * gk[s]
