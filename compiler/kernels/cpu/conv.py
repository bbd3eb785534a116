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

Strategy: for a chunk of samples and each group, im2col into ``ws`` (sample j's columns side by side) then one
BLAS GEMM (``np.dot`` with ``out=``) for the whole chunk, so the heavy work runs in BLAS on contiguous operands
that are wide enough even for small images. A fixed ``(kh, kw)`` filter shared by every
channel pair is expanded by the caller to the full ``(K, C/groups, kh, kw)`` weight. im2col / col2im run their
rows in parallel (prange) once a sample's column matrix is large enough to repay a thread launch; BLAS brings
its own threads, so no prange surrounds a GEMM.
"""

import numpy as np
from numba import njit, prange

# elements of workspace a chunk of samples may fill: several samples' columns go through one GEMM, which
# keeps BLAS busy on small images (LeNet, the 4×4 stage of a CIFAR ResNet) while staying cache-sized
_CHUNK = 1 << 20


def conv2d_workspace_size(C, K, kh, kw, P, Q, groups=1, stride_h=1, stride_w=1, pad_h=0, pad_w=0,
                          dil_h=1, dil_w=1):
    """Elements of ``ws`` that ``conv2d_forward`` needs: one sample's columns and GEMM result, at least."""
    per = ((C // groups) * kh * kw + K // groups) * P * Q
    return max(per, _CHUNK)


def conv2d_backward_workspace_size(C, K, kh, kw, P, Q, groups=1, stride_h=1, stride_w=1, pad_h=0,
                                   pad_w=0, dil_h=1, dil_w=1):
    """Elements of ``ws`` that ``conv2d_backward`` needs: columns, their gradient, the transposed output
    gradient for a chunk of samples, and one weight block."""
    ck = (C // groups) * kh * kw
    return max((2 * ck + K) * P * Q, _CHUNK) + (K // groups) * ck


# parallel loops only above this many elements: a prange launch costs milliseconds when the cores are busy
# (measured 10x slower im2col under load), and BLAS already runs the big GEMMs on every core
_PAR_MIN = 1 << 22


@njit(cache=True, error_model="numpy")
def _cdiv(a, b):
    # ceiling division that is right for negative numerators too (Python's // floors)
    return -((-a) // b)


@njit(cache=True, error_model="numpy")
def _im2col_row(xb, r, c0, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols):
    # row r = (c, i, j) of cols (Cg*kh*kw, P*Q): x[c0+c, p*sh - ph + i*dh, q*sw - pw + j*dw], 0 outside
    H = xb.shape[1]
    W = xb.shape[2]
    c = r // (kh * kw)
    i = (r // kw) % kh
    j = r % kw
    xc = xb[c0 + c]
    q_lo = min(Q, max(0, _cdiv(pw - j * dw, sw)))
    q_hi = max(q_lo, min(Q, _cdiv(W + pw - j * dw, sw)))
    off = j * dw - pw
    for p in range(P):
        base = p * Q
        h = p * sh - ph + i * dh
        if h < 0 or h >= H:
            for q in range(Q):
                cols[r, base + q] = 0.0
            continue
        for q in range(q_lo):
            cols[r, base + q] = 0.0
        for q in range(q_lo, q_hi):
            cols[r, base + q] = xc[h, q * sw + off]
        for q in range(q_hi, Q):
            cols[r, base + q] = 0.0


@njit(cache=True, error_model="numpy", parallel=True)
def _im2col_par(xb, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols):
    for r in prange(Cg * kh * kw):
        _im2col_row(xb, r, c0, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols)


@njit(cache=True, error_model="numpy")
def _im2col(xb, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols):
    # xb (C, H, W) one sample -> cols (Cg*kh*kw, P*Q) for channels c0 .. c0+Cg-1
    if cols.size >= _PAR_MIN:
        _im2col_par(xb, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols)
    else:
        for r in range(Cg * kh * kw):
            _im2col_row(xb, r, c0, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols)


@njit(cache=True, error_model="numpy")
def _col2im_channel(gcols, c, c0, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb):
    # adds rows (c, :, :) of gcols into channel c0+c of gxb (C, H, W)
    H = gxb.shape[1]
    W = gxb.shape[2]
    gc = gxb[c0 + c]
    for i in range(kh):
        for j in range(kw):
            r = (c * kh + i) * kw + j
            q_lo = min(Q, max(0, _cdiv(pw - j * dw, sw)))
            q_hi = max(q_lo, min(Q, _cdiv(W + pw - j * dw, sw)))
            off = j * dw - pw
            for p in range(P):
                h = p * sh - ph + i * dh
                if h < 0 or h >= H:
                    continue
                base = p * Q
                for q in range(q_lo, q_hi):
                    gc[h, q * sw + off] += gcols[r, base + q]


@njit(cache=True, error_model="numpy", parallel=True)
def _col2im_par(gcols, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb):
    # one channel per thread, so no write races
    for c in prange(Cg):
        _col2im_channel(gcols, c, c0, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb)


@njit(cache=True, error_model="numpy")
def _col2im(gcols, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb):
    # adds gcols (Cg*kh*kw, P*Q) back into gxb (C, H, W), channels c0 .. c0+Cg-1
    if gcols.size >= _PAR_MIN:
        _col2im_par(gcols, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb)
    else:
        for c in range(Cg):
            _col2im_channel(gcols, c, c0, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, gxb)


@njit(cache=True, error_model="numpy")
def _gather_cols(x, n0, m, c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols):
    # samples n0 .. n0+m-1 of x (B, C, H, W) -> cols (Cg*kh*kw, m*P*Q), sample j in columns j*PQ ..
    PQ = P * Q
    for j in range(m):
        _im2col(x[n0 + j], c0, Cg, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, cols[:, j * PQ:(j + 1) * PQ])


@njit(cache=True, error_model="numpy")
def conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws):
    # x (B, C, H, W), w (K, C/g, kh, kw), b (K,) or (0,) -> out (B, K, P, Q); ws >= conv2d_workspace_size
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    P = out.shape[2]
    Q = out.shape[3]
    PQ = P * Q
    Kg = K // groups
    ck = Cg * kh * kw
    w2 = w.reshape(K, ck)
    nb = max(1, min(B, ws.size // ((ck + Kg) * PQ)))
    for n0 in range(0, B, nb):
        m = min(nb, B - n0)
        L = m * PQ
        cols = ws[0:ck * L].reshape(ck, L)
        res = ws[ck * L:ck * L + Kg * L].reshape(Kg, L)
        for g in range(groups):
            _gather_cols(x, n0, m, g * Cg, Cg, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, P, Q, cols)
            np.dot(w2[g * Kg:(g + 1) * Kg], cols, res)
            for j in range(m):
                oj = out[n0 + j].reshape(K, PQ)
                for k in range(Kg):
                    bk = b[g * Kg + k] if b.shape[0] > 0 else 0.0
                    src = res[k]
                    dst = oj[g * Kg + k]
                    for s in range(PQ):
                        dst[s] = src[j * PQ + s] + bk


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
def conv2d_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                    gx, gw, gb, need_gx, need_gw, ws):
    # gout (B, K, P, Q), x (B, C, H, W), w (K, C/g, kh, kw) -> gx like x, gw like w, gb (K,) or (0,)
    # ws >= conv2d_backward_workspace_size; a chunk of samples shares each GEMM
    B = x.shape[0]
    K, Cg, kh, kw = w.shape
    P = gout.shape[2]
    Q = gout.shape[3]
    PQ = P * Q
    Kg = K // groups
    ck = Cg * kh * kw
    w2 = w.reshape(K, ck)
    # gx / gw may be zero-size placeholders when not needed, so only reshape what is used
    gw2 = gw.reshape(K, ck) if need_gw else w2
    tmpw = ws[ws.size - Kg * ck:].reshape(Kg, ck)
    nb = max(1, min(B, (ws.size - Kg * ck) // ((2 * ck + K) * PQ)))
    if gb.shape[0] > 0:
        _bias_grad(gout, gb)
    if need_gx:
        gx[:] = 0.0
    for n0 in range(0, B, nb):
        m = min(nb, B - n0)
        L = m * PQ
        cols = ws[0:ck * L].reshape(ck, L)
        gcols = ws[ck * L:2 * ck * L].reshape(ck, L)
        gT = ws[2 * ck * L:2 * ck * L + K * L].reshape(K, L)
        for j in range(m):
            gj = gout[n0 + j].reshape(K, PQ)
            for k in range(K):
                for s in range(PQ):
                    gT[k, j * PQ + s] = gj[k, s]
        for g in range(groups):
            go = gT[g * Kg:(g + 1) * Kg]
            if need_gw:
                _gather_cols(x, n0, m, g * Cg, Cg, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                             P, Q, cols)
                gwg = gw2[g * Kg:(g + 1) * Kg]
                if n0 == 0:
                    np.dot(go, cols.T, gwg)
                else:
                    np.dot(go, cols.T, tmpw)
                    for k in range(Kg):
                        for r in range(ck):
                            gwg[k, r] += tmpw[k, r]
            if need_gx:
                np.dot(w2[g * Kg:(g + 1) * Kg].T, go, gcols)
                for j in range(m):
                    _col2im(gcols[:, j * PQ:(j + 1) * PQ], g * Cg, Cg, kh, kw, stride_h, stride_w, pad_h, pad_w,
                            dil_h, dil_w, P, Q, gx[n0 + j])
