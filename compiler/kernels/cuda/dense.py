"""Linear kernels on the device: dense (x @ w.T + b) and batched matmul — forward and backward.

Same functions and signatures as ``kernels/cpu/dense.py``, on device arrays. Every product is the tiled
shared-memory GEMM of ``_common`` (transposes are strides, the bias is fused into the forward GEMM's store);
bias gradients are column sums by block reduction. A matmul operand shared by every batch element (batch
size 1) has its gradient summed over the batch inside one GEMM (the S slices), so ``ws`` is not needed.
"""

from __future__ import annotations

from ._common import batched, gemm, mat, sum_lines


def dense_forward(x, w, b, out):
    # x (N, in), w (out, in), b (out,) or (0,) -> out (N, out)
    N, K = x.shape
    M = w.shape[0]
    gemm(mat(x), mat(w, trans=True), mat(out), N, M, K, bias=b, bias_rs=0, bias_cs=1)


def dense_backward(gout, x, w, gx, gw, gb, need_gx, need_gw):
    # gout (N, out), x (N, in), w (out, in) -> gx (N, in), gw (out, in), gb (out,) or (0,)
    N, M = gout.shape
    K = x.shape[1]
    if need_gx:
        gemm(mat(gout), mat(w), mat(gx), N, K, M)
    if need_gw:
        gemm(mat(gout, trans=True), mat(x), mat(gw), M, K, N)
    if gb.shape[0] > 0:
        sum_lines(gout, N, M, 1, gb)


def matmul_forward(a, b, out):
    # a (Ba, M, K), b (Bb, K, N) -> out (B, M, N); Ba or Bb may be 1 (that operand is shared by every batch)
    B, M, N = out.shape
    K = a.shape[2]
    gemm(batched(a), batched(b), batched(out), M, N, K, Z=B)


def matmul_backward(gout, a, b, ga, gb, need_ga, need_gb, ws):
    # gout (B, M, N), a (Ba, M, K), b (Bb, K, N) -> ga like a, gb like b (summed over the batch when shared);
    # ws unused here (the CPU kernel's scratch)
    B, M, N = gout.shape
    K = a.shape[2]
    if need_ga:
        shared = a.shape[0] != B
        # ga[i] = gout[i] @ b[i].T  (or ga[0] = sum_i of it)
        bt = batched(b, trans=True)
        if shared:
            g = batched(gout, sum_batch=True)
            bt = batched(b, trans=True, sum_batch=True)
            gemm(g, bt, mat(ga), M, K, N, S=B)
        else:
            gemm(batched(gout), bt, batched(ga), M, K, N, Z=B)
    if need_gb:
        shared = b.shape[0] != B
        # gb[i] = a[i].T @ gout[i]  (or gb[0] = sum_i of it)
        if shared:
            gemm(batched(a, trans=True, sum_batch=True), batched(gout, sum_batch=True), mat(gb), K, N, M, S=B)
        else:
            gemm(batched(a, trans=True), batched(gout), batched(gb), K, N, M, Z=B)


def matmul_backward_workspace_size(B, M, K, N, a_batch, b_batch):
    """Elements of ``ws`` for ``matmul_backward`` on the device: none (a shared operand's batch sum is a
    GEMM over S slices)."""
    return 0
