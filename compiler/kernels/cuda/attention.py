"""Multi-head scaled dot-product attention with its q/k/v/out projections on the device: forward and backward.

Same functions, signatures, save buffers and semantics as ``kernels/cpu/attention.py``, on device arrays.

Every product is the tiled GEMM of ``_common``: the four projections over all B·T rows at once (bias fused),
and the per-head products batched over (batch, head) in one launch each — a head's columns of Q, K, V and
the context are read and written in place through strides (no copies into scratch). The softmax (with the
causal mask and the 1/sqrt(d_k) scale) runs one block per score row.

Backward loops over the heads on the host (five launches per head, each batched over the samples) so that
one head's score gradient fits in ``ws``, whose layout here is: gQ (B, Tq, D) | gK (B, Tk, D) | gV (B, Tk, D)
| gP (B, Tq, Tk) (see ``attention_backward_workspace_size``; the lowering's per-example workspace holds it). As on the CPU, the context
gradient is computed into gQ's buffer: head h's columns are read before the same columns of gQ are written.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from ._common import RED, Mat, _block_max, _block_sum, flat, gemm, kernel, launch_blocks, mat, sum_lines


def attention_forward_workspace_size(B, Tq, Tk, D, heads, lanes=None):
    """Elements of ``ws`` for ``attention_forward`` on the device: none (heads are read through strides; the
    CPU's lanes do not apply)."""
    return 0


def attention_backward_workspace_size(B, Tq, Tk, D, heads):
    """Elements of ``ws`` for ``attention_backward``: gQ, gK, gV and one head's gP for every sample (at least
    the CPU's size; the lowering's per-example sizing covers both)."""
    dk = D // heads
    cpu = B * Tq * D + 2 * B * Tk * D + 3 * Tq * dk + 4 * Tk * dk + Tq * Tk
    return max(cpu, B * Tq * D + 2 * B * Tk * D + B * Tq * Tk)


def _check(Tq, Tk, D, heads, causal, wk, wv, wo):
    if heads <= 0 or D % heads != 0:
        raise ValueError("attention: width not divisible by heads")
    if causal and Tq != Tk:
        raise ValueError("attention: causal needs as many queries as keys")
    if wk.shape[0] != D or wv.shape[0] != D or wo.shape[0] != D or wo.shape[1] != D:
        raise ValueError("attention: projection widths disagree with q's")


@kernel
def _softmax_rows(P, rows, Tq, Tk, scale, causal):
    # P rows of length Tk (row r is query i = r % Tq): P = softmax(P * scale) over the visible keys
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        base = r * Tk
        n = (r % Tq) + 1 if causal else Tk
        m = -math.inf
        for j in range(t, n, RED):
            v = float(P[base + j]) * scale
            if v > m or math.isnan(v):
                m = v
        m = _block_max(sh, m)
        s = 0.0
        for j in range(t, n, RED):
            e = math.exp(float(P[base + j]) * scale - m)
            P[base + j] = e
            s += e
        s = _block_sum(sh, s)
        rs = 1.0 / s
        for j in range(t, Tk, RED):
            if j < n:
                P[base + j] = P[base + j] * rs
            else:
                P[base + j] = 0.0


@kernel
def _softmax_rows_bwd(gP, P, h, H, rows, Tq, Tk, scale):
    # gP (B, Tq, Tk) for head h, P saved (B, H, Tq, Tk): gP = P * (gP - rowsum(gP * P)) * scale
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        b = r // Tq
        i = r - b * Tq
        gbase = r * Tk
        pbase = ((b * H + h) * Tq + i) * Tk
        s = 0.0
        for j in range(t, Tk, RED):
            s += float(gP[gbase + j]) * float(P[pbase + j])
        s = _block_sum(sh, s)
        for j in range(t, Tk, RED):
            pv = float(P[pbase + j])
            gP[gbase + j] = pv * (float(gP[gbase + j]) - s) * scale


def attention_forward(q_in, k_in, v_in, wq, bq, wk, bk, wv, bv, wo, bo, heads, causal,
                      out, saveQ, saveK, saveV, saveP, saveCtx, ws):
    # q_in (B, Tq, Dq), k_in (B, Tk, Dk), v_in (B, Tk, Dv); wq (D, Dq), wk (D, Dk), wv (D, Dv), wo (D, D),
    # biases (D,) or (0,) -> out (B, Tq, D); saveQ/saveCtx (B, Tq, D), saveK/saveV (B, Tk, D),
    # saveP (B, heads, Tq, Tk); ws unused
    B, Tq, Dq = q_in.shape
    Tk = k_in.shape[1]
    D = wq.shape[0]
    _check(Tq, Tk, D, heads, causal, wk, wv, wo)
    H = heads
    dk = D // H
    gemm(mat(q_in), mat(wq, trans=True), mat(saveQ), B * Tq, D, Dq, bias=bq)
    gemm(mat(k_in), mat(wk, trans=True), mat(saveK), B * Tk, D, k_in.shape[2], bias=bk)
    gemm(mat(v_in), mat(wv, trans=True), mat(saveV), B * Tk, D, v_in.shape[2], bias=bv)
    # scores: P[b, h] = Q_h K_h^T, Q_h = columns h*dk.. of saveQ[b]
    gemm(Mat(saveQ, 0, Tq * D, dk, 0, D, 1), Mat(saveK, 0, Tk * D, dk, 0, 1, D),
         Mat(saveP, 0, H * Tq * Tk, Tq * Tk, 0, Tk, 1), Tq, Tk, dk, Z=B * H, Z2=H)
    launch_blocks(_softmax_rows, B * H * Tq, flat(saveP), B * H * Tq, Tq, Tk, 1.0 / math.sqrt(dk), bool(causal))
    # context: ctx[b, :, head h] = P[b, h] @ V_h
    gemm(Mat(saveP, 0, H * Tq * Tk, Tq * Tk, 0, Tk, 1), Mat(saveV, 0, Tk * D, dk, 0, D, 1),
         Mat(saveCtx, 0, Tq * D, dk, 0, D, 1), Tq, dk, Tk, Z=B * H, Z2=H)
    gemm(mat(saveCtx), mat(wo, trans=True), mat(out), B * Tq, D, D, bias=bo)


def attention_backward(gout, q_in, k_in, v_in, wq, wk, wv, wo, heads, saveQ, saveK, saveV, saveP, saveCtx,
                       gq_in, gk_in, gv_in, gwq, gbq, gwk, gbk, gwv, gbv, gwo, gbo,
                       need_gq, need_gk, need_gv, ws):
    # gout (B, Tq, D); inputs, weights and save buffers as in forward -> gq_in (B, Tq, Dq), gk_in (B, Tk, Dk),
    # gv_in (B, Tk, Dv) (or (0, 0, 0) when not needed), gw* like w*, gb* (D,) or (0,);
    # ws attention_backward_workspace_size elements
    B, Tq, Dq = q_in.shape
    Tk = k_in.shape[1]
    Dk = k_in.shape[2]
    Dv = v_in.shape[2]
    D = wq.shape[0]
    H = heads
    dk = D // H
    scale = 1.0 / math.sqrt(dk)
    need = B * Tq * D + 2 * B * Tk * D + B * Tq * Tk
    if ws.size < need:
        raise ValueError(f"attention_backward: ws holds {ws.size} elements, needs {need}")
    w = flat(ws)
    oK = B * Tq * D
    oV = oK + B * Tk * D
    oP = oV + B * Tk * D
    # out projection: gwo = gout^T ctx, gbo = column sums, gctx = gout @ wo (into gQ's buffer)
    gemm(mat(gout, trans=True), mat(saveCtx), mat(gwo), D, D, B * Tq)
    if gbo.size > 0:
        sum_lines(gout, B * Tq, D, 1, gbo)
    gemm(mat(gout), mat(wo), Mat(w, 0, 0, 0, 0, D, 1), B * Tq, D, D)
    for h in range(H):
        c0 = h * dk
        # gP = gctx_h V_h^T (B, Tq, Tk)
        gemm(Mat(w, c0, Tq * D, 0, 0, D, 1), Mat(saveV, c0, Tk * D, 0, 0, 1, D),
             Mat(w, oP, Tq * Tk, 0, 0, Tk, 1), Tq, Tk, dk, Z=B)
        # gV_h = P_h^T gctx_h
        gemm(Mat(saveP, h * Tq * Tk, H * Tq * Tk, 0, 0, 1, Tk), Mat(w, c0, Tq * D, 0, 0, D, 1),
             Mat(w, oV + c0, Tk * D, 0, 0, D, 1), Tk, dk, Tq, Z=B)
        # softmax (and the scale): gS = P * (gP - rowsum(gP * P)) / sqrt(dk); masked entries have P == 0
        launch_blocks(_softmax_rows_bwd, B * Tq, w[oP : oP + B * Tq * Tk], flat(saveP), h, H, B * Tq, Tq, Tk,
                      scale)
        # gQ_h = gS K_h (overwrites gctx_h, already read), gK_h = gS^T Q_h
        gemm(Mat(w, oP, Tq * Tk, 0, 0, Tk, 1), Mat(saveK, c0, Tk * D, 0, 0, D, 1),
             Mat(w, c0, Tq * D, 0, 0, D, 1), Tq, dk, Tk, Z=B)
        gemm(Mat(w, oP, Tq * Tk, 0, 0, 1, Tk), Mat(saveQ, c0, Tq * D, 0, 0, D, 1),
             Mat(w, oK + c0, Tk * D, 0, 0, D, 1), Tk, dk, Tq, Z=B)
    gQ = w[0:oK]
    gK = w[oK:oV]
    gV = w[oV:oP]
    # input projections, each over all B*T rows at once
    gemm(mat(gQ.reshape(B * Tq, D), trans=True), mat(q_in), mat(gwq), D, Dq, B * Tq)
    gemm(mat(gK.reshape(B * Tk, D), trans=True), mat(k_in), mat(gwk), D, Dk, B * Tk)
    gemm(mat(gV.reshape(B * Tk, D), trans=True), mat(v_in), mat(gwv), D, Dv, B * Tk)
    if gbq.size > 0:
        sum_lines(gQ, B * Tq, D, 1, gbq)
    if gbk.size > 0:
        sum_lines(gK, B * Tk, D, 1, gbk)
    if gbv.size > 0:
        sum_lines(gV, B * Tk, D, 1, gbv)
    if need_gq:
        gemm(mat(gQ.reshape(B * Tq, D)), mat(wq), mat(gq_in), B * Tq, Dq, D)
    if need_gk:
        gemm(mat(gK.reshape(B * Tk, D)), mat(wk), mat(gk_in), B * Tk, Dk, D)
    if need_gv:
        gemm(mat(gV.reshape(B * Tk, D)), mat(wv), mat(gv_in), B * Tk, Dv, D)
