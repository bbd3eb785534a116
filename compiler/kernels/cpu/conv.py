"""2-D convolution (cross-correlation, as PyTorch computes it): forward and backward.

Conventions shared by every CPU kernel family (``compiler/kernels/cpu/<family>.py``):

- ``<op>_forward(...)`` / ``<op>_backward(...)`` are ``@njit(cache=True, error_model="numpy")`` and write into preallocated
  output arrays passed by the caller; they return nothing (losses return their scalar value).
- All arrays are C-contiguous with the batch axis first. Every kernel accepts float32 or float64 (one
  dispatcher, compiled per dtype; float64 is what the gradient checks use); integer arrays are int64.
  All floating arrays of one call share one dtype.
- Backward kernels OVERWRITE their gradient outputs; when a value fans out the caller accumulates.
  ``need_gx`` / ``need_gw`` flags skip gradients nobody uses (the first conv's input, a fixed filter).
- An optional parameter that is absent (``bias=false``) is passed as a zero-length array of the right dtype
  (``np.empty(0, dtype)``); its gradient output is then a zero-length array too.
- Output sizes are the caller's business (floor or ceil mode); windows reaching past the padded input are
  handled here by treating everything outside the real input as zero padding.
- Scratch memory is a 1-D workspace ``ws`` (same dtype as ``x``, contents irrelevant, may be larger than
  needed) owned by the caller's buffer plan; the pure-Python helpers ``conv2d_workspace_size`` /
  ``conv2d_backward_workspace_size`` give the element count it must hold (0 is fine: pass ``np.empty(0)``).

Strategy: the batch is split into lanes (``compiler/parallel.py``), one thread each, and every lane works
through its samples in chunks: im2col into its part of ``ws`` (sample j's columns side by side), one
single-threaded BLAS GEMM (``np.dot`` with ``out=``) for the whole chunk, so the heavy work runs in BLAS on
contiguous operands that are wide enough even for small images, and im2col / col2im run on every core as the
GEMMs do. A chunk of one sample writes its GEMM straight into the output; a 1×1, stride-1, unpadded
convolution reads its input as the column matrix with no copy. The weight gradient of each lane goes to a
partial sum of its own, added up after the lanes. The lane count is read from the workspace size (the
``*_workspace_size`` helpers take it; the default is ``parallel.lanes()``). A fixed ``(kh, kw)`` filter shared
by every channel pair is expanded by the caller to the full ``(K, C/groups, kh, kw)`` weight.
"""

import numpy as np
from netdsl.compiler.parallel import lanes as _default_lanes
from numba import njit, prange

from . import winograd as wg

# the few-filter layers' own kernels (lowering picks them; conv2d_forward/backward take the same paths)
from .conv_direct import (  # noqa: F401
    _direct_backward,
    _direct_forward,
    conv2d_direct_backward,
    conv2d_direct_forward,
    direct_lane_room,
    direct_room,
    direct_wide,
    takes_direct,
)
from .conv_few import (  # noqa: F401
    _CHUNK,
    _FEW_FILTERS,
    _bias_grad,
    _few_backward_samples,
    _few_forward_samples,
    _lanes,
    _own_gw,
    _sum_partials,
    conv2d_few_backward,
    conv2d_few_forward,
)

# a sample whose GEMM has this many multiply-adds goes through BLAS alone (straight into the output); smaller
# ones are batched into wider GEMMs
_DIRECT_MACS = 1 << 22


