"""Direct convolution loops for stride-1 unpadded layers with few filters and taps (LeNet-5's), with a fused
activation.

``conv2d_direct_forward/backward`` are picked by lowering for such layers (rules.py's ``_conv_kernel``) and take
conv2d_forward's arguments and workspace (see conv.py for the conventions), plus ``act``: the activation that
lowering fused into the convolution (``ACT_*``; a relu, tanh or sigmoid whose input is this convolution alone),
and, in the backward, that activation's output ``y``. The output plane is computed W wide, so every tap is one
contiguous pass over the input rows; no columns are built at all. Measured on the project's 2-core machine,
batch 64, LeNet-5: the first layer forward 1.0 -> 0.24 ms and backward 1.3 -> 0.42 ms against im2col.
"""

import numpy as np
from numba import njit, prange

from . import fastmath as fm
from .conv_few import _CHUNK, _DIRECT_TAPS, _FEW_FILTERS, _lanes, _own_gw, _sum_partials

# the backward's weight-gradient sums run over the W-wide plane rounded up to a multiple of this many elements
# (zeros past its end): a 136-long sum (LeNet c3) left a remainder of 8 that the vectorised reduction ran in
# scalar code, 0.36 ms of 32 samples' weight gradient against 0.28 ms over 144
_SUM_ALIGN = 16


@njit(cache=True, inline="always", error_model="numpy")
def direct_wide(kw, P, W, Q):
    # the length of the backward's W-wide output-gradient rows: the plane, rounded up to _SUM_ALIGN, with a
    # margin of kw - 1 on each side
    Lw = (P - 1) * W + Q
    return (Lw + _SUM_ALIGN - 1) // _SUM_ALIGN * _SUM_ALIGN + 2 * (kw - 1)


