"""Pooling kernels: maxpool2d, avgpool2d, global_avgpool — forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, batch axis first; float32 or float64 (one dtype per call); integer
  arrays (argmax) are int64.
- Backward kernels OVERWRITE their gradient outputs (fan-out accumulation is the caller's job).
- Output sizes P, Q are computed by the caller (floor or ceil mode) and read from ``out.shape``. Windows may
  reach past the padded input in ceil mode; as in PyTorch, such windows just see fewer elements.

Semantics follow PyTorch: maxpool pads with -inf and records, per output, the flat index ``h * W + w`` of the
winning element in its input plane (first maximum wins; a NaN wins, as in PyTorch); avgpool counts padding
(count_include_pad=True) and divides by the window clipped to the padded input (PyTorch's ceil-mode rule).

Forwards run planes in parallel (prange) once the input is large enough to repay a thread launch.
"""

import math

import numpy as np
from numba import njit, prange

from ._common import LANES

# below this many input elements a prange launch costs more than it saves
_PAR_MIN = 1 << 17
# Reductions may be reassociated so LLVM can vectorise the sums; this flag alone assumes nothing about NaN or
# infinities, which keep propagating as usual.
_REASSOC = {"reassoc", "contract"}


@njit(cache=True, error_model="numpy")
def _maxpool_plane(xc, kh, kw, stride_h, stride_w, pad_h, pad_w, oc, ac):
    # one (H, W) plane -> (P, Q) maxima and their flat indices
    H, W = xc.shape
    P, Q = oc.shape
    for p in range(P):
        h0 = p * stride_h - pad_h
        h1 = min(h0 + kh, H)
        h0 = max(h0, 0)
        for q in range(Q):
            w0 = q * stride_w - pad_w
            w1 = min(w0 + kw, W)
            w0 = max(w0, 0)
            if h0 >= h1 or w0 >= w1:  # a window entirely in padding (the caller's sizes should prevent it)
                oc[p, q] = -math.inf
                ac[p, q] = -1
                continue
            best = xc[h0, w0]
            idx = h0 * W + w0
            for h in range(h0, h1):
                for w in range(w0, w1):
                    v = xc[h, w]
                    if v > best or math.isnan(v):  # strictly greater keeps the first maximum; NaN wins
                        best = v
                        idx = h * W + w
            oc[p, q] = best
            ac[p, q] = idx


@njit(cache=True, error_model="numpy", parallel=True)
def _maxpool_par(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out, argmax):
    C = x.shape[1]
    for bc in prange(x.shape[0] * C):
        b = bc // C
        c = bc % C
        _maxpool_plane(x[b, c], kh, kw, stride_h, stride_w, pad_h, pad_w, out[b, c], argmax[b, c])


@njit(cache=True, error_model="numpy")
def maxpool2d_forward(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out, argmax):
    # x (B, C, H, W) -> out (B, C, P, Q), argmax (B, C, P, Q) int64 flat index into x[b, c] (-1: empty window)
    if x.size >= _PAR_MIN:
        _maxpool_par(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out, argmax)
        return
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            _maxpool_plane(x[b, c], kh, kw, stride_h, stride_w, pad_h, pad_w, out[b, c], argmax[b, c])


@njit(cache=True, error_model="numpy")
def maxpool2d_backward(gout, argmax, gx):
    # gout (B, C, P, Q), argmax (B, C, P, Q) int64 -> gx (B, C, H, W); overlapping windows add up
    B, C, H, W = gx.shape
    P = gout.shape[2]
    Q = gout.shape[3]
    gx[:] = 0.0
    for b in range(B):
        for c in range(C):
            gflat = gx[b, c].reshape(H * W)
            for p in range(P):
                for q in range(Q):
                    i = argmax[b, c, p, q]
                    if i >= 0:
                        gflat[i] += gout[b, c, p, q]


@njit(cache=True, error_model="numpy")
def _window(p, stride, pad, k, n):
    # clipped window [lo, hi) and PyTorch's divisor part: the window clipped to the padded extent only
    lo = p * stride - pad
    hi = min(lo + k, n + pad)
    size = hi - lo
    return max(lo, 0), min(hi, n), size


@njit(cache=True, error_model="numpy")
def _interior(H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w):
    # every window lies inside the unpadded input (LeNet's and most networks' pools): one divisor, no clipping
    return pad_h == 0 and pad_w == 0 and (P - 1) * stride_h + kh <= H and (Q - 1) * stride_w + kw <= W


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _avgpool_plane(xc, kh, kw, stride_h, stride_w, pad_h, pad_w, oc):
    H, W = xc.shape
    P, Q = oc.shape
    if _interior(H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w):
        # window rows are added into the output row, q innermost, so the loops vectorise (6x the clipped form)
        inv = 1.0 / (kh * kw)
        for p in range(P):
            orow = oc[p]
            orow[:] = 0.0
            for i in range(kh):
                xr = xc[p * stride_h + i]
                for j in range(kw):
                    for q in range(Q):
                        orow[q] += xr[q * stride_w + j]
            for q in range(Q):
                orow[q] *= inv
        return
    for p in range(P):
        h0, h1, sh = _window(p, stride_h, pad_h, kh, H)
        for q in range(Q):
            w0, w1, sw = _window(q, stride_w, pad_w, kw, W)
            acc = 0.0
            for h in range(h0, h1):
                for w in range(w0, w1):
                    acc += xc[h, w]
            oc[p, q] = acc / (sh * sw)


