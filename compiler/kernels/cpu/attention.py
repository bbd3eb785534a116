"""Multi-head scaled dot-product attention with its q/k/v/out projections: forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, batch axis first; float32 or float64 (one dtype per call, ``ws`` included).
- Backward kernels OVERWRITE their gradient outputs; ``need_gq`` / ``need_gk`` / ``need_gv`` skip input
  gradients nobody uses (the output is then a zero-size ``(0, 0, 0)`` placeholder). Weight and bias
  gradients are always written.
- An absent bias (``bias=false``) is a zero-length array, and so is its gradient output.
- Scratch memory is a 1-D ``ws`` from the caller's buffer plan, sized by the pure-Python
  ``attention_forward_workspace_size`` / ``attention_backward_workspace_size`` helpers.

Semantics (PyTorch layouts: each projection is a dense ``weight (out, in)``, ``bias (out,)``):
    Q = q_in @ wq.T + bq   (B, Tq, D)      D = wq.shape[0], the width; d_k = D / heads
    K = k_in @ wk.T + bk   (B, Tk, D)      k_in / v_in may be wider or narrower than q_in
    V = v_in @ wv.T + bv   (B, Tk, D)
    head h uses columns [h*d_k, (h+1)*d_k) of Q, K, V:
    P[b, h] = softmax(Q_h K_h^T / sqrt(d_k)) over keys   (B, heads, Tq, Tk); with ``causal`` key j > query i
              is masked (P exactly 0), which needs Tq == Tk
    ctx[b, :, head h] = P[b, h] @ V_h                    (B, Tq, D)
    out = ctx @ wo.T + bo                                (B, Tq, D)

Save buffers (written by forward, read by backward; the caller allocates them, same dtype as the data):
``saveQ`` (B, Tq, D), ``saveK`` (B, Tk, D), ``saveV`` (B, Tk, D), ``saveP`` (B, heads, Tq, Tk),
``saveCtx`` (B, Tq, D). Backward also reads the inputs ``q_in``, ``k_in``, ``v_in`` (for the weight gradients).

Self-attention (``x -> attention(h)``) passes the same array as q_in, k_in and v_in. The kernel still treats
them as three inputs: the caller passes three separate gradient outputs and adds them up (ordinary fan-out
accumulation), exactly as for any value used three times.

Strategy: the four projections (and their gradients) are single BLAS GEMMs over all B*T rows (their rows
split over the lanes, ``_common.pdot``). The per-head products are split by example over the lanes, each with
its own score-gradient scratch, and loop over (b, h): a head's columns of Q/K/V, the context and their
gradients are BLAS operands where they lie, rows D apart (``blas.gemm_ld``); copying them to contiguous
scratch for np.dot, as this once did, cost the tiny GPT's attention per layer, kernels alone, 0.1 of 0.9 ms
forward and 0.7 of 2.6 ms backward (in the training step's profile the backward went 2.05 -> 1.90 ms). The
softmax
subtracts the row maximum and accumulates its sum in float64 (reassociated, so it vectorises).
"""

import math

import numpy as np
from netdsl.compiler.parallel import lanes as _default_lanes
from numba import njit, prange

from . import fastmath as fm
from ._common import LANES, add_bias, bias_grad, carve, pdot, pdot_tn, row_sum
from .blas import gemm_ld


def attention_forward_workspace_size(B, Tq, Tk, D, heads, lanes=None):
    """Elements of ``ws`` for ``attention_forward``: one head's Q, K, V and context slices per lane."""
    dk = D // heads
    return (_default_lanes() if lanes is None else lanes) * (2 * Tq * dk + 2 * Tk * dk)


def attention_backward_workspace_size(B, Tq, Tk, D, heads):
    """Elements of ``ws`` for ``attention_backward``: full gQ, gK, gV plus one head's slices and gP (for one
    lane; the compiler's buffer plan gives every example its own, so up to B lanes run)."""
    dk = D // heads
    return B * Tq * D + 2 * B * Tk * D + 3 * Tq * dk + 4 * Tk * dk + Tq * Tk


@njit(cache=True, error_model="numpy")
def _check(B, Tq, Tk, D, heads, causal, wk, wv, wo):
    if heads <= 0 or D % heads != 0:
        raise ValueError("attention: width not divisible by heads")
    if causal and Tq != Tk:
        raise ValueError("attention: causal needs as many queries as keys")
    if wk.shape[0] != D or wv.shape[0] != D or wo.shape[0] != D or wo.shape[1] != D:
        raise ValueError("attention: projection widths disagree with q's")


