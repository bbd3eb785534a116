"""Token and position kernels on the device: embedding, unembed (tied logits), positional_encoding,
positional_embedding — forward and backward.

Same functions, signatures and views as ``kernels/cpu/embed.py``, on device arrays.
- embedding: a gather, one thread per output element. Its backward zeroes the weight gradient and adds each
  position's gradient row with atomics (repeated ids add up in an unspecified order). A token id outside
  [0, V) cannot raise on the device: forward writes NaN for it and backward skips it (a CudaProgram checks
  the ids of its inputs on the host first, with the CPU's message).
- unembed: tiled GEMMs.
- positional_encoding: each thread computes its table entry in float64 (the CPU's formula) and adds it.
- positional_embedding: a pointwise add; the table gradient is a per-(t, d) sum over the batch.
``T <= max_len`` is checked on the host (ValueError, as on the CPU).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ._common import flat, gemm, kernel, launch, mat
from .util import zero


@kernel
def _embed_fwd(ids, w, out, V, D, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // D
        k = ids[r]
        if k < 0 or k >= V:
            out[e] = math.nan
        else:
            out[e] = w[k * D + e - r * D]


@kernel
def _embed_bwd(g, ids, gw, V, D, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // D
        k = ids[r]
        if k >= 0 and k < V:
            cuda.atomic.add(gw, k * D + e - r * D, g[e])


def embedding_forward(ids, w, out):
    # ids (N,) int64, w (V, D) -> out (N, D) = w[ids]
    V, D = w.shape
    launch(_embed_fwd, out.size, flat(ids), flat(w), flat(out), V, D, out.size)


def embedding_backward(gout, ids, gw):
    # gout (N, D), ids (N,) int64 -> gw (V, D): zeroed, then row ids[n] += gout[n] (repeated ids add up)
    V, D = gw.shape
    zero(gw)
    launch(_embed_bwd, gout.size, flat(gout), flat(ids), flat(gw), V, D, gout.size)


def unembed_forward(x, w, out):
    # x (N, D), w (V, D) = the tied embedding's weight -> out (N, V) = x @ w.T
    N, D = x.shape
    V = w.shape[0]
    gemm(mat(x), mat(w, trans=True), mat(out), N, V, D)


def unembed_backward(gout, x, w, gx, gw, need_gx, need_gw):
    # gout (N, V), x (N, D), w (V, D) -> gx (N, D), gw (V, D) (this use's share only)
    N, V = gout.shape
    D = x.shape[1]
    if need_gx:
        gemm(mat(gout), mat(w), mat(gx), N, D, V)
    if need_gw:
        gemm(mat(gout, trans=True), mat(x), mat(gw), V, D, N)


def sinusoid_table(T, D):
    """The float64 ``(T, D)`` sinusoidal position table that ``positional_encoding_forward`` adds."""
    t = np.arange(T, dtype=np.float64)[:, None]
    d = np.arange(D)
    div = 10000.0 ** ((d - d % 2) / D)
    a = t / div
    return np.where(d % 2 == 0, np.sin(a), np.cos(a))


@kernel
def _posenc(x, out, T, D, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = e % D
        t = (e // D) % T
        div = 10000.0 ** ((d - d % 2) / D)
        a = t / div
        v = math.sin(a) if d % 2 == 0 else math.cos(a)
        out[e] = x[e] + v


@kernel
def _copy(src, dst, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] = src[i]


def positional_encoding_forward(x, out):
    # x (B, T, D) -> out (B, T, D) = x + PE[:T]; out may alias x
    _, T, D = x.shape
    launch(_posenc, x.size, flat(x), flat(out), T, D, x.size)


def positional_encoding_backward(gout, gx):
    # gout (B, T, D) -> gx (B, T, D) = gout (the table is a constant)
    launch(_copy, gout.size, flat(gout), flat(gx), gout.size)


@kernel
def _posemb_fwd(x, table, out, T, D, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[e] = x[e] + table[e % (T * D)]


@kernel
def _posemb_table_grad(g, gt, B, T, D, n):
    # gt[t, d] = sum_b g[b, t, d] for t < T, 0 for the rest of the table (n = L * D elements)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        if e >= T * D:
            gt[e] = 0.0
        else:
            acc = 0.0
            for b in range(B):
                acc += float(g[b * T * D + e])
            gt[e] = acc


def positional_embedding_forward(x, table, out):
    # x (B, T, D), table (max_len, D) -> out (B, T, D) = x + table[:T]; out may alias x
    _, T, D = x.shape
    if T > table.shape[0]:
        raise ValueError("positional_embedding: sequence longer than max_len")
    launch(_posemb_fwd, x.size, flat(x), flat(table), flat(out), T, D, x.size)


def positional_embedding_backward(gout, gx, gtable, need_gx):
    # gout (B, T, D) -> gx (B, T, D) = gout, gtable (max_len, D): rows < T the batch sum of gout, the rest 0
    B, T, D = gout.shape
    L = gtable.shape[0]
    if T > L:
        raise ValueError("positional_embedding: sequence longer than max_len")
    launch(_posemb_table_grad, gtable.size, flat(gout), flat(gtable), B, T, D, gtable.size)
    if need_gx:
        launch(_copy, gout.size, flat(gout), flat(gx), gout.size)