@njit(cache=True, error_model="numpy")
def _avgpool2x2_rows(x2, o2, H, P, r0, r1):
    # output rows r0 .. r1-1 of the (B*C*P, Q) view from input rows of the (B*C*H, W) view, 2x2 windows
    Q = o2.shape[1]
    for r in range(r0, r1):
        h = (r // P) * H + 2 * (r % P)
        a = x2[h]
        b = x2[h + 1]
        o = o2[r]
        for q in range(Q):
            o[q] = (a[2 * q] + a[2 * q + 1] + b[2 * q] + b[2 * q + 1]) * 0.25


@njit(cache=True, error_model="numpy", parallel=True)
def avgpool2d_forward(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out):
    # x (B, C, H, W) -> out (B, C, P, Q); divisor counts padding but not the ceil-mode overhang.
    # Lanes (one when the input is small) are this kernel's own loops, not a parallel helper's: each level of
    # calls costs a cold compile of everything below it (see conv2d_forward)
    B, C, H, W = x.shape
    P = out.shape[2]
    Q = out.shape[3]
    nl = LANES if x.size >= _PAR_MIN else 1
    if kh == 2 and kw == 2 and stride_h == 2 and stride_w == 2 and _interior(H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w):
        # the classic 2x2 pool as one loop over all output rows: planes of a few elements cost no call each
        x2 = x.reshape(B * C * H, W)
        o2 = out.reshape(B * C * P, Q)
        n = o2.shape[0]
        if nl == 1:  # no parallel region for one lane
            _avgpool2x2_rows(x2, o2, H, P, np.int64(0), n)
            return
        for lane in prange(nl):
            _avgpool2x2_rows(x2, o2, H, P, lane * n // nl, (lane + 1) * n // nl)
        return
    n = B * C
    if nl == 1:
        for bc in range(n):
            _avgpool_plane(x[bc // C, bc % C], kh, kw, stride_h, stride_w, pad_h, pad_w, out[bc // C, bc % C])
        return
    for lane in prange(nl):
        for bc in range(lane * n // nl, (lane + 1) * n // nl):
            _avgpool_plane(x[bc // C, bc % C], kh, kw, stride_h, stride_w, pad_h, pad_w, out[bc // C, bc % C])


@njit(cache=True, error_model="numpy")
def _avgpool2x2_bwd_rows(g2, x2, H, P, r0, r1):
    # rows r0 .. r1-1 of the (B*C*P, Q) gradient view, each spread over its 2x2 windows in the (B*C*H, W) view
    Q = g2.shape[1]
    quarter = g2.dtype.type(0.25)  # in the data's dtype: a float64 constant would widen the loop
    for r in range(r0, r1):
        h = (r // P) * H + 2 * (r % P)
        a = x2[h]
        b = x2[h + 1]
        g = g2[r]
        for q in range(Q):
            v = g[q] * quarter
            a[2 * q] = v
            a[2 * q + 1] = v
            b[2 * q] = v
            b[2 * q + 1] = v


@njit(cache=True, error_model="numpy", parallel=True)
def _avgpool2x2_bwd_lanes(g2, x2, H, P):
    n = g2.shape[0]
    for lane in prange(LANES):
        _avgpool2x2_bwd_rows(g2, x2, H, P, lane * n // LANES, (lane + 1) * n // LANES)


@njit(cache=True, error_model="numpy")
def avgpool2d_backward(gout, kh, kw, stride_h, stride_w, pad_h, pad_w, gx):
    # gout (B, C, P, Q) -> gx (B, C, H, W)
    B, C, H, W = gx.shape
    P = gout.shape[2]
    Q = gout.shape[3]
    if kh == 2 and kw == 2 and stride_h == 2 and stride_w == 2 and _interior(H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w):
        if H != 2 * P or W != 2 * Q:
            gx[:] = 0.0  # a floor-mode pool leaves the last row or column out
        g2 = gout.reshape(B * C * P, Q)
        x2 = gx.reshape(B * C * H, W)
        n = g2.shape[0]
        if gx.size < _PAR_MIN:
            _avgpool2x2_bwd_rows(g2, x2, H, P, np.int64(0), n)
        else:  # LeNet's s2 at batch 64: 0.25 ms on one lane, behind a convolution's backward that left it cold
            _avgpool2x2_bwd_lanes(g2, x2, H, P)
        return
    gx[:] = 0.0
    if _interior(H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w):
        inv = 1.0 / (kh * kw)
        for b in range(B):
            for c in range(C):
                gc = gx[b, c]
                go = gout[b, c]
                for p in range(P):
                    grow = go[p]
                    for i in range(kh):
                        gr = gc[p * stride_h + i]
                        for j in range(kw):
                            for q in range(Q):
                                gr[q * stride_w + j] += grow[q] * inv
        return
    for b in range(B):
        for c in range(C):
            gc = gx[b, c]
            for p in range(P):
                h0, h1, sh = _window(p, stride_h, pad_h, kh, H)
                for q in range(Q):
                    w0, w1, sw = _window(q, stride_w, pad_w, kw, W)
                    g = gout[b, c, p, q] / (sh * sw)
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            gc[h, w] += g


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def global_avgpool_forward(x, out):
    # x (B, C, S) (the caller's (B, C, H*W) view) -> out (B, C)
    B, C, S = x.shape
    for b in range(B):
        for c in range(C):
            acc = 0.0
            for s in range(S):
                acc += x[b, c, s]
            out[b, c] = acc / S


@njit(cache=True, error_model="numpy")
def global_avgpool_backward(gout, gx):
    # gout (B, C) -> gx (B, C, S)
    B, C, S = gx.shape
    for b in range(B):
        for c in range(C):
            g = gout[b, c] / S
            for s in range(S):
                gx[b, c, s] = g