@njit(cache=True, error_model="numpy")
def _project(x, w, b, out):
    # x (N, Din), w (D, Din), b (D,) or (0,) -> out (N, D) = x @ w.T + b
    pdot(x, w.T, out)
    add_bias(out, b, 0, out.shape[1])


@njit(cache=True, error_model="numpy")
def attention_forward(q_in, k_in, v_in, wq, bq, wk, bk, wv, bv, wo, bo, heads, causal,
                      out, saveQ, saveK, saveV, saveP, saveCtx, ws):
    # q_in (B, Tq, Dq), k_in (B, Tk, Dk), v_in (B, Tk, Dv); wq (D, Dq), wk (D, Dk), wv (D, Dv), wo (D, D),
    # biases (D,) or (0,) -> out (B, Tq, D); saveQ/saveCtx (B, Tq, D), saveK/saveV (B, Tk, D),
    # saveP (B, heads, Tq, Tk); ws attention_forward_workspace_size elements
    B, Tq, Dq = q_in.shape
    Tk = k_in.shape[1]
    D = wq.shape[0]
    _check(B, Tq, Tk, D, heads, causal, wk, wv, wo)
    dk = D // heads
    _project(q_in.reshape(B * Tq, Dq), wq, bq, saveQ.reshape(B * Tq, D))
    _project(k_in.reshape(B * Tk, k_in.shape[2]), wk, bk, saveK.reshape(B * Tk, D))
    _project(v_in.reshape(B * Tk, v_in.shape[2]), wv, bv, saveV.reshape(B * Tk, D))
    per = 2 * Tq * dk + 2 * Tk * dk
    nl = max(1, min(LANES, B, ws.size // per))
    if nl == 1:
        _fwd_heads(0, B, heads, causal, saveQ, saveK, saveV, saveP, saveCtx, ws)
    else:
        _fwd_lanes(nl, heads, causal, saveQ, saveK, saveV, saveP, saveCtx, ws, per)
    _project(saveCtx.reshape(B * Tq, D), wo, bo, out.reshape(B * Tq, D))


@njit(cache=True, error_model="numpy")
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
    dk = D // heads
    scale = 1.0 / math.sqrt(dk)
    gQ, o = carve(ws, 0, (B, Tq, D))
    gK, o = carve(ws, o, (B, Tk, D))
    gV, o = carve(ws, o, (B, Tk, D))

    # out projection: gwo = gout^T ctx, gbo = sum gout, gctx = gout @ wo. gctx goes into the gQ buffer: each
    # head slice of it is read (into gCh) just before the same slice of gQ is written, so they can share.
    gout2 = gout.reshape(B * Tq, D)
    pdot_tn(gout2, saveCtx.reshape(B * Tq, D), gwo)
    bias_grad(gout2, 0, D, gbo)
    pdot(gout2, wo, gQ.reshape(B * Tq, D))

    per = 3 * Tq * dk + 4 * Tk * dk + Tq * Tk
    nl = max(1, min(LANES, B, (ws.size - o) // per))
    if nl == 1:
        _bwd_heads(0, B, heads, scale, saveQ, saveK, saveV, saveP, gQ, gK, gV, ws[o:])
    else:
        _bwd_lanes(nl, heads, scale, saveQ, saveK, saveV, saveP, gQ, gK, gV, ws[o:], per)

    # input projections, each over all B*T rows at once
    gQ2 = gQ.reshape(B * Tq, D)
    gK2 = gK.reshape(B * Tk, D)
    gV2 = gV.reshape(B * Tk, D)
    pdot_tn(gQ2, q_in.reshape(B * Tq, Dq), gwq)
    pdot_tn(gK2, k_in.reshape(B * Tk, Dk), gwk)
    pdot_tn(gV2, v_in.reshape(B * Tk, Dv), gwv)
    bias_grad(gQ2, 0, D, gbq)
    bias_grad(gK2, 0, D, gbk)
    bias_grad(gV2, 0, D, gbv)
    if need_gq:
        pdot(gQ2, wq, gq_in.reshape(B * Tq, Dq))
    if need_gk:
        pdot(gK2, wk, gk_in.reshape(B * Tk, Dk))
    if need_gv:
        pdot(gV2, wv, gv_in.reshape(B * Tk, Dv))


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_dot(a, b):
    s = 0.0
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


@njit(cache=True, error_model="numpy")
def _softmax_row(row, n, scale, fast):
    # row (Tk,) scores -> softmax(row[:n] * scale), 0 beyond n; one pass each for the max, the exponentials,
    # their sum and the normalisation, so each loop vectorises
    m = row[0]
    for j in range(n):  # from 0, not 1: LLVM vectorises range(n) loops, not range(lo, hi) ones
        v = row[j]
        m = max(m, v)
    m = m * scale
    for j in range(n):
        row[j] = fm.exp(row[j] * scale - m, fast)
    r = 1.0 / row_sum(row, n)
    for j in range(n):
        row[j] *= r
    tail = row[n:]
    for j in range(tail.shape[0]):
        tail[j] = 0.0


@njit(cache=True, error_model="numpy")
def _fwd_heads(b0, b1, heads, causal, saveQ, saveK, saveV, saveP, saveCtx, ws):
    # examples b0 .. b1-1: every head's softmax(Q K^T / sqrt(d_k)) -> saveP and P V -> saveCtx. A head's
    # columns of Q, K, V and the context are BLAS operands where they lie (rows D apart: blas.gemm_ld), not
    # copies
    fast = saveQ.itemsize == 4  # a constant of the compiled kernel, so the loops vectorise
    Tq = saveQ.shape[1]
    Tk = saveK.shape[1]
    D = saveQ.shape[2]
    dk = D // heads
    cast = np.empty(1, saveQ.dtype)
    cast[0] = 1.0 / math.sqrt(dk)
    scale = cast[0]  # in the data's dtype: a float64 scale would widen the float32 exponentials
    for b in range(b0, b1):
        for h in range(heads):
            c0 = h * dk
            P = saveP[b, h]
            gemm_ld(False, True, Tq, Tk, dk, saveQ[b, :, c0:], D, saveK[b, :, c0:], D, 0.0, P, Tk)
            for i in range(Tq):
                _softmax_row(P[i], i + 1 if causal else Tk, scale, fast)  # keys 0..n-1 are visible to query i
            gemm_ld(False, False, Tq, dk, Tk, P, Tk, saveV[b, :, c0:], D, 0.0, saveCtx[b, :, c0:], D)


@njit(cache=True, error_model="numpy", parallel=True)
def _fwd_lanes(nl, heads, causal, saveQ, saveK, saveV, saveP, saveCtx, ws, per):
    B = saveQ.shape[0]
    for lane in prange(nl):
        _fwd_heads(lane * B // nl, (lane + 1) * B // nl, heads, causal, saveQ, saveK, saveV, saveP, saveCtx,
                   ws[lane * per:(lane + 1) * per])


@njit(cache=True, error_model="numpy")
def _bwd_heads(b0, b1, heads, scale, saveQ, saveK, saveV, saveP, gQ, gK, gV, ws):
    # examples b0 .. b1-1: gQ holds the context gradient on entry; each head's columns are read (as gctx_h)
    # before the same columns of gQ are written. Head columns are BLAS operands where they lie, as forward's
    Tq = saveQ.shape[1]
    Tk = saveK.shape[1]
    D = saveQ.shape[2]
    dk = D // heads
    gP = carve(ws, 0, (Tq, Tk))[0]
    for b in range(b0, b1):
        for h in range(heads):
            c0 = h * dk
            P = saveP[b, h]
            gC = gQ[b, :, c0:]
            # ctx_h = P V_h: gP = gctx_h V_h^T, gV_h = P^T gctx_h
            gemm_ld(False, True, Tq, Tk, dk, gC, D, saveV[b, :, c0:], D, 0.0, gP, Tk)
            gemm_ld(True, False, Tk, dk, Tq, P, Tk, gC, D, 0.0, gV[b, :, c0:], D)
            # softmax: gS = P * (gP - rowsum(gP * P)); masked entries have P == 0 and get 0. The 1/sqrt(d_k)
            # of S = Q K^T / sqrt(d_k) is folded in here.
            for i in range(Tq):
                pr = P[i]
                gr = gP[i]
                s = _row_dot(gr, pr)
                for j in range(Tk):
                    gr[j] = pr[j] * (gr[j] - s) * scale
            gemm_ld(False, False, Tq, dk, Tk, gP, Tk, saveK[b, :, c0:], D, 0.0, gC, D)
            gemm_ld(True, False, Tk, dk, Tq, gP, Tk, saveQ[b, :, c0:], D, 0.0, gK[b, :, c0:], D)


@njit(cache=True, error_model="numpy", parallel=True)
def _bwd_lanes(nl, heads, scale, saveQ, saveK, saveV, saveP, gQ, gK, gV, ws, per):
    B = saveQ.shape[0]
    for lane in prange(nl):
        _bwd_heads(lane * B // nl, (lane + 1) * B // nl, heads, scale, saveQ, saveK, saveV, saveP, gQ, gK, gV,
                   ws[lane * per:(lane + 1) * per])