@njit(cache=True, error_model="numpy")
def direct_room(K, kw, P, W, Q, backward):
    # elements the direct loops need in a lane's scratch, besides its partial sums: two output planes W wide
    # (forward); K output-gradient rows (direct_wide) and the bias sums (backward). A lane is at least this
    # large (a tall narrow image's planes can pass the usual _CHUNK of columns)
    # (direct_wide restated: conv.py's size helpers run this as plain Python, without compiling)
    Lw = (P - 1) * W + Q
    return K * ((Lw + _SUM_ALIGN - 1) // _SUM_ALIGN * _SUM_ALIGN + 2 * (kw - 1)) + K if backward else 2 * Lw


@njit(cache=True, inline="always", error_model="numpy")
def takes_direct(K, ck, groups, kh, kw, sh, sw, ph, pw, dh, dw):
    # whether conv.py's general kernels run a layer through these loops (lowering's rules._conv_kernel picks
    # conv2d_direct_* for the same layers): few filters and taps, stride 1, no padding, not a 1x1 identity
    unit = sh == 1 and sw == 1 and ph == 0 and pw == 0 and dh == 1 and dw == 1
    return groups == 1 and K < _FEW_FILTERS and ck <= _DIRECT_TAPS and unit and not (kh == 1 and kw == 1)


@njit(cache=True, error_model="numpy")
def direct_lane_room(K, ck, groups, kh, kw, sh, sw, ph, pw, dh, dw, P, W, Q, backward):
    # direct_room where conv.py's general kernels take the direct loops for a layer, else 0
    if takes_direct(K, ck, groups, kh, kw, sh, sw, ph, pw, dh, dw):
        return direct_room(K, kw, P, W, Q, backward)
    return 0


# activations a direct convolution applies to its output (lowering fuses conv -> relu/tanh/sigmoid): the
# activation's output is written where the convolution's would be, and its backward is applied to the output
# gradient as the convolution reads it, in cache, instead of a pass of its own over memory each way
ACT_NONE, ACT_RELU, ACT_TANH, ACT_SIGMOID = 0, 1, 2, 3


@njit(cache=True, inline="always", error_model="numpy")
def _act_row(src, bk, act, dst, fast, zero):
    # dst = act(src + bk) over a row, activation.py's forms (the branch outside the loops, so each vectorises)
    if act == ACT_RELU:
        for q in range(dst.shape[0]):
            v = src[q] + bk
            dst[q] = zero if v <= zero else v  # noqa: FURB136 - NaN propagates, as relu_forward (max would not)
    elif act == ACT_TANH:
        for q in range(dst.shape[0]):
            dst[q] = fm.tanh(src[q] + bk, fast)
    elif act == ACT_SIGMOID:
        for q in range(dst.shape[0]):
            dst[q] = fm.sigmoid(src[q] + bk, fast)
    else:
        for q in range(dst.shape[0]):
            dst[q] = src[q] + bk


@njit(cache=True, inline="always", error_model="numpy")
def _act_grad_row(g, y, act, dst, zero, one):
    # dst = g * act'(from the output y) over a row (activation.py's backward forms)
    if act == ACT_RELU:
        for q in range(dst.shape[0]):
            dst[q] = g[q] if y[q] > zero else zero
    elif act == ACT_TANH:
        for q in range(dst.shape[0]):
            yv = y[q]
            dst[q] = g[q] * (one - yv * yv)
    elif act == ACT_SIGMOID:
        for q in range(dst.shape[0]):
            yv = y[q]
            dst[q] = g[q] * yv * (one - yv)
    else:
        for q in range(dst.shape[0]):
            dst[q] = g[q]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _direct_forward(x, w, b, act, lo, hi, out, owide):
    # samples lo .. hi-1 of a stride-1 unpadded convolution with few taps (LeNet's first layer):
    # x (B, C, H, W), w (K, C, kh, kw) -> out (B, K, P, Q) = act(conv + b) (ACT_* codes), owide scratch of
    # 2 * ((P - 1) * W + Q).
    # The output plane is computed W wide (its last kw - 1 columns are junk) so that every tap is one pass of
    # one contiguous loop over the input; a window row of 5 or 3 taps is fused into one pass, and 5-wide rows
    # of two filters share one (their input loads). For 25 taps and 6 filters 3x faster than columns x
    # filters through BLAS, whose GEMM with an inner dimension of 25 is slow
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, _, kh, kw = w.shape
    P, Q = out.shape[2], out.shape[3]
    Lw = (P - 1) * W + Q
    o0 = owide[:Lw]
    o1 = owide[Lw:2 * Lw]
    fast = out.itemsize == 4
    zero = out.dtype.type(0.0)
    for n in range(lo, hi):
        xf = x[n].reshape(C * H * W)
        for k0 in range(0, K, 2):
            nk = min(2, K - k0)
            o0[:] = 0.0
            o1[:] = 0.0
            for c in range(C):
                for i in range(kh):
                    base = (c * H + i) * W
                    xs = xf[base:base + Lw + kw - 1]
                    if kw == 5 and nk == 2:
                        a0, a1, a2, a3, a4 = w[k0, c, i, 0], w[k0, c, i, 1], w[k0, c, i, 2], w[k0, c, i, 3], w[k0, c, i, 4]
                        k1 = k0 + 1
                        b0, b1, b2, b3, b4 = w[k1, c, i, 0], w[k1, c, i, 1], w[k1, c, i, 2], w[k1, c, i, 3], w[k1, c, i, 4]
                        for s in range(Lw):
                            x0, x1, x2, x3, x4 = xs[s], xs[s + 1], xs[s + 2], xs[s + 3], xs[s + 4]
                            o0[s] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4
                            o1[s] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4
                        continue
                    for k in range(k0, k0 + nk):
                        o = o0 if k == k0 else o1
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
            for k in range(k0, k0 + nk):
                o = o0 if k == k0 else o1
                bk = b[k] if b.shape[0] > 0 else zero
                ok = out[n, k]
                for p in range(P):
                    _act_row(o[p * W:p * W + Q], bk, act, ok[p], fast, zero)


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _direct_backward(gout, y, act, x, w, lo, hi, gx, gwp, gbp, need_gx, need_gw, gwide):
    # _direct_forward's backward for samples lo .. hi-1: gout (B, K, P, Q) is the gradient of act's output y
    # (any array of gout's shape when act is ACT_NONE); gx[lo:hi] overwritten, their weight gradient into gwp
    # (K, C*kh*kw) and their bias gradient into gbp (K,), overwritten. gwide (K, direct_wide(...)) holds the
    # output gradient W wide, from column kw - 1, with zeros in the junk columns, the margins and the rounding:
    # each weight's gradient is one dot product over it (window rows of 5 share the loads), and each input
    # row's gradient one pass per filter with a window row's taps fused, as the forward's (a pass per tap
    # loaded and stored the row 5x as often). Reassociation lets the sums vectorise
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, _, kh, kw = w.shape
    P, Q = gout.shape[2], gout.shape[3]
    Lw = (P - 1) * W + Q
    m = kw - 1
    Lp = gwide.shape[1] - 2 * m  # Lw rounded up: the sums' length wherever the input row has that many
    zero = gwide.dtype.type(0.0)
    one = gwide.dtype.type(1.0)
    if need_gw:
        gwp[:] = 0.0
    gbp[:] = 0.0
    gwide[:] = 0.0  # the margins and junk columns stay zero: only the valid columns are written below
    for n in range(lo, hi):
        for k in range(K):
            gk = gwide[k]
            for p in range(P):
                _act_grad_row(gout[n, k, p], y[n, k, p], act, gk[m + p * W:m + p * W + Q], zero, one)
            # the bias gradient: the whole W-wide row, whose junk columns and margins are zero, in one
            # reduction (a sum per row of Q cost a reduction's tail per row: half of LeNet c1's backward)
            acc = zero
            for e in range(gk.shape[0]):
                acc += gk[e]
            gbp[k] += acc
        if need_gw:
            xf = x[n].reshape(C * H * W)
            for k0 in range(0, K, 2):
                nk = min(2, K - k0)
                for c in range(C):
                    for i in range(kh):
                        base = (c * H + i) * W
                        # past Lw the gradient is zero; the sample's last rows stop at Lw, inside its input
                        L = Lp if base + Lp + kw - 1 <= C * H * W else Lw
                        xs = xf[base:base + L + kw - 1]
                        r = (c * kh + i) * kw
                        if kw == 5 and nk == 2:
                            # two filters' five weights of this window row at once: the input loads shared
                            g0s = gwide[k0, m:m + L]
                            g1s = gwide[k0 + 1, m:m + L]
                            a0 = a1 = a2 = a3 = a4 = zero
                            b0 = b1 = b2 = b3 = b4 = zero
                            for s in range(L):
                                g0 = g0s[s]
                                g1 = g1s[s]
                                x0, x1, x2, x3, x4 = xs[s], xs[s + 1], xs[s + 2], xs[s + 3], xs[s + 4]
                                a0 += g0 * x0
                                a1 += g0 * x1
                                a2 += g0 * x2
                                a3 += g0 * x3
                                a4 += g0 * x4
                                b0 += g1 * x0
                                b1 += g1 * x1
                                b2 += g1 * x2
                                b3 += g1 * x3
                                b4 += g1 * x4
                            ga = gwp[k0]
                            ga[r] += a0
                            ga[r + 1] += a1
                            ga[r + 2] += a2
                            ga[r + 3] += a3
                            ga[r + 4] += a4
                            gb = gwp[k0 + 1]
                            gb[r] += b0
                            gb[r + 1] += b1
                            gb[r + 2] += b2
                            gb[r + 3] += b3
                            gb[r + 4] += b4
                            continue
                        for k in range(k0, k0 + nk):
                            gk = gwide[k, m:m + L]
                            ga = gwp[k]
                            for j in range(kw):
                                xj = xs[j:j + L]
                                a = zero
                                for s in range(L):
                                    a += gk[s] * xj[s]
                                ga[r + j] += a
        if need_gx:
            # gx[c, i*W + u] += sum_j w[k, c, i, j] * g_k[u - j]: g_k shifted by the margin, so that u runs over
            # the whole row with no bounds
            gf = gx[n].reshape(C * H * W)
            gf[:] = 0.0
            U = Lw + kw - 1
            for c in range(C):
                for i in range(kh):
                    base = (c * H + i) * W
                    gs = gf[base:base + U]
                    for k0 in range(0, K, 2):
                        if kw == 5 and k0 + 1 < K:
                            # two filters at once, as the weight gradient
                            k1 = k0 + 1
                            p0 = gwide[k0]
                            p1 = gwide[k1]
                            a0, a1, a2, a3, a4 = w[k0, c, i, 0], w[k0, c, i, 1], w[k0, c, i, 2], w[k0, c, i, 3], w[k0, c, i, 4]
                            b0, b1, b2, b3, b4 = w[k1, c, i, 0], w[k1, c, i, 1], w[k1, c, i, 2], w[k1, c, i, 3], w[k1, c, i, 4]
                            for u in range(U):
                                gs[u] += (a0 * p0[u + 4] + a1 * p0[u + 3] + a2 * p0[u + 2] + a3 * p0[u + 1] + a4 * p0[u]
                                          + b0 * p1[u + 4] + b1 * p1[u + 3] + b2 * p1[u + 2] + b3 * p1[u + 1] + b4 * p1[u])
                            continue
                        for k in range(k0, min(k0 + 2, K)):
                            gp = gwide[k]
                            if kw == 3:
                                w0, w1, w2 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2]
                                for u in range(U):
                                    gs[u] += w0 * gp[u + 2] + w1 * gp[u + 1] + w2 * gp[u]
                            else:
                                for j in range(kw):
                                    wj = w[k, c, i, j]
                                    gj = gp[m - j:m - j + U]
                                    for u in range(U):
                                        gs[u] += wj * gj[u]


