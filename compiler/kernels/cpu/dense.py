"""Linear kernels: dense (x @ w.T + b) and batched matmul — forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, batch axis first; float32 or float64 (one dtype per call).
- Backward kernels OVERWRITE their gradient outputs; ``need_*`` flags skip gradients nobody uses (their
  output may then be a zero-size placeholder of the right rank).
- An absent bias is a zero-length array (and so is its gradient output).

All matrix work is a BLAS GEMM via ``np.dot(a, b, out)`` on contiguous operands (a transpose is a free
F-ordered view that BLAS reads directly). Large GEMMs split their rows over the lanes (``_common.pdot``).
Layouts are PyTorch's: dense ``w (out, in)``.
"""

import numpy as np
from numba import njit

from ._common import pdot, pdot_tn


@njit(cache=True, error_model="numpy")
def dense_forward(x, w, b, out):
    # x (N, in), w (out, in), b (out,) or (0,) -> out (N, out)
    pdot(x, w.T, out)
    if b.shape[0] > 0:
        N, M = out.shape
        for n in range(N):
            for j in range(M):
                out[n, j] += b[j]


@njit(cache=True, error_model="numpy")
def dense_backward(gout, x, w, gx, gw, gb, need_gx, need_gw):
    # gout (N, out), x (N, in), w (out, in) -> gx (N, in), gw (out, in), gb (out,) or (0,)
    if need_gx:
        pdot(gout, w, gx)
    if need_gw:
        pdot_tn(gout, x, gw)
    if gb.shape[0] > 0:
        N, M = gout.shape
        for j in range(M):
            gb[j] = 0.0
        for n in range(N):
            for j in range(M):
                gb[j] += gout[n, j]


@njit(cache=True, error_model="numpy")
def matmul_forward(a, b, out):
    # a (Ba, M, K), b (Bb, K, N) -> out (B, M, N); Ba or Bb may be 1 (that operand is shared by every batch)
    B = out.shape[0]
    for i in range(B):
        np.dot(a[0 if a.shape[0] == 1 else i], b[0 if b.shape[0] == 1 else i], out[i])


@njit(cache=True, error_model="numpy")
def matmul_backward(gout, a, b, ga, gb, need_ga, need_gb, ws):
    # gout (B, M, N), a (Ba, M, K), b (Bb, K, N) -> ga like a, gb like b (summed over the batch when shared)
    # ws: scratch for a shared operand's per-batch term, matmul_backward_workspace_size elements
    B = gout.shape[0]
    M = a.shape[1]
    K = a.shape[2]
    N = b.shape[2]
    if need_ga:
        if a.shape[0] == B:
            for i in range(B):
                np.dot(gout[i], b[0 if b.shape[0] == 1 else i].T, ga[i])
        else:
            tmp = ws[0:M * K].reshape(M, K)
            for i in range(B):
                if i == 0:
                    np.dot(gout[i], b[0 if b.shape[0] == 1 else i].T, ga[0])
                else:
                    np.dot(gout[i], b[0 if b.shape[0] == 1 else i].T, tmp)
                    ga[0] += tmp
    if need_gb:
        if b.shape[0] == B:
            for i in range(B):
                np.dot(a[0 if a.shape[0] == 1 else i].T, gout[i], gb[i])
        else:
            tmp = ws[0:K * N].reshape(K, N)
            for i in range(B):
                if i == 0:
                    np.dot(a[0 if a.shape[0] == 1 else i].T, gout[i], gb[0])
                else:
                    np.dot(a[0 if a.shape[0] == 1 else i].T, gout[i], tmp)
                    gb[0] += tmp


def matmul_backward_workspace_size(B, M, K, N, a_batch, b_batch):
    """Elements of ``ws`` for ``matmul_backward``: nonzero only when an operand is shared (batch 1 < B)."""
    need = 0
    if a_batch == 1 and B > 1:
        need = max(need, M * K)
    if b_batch == 1 and B > 1:
        need = max(need, K * N)
    return need