def _direct_room(C, K, kh, kw, P, Q, groups, sh, sw, ph, pw, dh, dw, backward):
    # conv_direct.py's direct_lane_room for the helpers, its plain Python (no compile): the input width is
    # Q + kw - 1 where the direct loops apply
    if not takes_direct.py_func(K, (C // groups) * kh * kw, groups, kh, kw, sh, sw, ph, pw, dh, dw):
        return 0
    return direct_room.py_func(K, kw, P, Q + kw - 1, Q, backward)


def _fwd_lane(C, K, kh, kw, P, Q, groups, direct=0):
    return max(((C // groups) * kh * kw + K // groups) * P * Q, _CHUNK, direct)


def _bwd_lane(C, K, kh, kw, P, Q, groups, direct=0):
    ck = (C // groups) * kh * kw
    # columns, their gradient and the transposed output gradient of a chunk (or the direct loops' planes); one
    # weight block; the partial sum
    return max((2 * ck + K) * P * Q, _CHUNK, direct) + (K // groups) * ck + K * ck


def conv2d_workspace_size(C, K, kh, kw, P, Q, groups=1, stride_h=1, stride_w=1, pad_h=0, pad_w=0,
                          dil_h=1, dil_w=1, lanes=None):
    """Elements of ``ws`` that ``conv2d_forward`` needs: per lane, one sample's columns and GEMM result at
    least (``lanes`` defaults to ``parallel.lanes()``; 0 or fewer lanes than that are fine too). A layer that
    may take the Winograd path (winograd.py) gets room for its transformed filters and lane areas too."""
    n = _default_lanes() if lanes is None else lanes
    if wg.applies(C, K, kh, kw, stride_h, stride_w, dil_h, dil_w, groups, P, Q):
        return 36 * K * C + n * max(wg.forward_lane(C, K, P, Q), _fwd_lane(C, K, kh, kw, P, Q, groups))
    direct = _direct_room(C, K, kh, kw, P, Q, groups, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, False)
    return n * _fwd_lane(C, K, kh, kw, P, Q, groups, direct)


def conv2d_backward_workspace_size(C, K, kh, kw, P, Q, groups=1, stride_h=1, stride_w=1, pad_h=0,
                                   pad_w=0, dil_h=1, dil_w=1, lanes=None):
    """Elements of ``ws`` that ``conv2d_backward`` needs: per lane, columns, their gradient, the transposed
    output gradient of a chunk of samples, one weight block and a partial weight gradient (with Winograd's
    room as in `conv2d_workspace_size`)."""
    n = _default_lanes() if lanes is None else lanes
    if wg.applies(C, K, kh, kw, stride_h, stride_w, dil_h, dil_w, groups, P, Q):
        return 36 * K * C + n * max(wg.backward_lane(C, K, P, Q), _bwd_lane(C, K, kh, kw, P, Q, groups))
    direct = _direct_room(C, K, kh, kw, P, Q, groups, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, True)
    return n * _bwd_lane(C, K, kh, kw, P, Q, groups, direct)


@njit(cache=True, error_model="numpy")
def _plan(ws_size, B, C, K, kh, kw, sh, sw, dh, dw, groups, P, Q, wino_lane, lane):
    # (lanes, use Winograd): a workspace sized for Winograd by the helpers above holds 36·K·C + n lanes of
    # max(its lane, im2col's). Where Winograd is not used, conv2d_forward/backward count their own lanes in it:
    # more than n at most (up to one per sample), and the batch is then under 32 tiles
    if wg.applies(C, K, kh, kw, sh, sw, dh, dw, groups, P, Q):
        wl = max(wino_lane, lane)
        n = (ws_size - 36 * K * C) // wl
        if n >= 1:
            big = B * ((P + 3) // 4) * ((Q + 3) // 4) >= 32  # enough tiles to amortise the filter transform
            return max(1, min(B, n)), big
    return _lanes(ws_size, lane, B), False


# Integer constants passed to a helper are written np.int64(0): a bare 0 is typed Literal[int](0), and the
# helper is then compiled twice (once for the literal, once for the lanes' int64), seconds of cold compile.

@njit(cache=True, error_model="numpy")
def _cdiv(a, b):
    # ceiling division that is right for negative numerators too (Python's // floors)
    return -((-a) // b)


@njit(cache=True, error_model="numpy")
def _im2col_valid(xb, c0, Cg, kh, kw, P, Q, cols):
    # _im2col for stride 1, no padding, no dilation (LeNet's convolutions): every run is a whole output row,
    # copied by flat offsets; the two views per run of the general path cost more than a short row's copy
    # (LeNet's 10-wide rows: 2.5x faster this way)
    H = xb.shape[1]
    W = xb.shape[2]
    xf = xb.reshape(xb.size)
    for r in range(Cg * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        crow = cols[r]
        for p in range(P):
            s = ((c0 + c) * H + p + i) * W + j
            d = p * Q
            for q in range(Q):
                crow[d + q] = xf[s + q]


@njit(cache=True, error_model="numpy")
def _im2col(xb, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols):
    # xb (C, H, W) one sample -> cols (Cg*kh*kw, P*Q) for channels c0 .. c0+Cg-1:
    # row r = (c, i, j) holds x[c0+c, p*sh - ph + i*dh, q*sw - pw + j*dw], 0 outside the input.
    # Rows and input lines are taken as 1-D views so the copies vectorise (3x faster than 2-D indexing).
    H = xb.shape[1]
    W = xb.shape[2]
    if sh == 1 and sw == 1 and ph == 0 and pw == 0 and dh == 1 and dw == 1:
        _im2col_valid(xb, c0, Cg, kh, kw, P, Q, cols)
        return
    for r in range(Cg * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        xc = xb[c0 + c]
        crow = cols[r]
        q_lo = min(Q, max(0, _cdiv(pw - j * dw, sw)))
        q_hi = max(q_lo, min(Q, _cdiv(W + pw - j * dw, sw)))
        off = j * dw - pw
        for p in range(P):
            base = p * Q
            h = p * sh - ph + i * dh
            if h < 0 or h >= H:
                for q in range(Q):
                    crow[base + q] = 0.0
                continue
            xr = xc[h]
            for q in range(q_lo):
                crow[base + q] = 0.0
            if sw == 1:
                d = crow[base + q_lo:base + q_hi]
                src = xr[q_lo + off:q_hi + off]
                for t in range(q_hi - q_lo):
                    d[t] = src[t]
            else:
                # a strided view and range(n): LLVM vectorises this form, not range(q_lo, q_hi)
                d = crow[base + q_lo:base + q_hi]
                src = xr[q_lo * sw + off::sw]
                for t in range(q_hi - q_lo):
                    d[t] = src[t]
            for q in range(q_hi, Q):
                crow[base + q] = 0.0


@njit(cache=True, error_model="numpy")
def _col2im_valid(gcols, c0, Cg, kh, kw, P, Q, gxb):
    # _col2im for stride 1, no padding, no dilation, by flat offsets as in _im2col_valid
    H = gxb.shape[1]
    W = gxb.shape[2]
    gf = gxb.reshape(gxb.size)
    for r in range(Cg * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        grow = gcols[r]
        for p in range(P):
            s = ((c0 + c) * H + p + i) * W + j
            d = p * Q
            for q in range(Q):
                gf[s + q] += grow[d + q]


@njit(cache=True, error_model="numpy")
def _col2im(gcols, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb):
    # adds gcols (Cg*kh*kw, P*Q) back into gxb (C, H, W), channels c0 .. c0+Cg-1 (1-D views, as in _im2col)
    H = gxb.shape[1]
    W = gxb.shape[2]
    if sh == 1 and sw == 1 and ph == 0 and pw == 0 and dh == 1 and dw == 1:
        _col2im_valid(gcols, c0, Cg, kh, kw, P, Q, gxb)
        return
    for c in range(Cg):
        gc = gxb[c0 + c]
        for i in range(kh):
            for j in range(kw):
                grow = gcols[(c * kh + i) * kw + j]
                q_lo = min(Q, max(0, _cdiv(pw - j * dw, sw)))
                q_hi = max(q_lo, min(Q, _cdiv(W + pw - j * dw, sw)))
                off = j * dw - pw
                for p in range(P):
                    h = p * sh - ph + i * dh
                    if h < 0 or h >= H:
                        continue
                    base = p * Q
                    gr = gc[h]
                    if sw == 1:
                        d = gr[q_lo + off:q_hi + off]
                        src = grow[base + q_lo:base + q_hi]
                        for t in range(q_hi - q_lo):
                            d[t] += src[t]
                    else:
                        d = gr[q_lo * sw + off::sw]
                        src = grow[base + q_lo:base + q_hi]
                        for t in range(q_hi - q_lo):
                            d[t] += src[t]


@njit(cache=True, error_model="numpy")
def _gather_cols(x, n0, m, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols):
    # samples n0 .. n0+m-1 of x (B, C, H, W) -> cols (Cg*kh*kw, m*P*Q), sample j in columns j*PQ ..
    PQ = P * Q
    for j in range(m):
        _im2col(x[n0 + j], c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols[:, j * PQ:(j + 1) * PQ])


@njit(cache=True, error_model="numpy")
def _forward_samples(x, w2, b, sh, sw, ph, pw, dh, dw, groups, Cg, kh, kw, lo, hi, out, ws):
    # samples lo .. hi-1 of x -> out, with ws one lane's scratch
    K = w2.shape[0]
    ck = w2.shape[1]
    P = out.shape[2]
    Q = out.shape[3]
    PQ = P * Q
    Kg = K // groups
    identity = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and groups == 1
    nb = max(1, min(hi - lo, ws.size // ((ck + Kg) * PQ)))
    few = groups == 1 and K < _FEW_FILTERS and not identity
    if takes_direct(K, ck, groups, kh, kw, sh, sw, ph, pw, dh, dw):
        _direct_forward(x, w2.reshape(K, Cg, kh, kw), b, np.int64(0), lo, hi, out, ws)
        return
    if few:
        _few_forward_samples(x, w2, b, sh, sw, ph, pw, dh, dw, kh, kw, lo, hi, out, ws)
        return
    if groups == 1 and PQ >= 256 and K * ck * PQ >= _DIRECT_MACS:
        nb = 1  # large enough alone: the GEMM writes the output directly
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        L = m * PQ
        if m == 1 and groups == 1:
            o = out[n0].reshape(K, PQ)
            if identity:
                np.dot(w2, x[n0].reshape(ck, PQ), o)
            else:
                cols = ws[0:ck * PQ].reshape(ck, PQ)
                # through _gather_cols, so _im2col is compiled once (for its column-slice type), not twice
                _gather_cols(x, n0, np.int64(1), np.int64(0), Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols)
                np.dot(w2, cols, o)
            if b.shape[0] > 0:
                for k in range(K):
                    bk = b[k]
                    ok = o[k]
                    for s in range(PQ):
                        ok[s] += bk
            continue
        cols = ws[0:ck * L].reshape(ck, L)
        res = ws[ck * L:ck * L + Kg * L].reshape(Kg, L)
        for g in range(groups):
            _gather_cols(x, n0, m, g * Cg, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols)
            np.dot(w2[g * Kg:(g + 1) * Kg], cols, res)
            for j in range(m):
                oj = out[n0 + j].reshape(K, PQ)
                for k in range(Kg):
                    bk = b[g * Kg + k] if b.shape[0] > 0 else 0.0
                    src = res[k]
                    dst = oj[g * Kg + k]
                    for s in range(PQ):
                        dst[s] = src[j * PQ + s] + bk


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws):
    # x (B, C, H, W), w (K, C/g, kh, kw), b (K,) or (0,) -> out (B, K, P, Q); ws >= conv2d_workspace_size
    # Lanes of samples in parallel, each with ws // lanes of scratch (a smaller workspace than the helpers give
    # still works: smaller chunks, fewer lanes). The lanes are this kernel's own loop, not a helper's: Numba
    # re-optimises every callee's code in each caller, so each level of calls costs seconds of cold compile
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    P, Q = out.shape[2], out.shape[3]
    direct = direct_lane_room(K, Cg * kh * kw, groups, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, P,
                              x.shape[3], Q, False)
    nl = _lanes(ws.size, max((Cg * kh * kw + K // groups) * P * Q, _CHUNK, direct), B)
    w2 = w.reshape(K, Cg * kh * kw)
    lane = ws.size // nl
    if nl == 1:  # no parallel region for one lane (a launch costs microseconds, and jitter, at batch 1)
        _forward_samples(x, w2, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, Cg, kh, kw, np.int64(0), B,
                         out, ws)
        return
    for t in prange(nl):
        _forward_samples(x, w2, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, Cg, kh, kw, t * B // nl,
                         (t + 1) * B // nl, out, ws[t * lane:(t + 1) * lane])


@njit(cache=True, error_model="numpy")
def conv2d_winograd_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws):
    # conv2d_forward for the layers `winograd.applies` to (lowering picks it; compiling it costs seconds that
    # networks without such a layer, LeNet's, should not pay): Winograd when the batch has tiles enough, else
    # im2col from the same workspace
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    P = out.shape[2]
    Q = out.shape[3]
    C = x.shape[1]
    nl, wino = _plan(ws.size, B, C, K, kh, kw, stride_h, stride_w, dil_h, dil_w, groups, P, Q,
                     wg.forward_lane(C, K, P, Q), max((Cg * kh * kw + K // groups) * P * Q, _CHUNK))
    if wino:
        wg.winograd_forward(x, w, b, pad_h, pad_w, nl, out, ws)
    else:  # a batch too small for Winograd (under 32 tiles): im2col counts its own lanes in the same workspace
        conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws)


@njit(cache=True, error_model="numpy")
def _backward_samples(gout, x, w2, sh, sw, ph, pw, dh, dw, groups, Cg, kh, kw, lo, hi, gx, gwp, need_gx,
                      need_gw, ws):
    # samples lo .. hi-1: gx[lo:hi] (overwritten) and their weight gradient into gwp (K, ck), overwritten;
    # ws is one lane's scratch less its partial sum
    K = w2.shape[0]
    ck = w2.shape[1]
    P = gout.shape[2]
    Q = gout.shape[3]
    PQ = P * Q
    Kg = K // groups
    identity = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and groups == 1
    tmpw = ws[ws.size - Kg * ck:].reshape(Kg, ck)
    nb = max(1, min(hi - lo, (ws.size - Kg * ck) // ((2 * ck + K) * PQ)))
    few = groups == 1 and K < _FEW_FILTERS and not identity
    if takes_direct(K, ck, groups, kh, kw, sh, sw, ph, pw, dh, dw):
        wide = direct_wide(kw, P, x.shape[3], Q)  # the output gradient W wide, with margins
        # the bias gradient is conv2d_backward's own pass (the lane's sums go to scratch after its columns)
        _direct_backward(gout, gout, np.int64(0), x, w2.reshape(K, Cg, kh, kw), lo, hi, gx, gwp,
                         ws[K * wide:K * wide + K], need_gx, need_gw, ws[:K * wide].reshape(K, wide))
        return
    if few:
        _few_backward_samples(gout, x, w2, sh, sw, ph, pw, dh, dw, kh, kw, lo, hi, gx, gwp, need_gx, need_gw, ws)
        return
    if groups == 1 and PQ >= 256 and K * ck * PQ >= _DIRECT_MACS:
        nb = 1
    if need_gw and hi <= lo:
        gwp[:] = 0.0
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        L = m * PQ
        cols = ws[0:ck * L].reshape(ck, L)
        gcols = ws[ck * L:2 * ck * L].reshape(ck, L)
        if m == 1:
            gT = gout[n0].reshape(K, PQ)
        else:
            gT = ws[2 * ck * L:2 * ck * L + K * L].reshape(K, L)
            for j in range(m):
                gj = gout[n0 + j].reshape(K, PQ)
                for k in range(K):
                    dst = gT[k]
                    src = gj[k]
                    for s in range(PQ):
                        dst[j * PQ + s] = src[s]
        for g in range(groups):
            go = gT[g * Kg:(g + 1) * Kg]
            if need_gw:
                if identity and m == 1:
                    src = x[n0].reshape(ck, PQ)
                else:
                    _gather_cols(x, n0, m, g * Cg, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols)
                    src = cols
                gwg = gwp[g * Kg:(g + 1) * Kg]
                if n0 == lo:
                    np.dot(go, src.T, gwg)
                else:
                    np.dot(go, src.T, tmpw)
                    for k in range(Kg):
                        a = gwg[k]
                        t = tmpw[k]
                        for r in range(ck):
                            a[r] += t[r]
            if need_gx:
                if identity and m == 1:
                    np.dot(w2.T, go, gx[n0].reshape(ck, PQ))
                    continue
                np.dot(w2[g * Kg:(g + 1) * Kg].T, go, gcols)
                for j in range(m):
                    if g == 0:
                        gx[n0 + j][:] = 0.0
                    _col2im(gcols[:, j * PQ:(j + 1) * PQ], g * Cg, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q,
                            gx[n0 + j])


@njit(cache=True, error_model="numpy", parallel=True)
def conv2d_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                    gx, gw, gb, need_gx, need_gw, ws):
    # gout (B, K, P, Q), x (B, C, H, W), w (K, C/g, kh, kw) -> gx like x, gw like w, gb (K,) or (0,)
    # ws >= conv2d_backward_workspace_size; lanes of samples run in parallel (as conv2d_forward), each with its
    # partial weight gradient at the end of its part of ws
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    ck = Cg * kh * kw
    P, Q = gout.shape[2], gout.shape[3]
    direct = direct_lane_room(K, ck, groups, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, P, x.shape[3],
                              Q, True)
    nl = _lanes(ws.size, max((2 * ck + K) * P * Q, _CHUNK, direct) + (K // groups) * ck + K * ck, B)
    if gb.shape[0] > 0:
        _bias_grad(gout, gb)
    w2 = w.reshape(K, ck)
    lane = ws.size // nl
    if nl == 1:  # as conv2d_forward
        _backward_samples(gout, x, w2, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, Cg, kh, kw, np.int64(0),
                          B, gx, _own_gw(gw, need_gw, ws, K, ck), need_gx, need_gw, ws[:lane - K * ck])
        return
    for t in prange(nl):
        part = ws[t * lane:(t + 1) * lane]
        gwp = part[part.size - K * ck:].reshape(K, ck)
        _backward_samples(gout, x, w2, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, Cg, kh, kw,
                          t * B // nl, (t + 1) * B // nl, gx, gwp, need_gx, need_gw, part[:part.size - K * ck])
    if need_gw:
        _sum_partials(ws, nl, lane, gw.reshape(K, ck))


@njit(cache=True, error_model="numpy")
def conv2d_winograd_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                             gx, gw, gb, need_gx, need_gw, ws):
    # conv2d_backward for the layers `winograd.applies` to (as conv2d_winograd_forward)
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    P = gout.shape[2]
    Q = gout.shape[3]
    ck = Cg * kh * kw
    C = x.shape[1]
    nl, wino = _plan(ws.size, B, C, K, kh, kw, stride_h, stride_w, dil_h, dil_w, groups, P, Q,
                     wg.backward_lane(C, K, P, Q),
                     max((2 * ck + K) * P * Q, _CHUNK) + (K // groups) * ck + K * ck)
    if wino:
        if gb.shape[0] > 0:
            _bias_grad(gout, gb)
        wg.winograd_backward(gout, x, w, pad_h, pad_w, nl, gx, gw, need_gx, need_gw, ws)
    else:  # as conv2d_winograd_forward
        conv2d_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, gx, gw, gb, need_gx,
                        need_gw, ws)