@njit(cache=True, error_model="numpy")
def _check_direct(x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups):
    Cg = w.shape[1]
    if (groups != 1 or stride_h != 1 or stride_w != 1 or pad_h != 0 or pad_w != 0 or dil_h != 1 or dil_w != 1
            or Cg != x.shape[1]):
        raise ValueError("conv2d_direct: only for stride 1, no padding, no dilation, groups 1")


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_direct_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, act, out, ws):
    # x (B, C, H, W), w (K, C, kh, kw), b (K,) or (0,) -> out (B, K, P, Q) = act(conv + b), act an ACT_* code;
    # conv2d_forward's other arguments and workspace, for stride 1, no padding or dilation, groups 1 (raises
    # otherwise): lanes of samples, each computing its output planes W wide in its part of ws
    _check_direct(x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    P, Q = out.shape[2], out.shape[3]
    nl = _lanes(ws.size, max((Cg * kh * kw + K) * P * Q, _CHUNK, direct_room(K, kw, P, x.shape[3], Q, False)), B)
    lane = ws.size // nl
    if nl == 1:  # no parallel region for one lane (a launch costs microseconds, and jitter, at batch 1)
        _direct_forward(x, w, b, act, np.int64(0), B, out, ws)
        return
    for t in prange(nl):
        _direct_forward(x, w, b, act, t * B // nl, (t + 1) * B // nl, out, ws[t * lane:(t + 1) * lane])


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_direct_backward(gout, y, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, act,
                           gx, gw, gb, need_gx, need_gw, ws):
    # gout (B, K, P, Q) the gradient of y = act(conv + b) (y: conv2d_direct_forward's out; any array of that
    # shape for ACT_NONE), x (B, C, H, W), w (K, C, kh, kw) -> gx like x, gw like w, gb (K,) or (0,), as
    # conv2d_backward (its workspace: each lane's partial weight and bias gradients at the end of its part)
    _check_direct(x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    ck = Cg * kh * kw
    P = gout.shape[2]
    Q = gout.shape[3]
    wide = direct_wide(kw, P, x.shape[3], Q)
    nl = _lanes(ws.size, max((2 * ck + K) * P * Q, _CHUNK, direct_room(K, kw, P, x.shape[3], Q, True)) + 2 * K * ck, B)
    lane = ws.size // nl
    if nl == 1:
        gbp = gb if gb.shape[0] > 0 else ws[K * wide:K * wide + K]
        _direct_backward(gout, y, act, x, w, np.int64(0), B, gx, _own_gw(gw, need_gw, ws, K, ck), gbp, need_gx,
                         need_gw, ws[:K * wide].reshape(K, wide))
        return
    for t in prange(nl):
        part = ws[t * lane:(t + 1) * lane]
        # the partial sums at the lane's end: its weight gradient (K * ck), then before it its bias gradient
        _direct_backward(gout, y, act, x, w, t * B // nl, (t + 1) * B // nl, gx,
                         part[part.size - K * ck:].reshape(K, ck), part[part.size - 2 * K * ck:][:K], need_gx,
                         need_gw, part[:K * wide].reshape(K, wide))
    if need_gw:
        _sum_partials(ws, nl, lane, gw.reshape(K, ck))
    if gb.shape[0] > 0:
        for k in range(K):
            acc = gb.dtype.type(0.0)
            for t in range(nl):
                acc += ws[(t + 1) * lane - 2 * K * ck + k]
            gb[k] = acc
