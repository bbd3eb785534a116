"""Small ``@njit`` helpers shared by the sequence kernels (recurrent.py, attention.py): carving a workspace into
buffers, adding a bias to columns and summing them into a bias gradient. None of them is an inner loop with a
float32 fast path; those stay in the kernels.

Numba's cache checks only the source file of the function it caches, and a cached kernel holds the code of the
helpers it calls: after editing this file (as after editing fastmath.py), delete the kernels' cache
(``__pycache__/*.nbi``, ``*.nbc`` here, or NUMBA_CACHE_DIR), or the callers keep running the old helpers.
"""

import numpy as np
from netdsl.compiler.parallel import lanes as _lanes
from numba import njit, prange


@njit(cache=True, error_model="numpy")
def carve(ws, o, shape):
    # ws (N,) -> (the prod(shape) elements of ws from offset o as a C-contiguous array of that shape,
    # the offset just after them)
    n = 1
    for s in shape:
        n *= s
    return ws[o:o + n].reshape(shape), o + n


@njit(cache=True, error_model="numpy")
def copy_flat(src, dst):
    # src (any shape) -> dst (any shape of the same size). A loop, not `dst[:] = src`: Numba's array-to-array
    # slice assignment carries a shape-mismatch error that formats both shapes, ~3 s of cold compile per kernel
    s = src.reshape(src.size)
    d = dst.reshape(dst.size)
    if s.size != d.size:
        raise ValueError("copy_flat: source and destination sizes differ")  # a constant message: cheap
    for i in range(s.size):
        d[i] = s[i]


@njit(cache=True, error_model="numpy")
def add_bias(G2, b, k, H):
    # G2 (N, G*H) columns k*H.. += b (H,) (nothing for an absent bias)
    if b.shape[0] > 0:
        for n in range(G2.shape[0]):
            for j in range(H):
                G2[n, k * H + j] += b[j]


@njit(cache=True, error_model="numpy")
def bias_grad(dG2, k, H, gb):
    # gb (H,) = column sums of dG2 (N, G*H) columns k*H.. (nothing for an absent bias)
    if gb.shape[0] > 0:
        for j in range(H):
            gb[j] = 0.0
        for n in range(dG2.shape[0]):
            for j in range(H):
                gb[j] += dG2[n, k * H + j]


# Lanes of the parallel GEMMs, a compile-time constant of the kernels: the package stamps the kernel cache
# with it (__init__.py), so a process with another thread count recompiles rather than run a stale split.
LANES = _lanes()
# a GEMM is split only when each lane still gets this many multiply-adds (a lane launch costs microseconds)
_SPLIT_MACS = 1 << 19


@njit(cache=True, error_model="numpy", parallel=True)
def pdot(a, b, out):
    # a (M, K) C-contiguous, b (K, N) C- or F-contiguous -> out (M, N) = a @ b, rows split over the lanes.
    # The lanes are this function's own loop (one level of calls less to compile: see conv2d_forward)
    M = out.shape[0]
    nl = min(LANES, M // 8, (M * a.shape[1] * out.shape[1]) // _SPLIT_MACS)
    if nl <= 1:
        np.dot(a, b, out)
        return
    for t in prange(nl):
        r0 = t * M // nl
        r1 = (t + 1) * M // nl
        np.dot(a[r0:r1], b, out[r0:r1])


# partial sums of a weight gradient (one per extra lane) are allocated up to this many elements; above it the
# transposed operand is copied instead, so that the rows of the output can be split
_PARTIALS_MAX = 1 << 22


@njit(cache=True, error_model="numpy", parallel=True)
def _tn_partials(a, b, out, parts, nl):
    # lane t sums the rows r0 .. r1-1 of the reduction: into out (t == 0) or parts[t - 1]
    K = a.shape[0]
    for t in prange(nl):
        r0 = t * K // nl
        r1 = (t + 1) * K // nl
        if t == 0:
            np.dot(a[r0:r1].T, b[r0:r1], out)
        else:
            np.dot(a[r0:r1].T, b[r0:r1], parts[t - 1])


@njit(cache=True, error_model="numpy")
def pdot_tn(a, b, out):
    # a (K, M), b (K, N), both C-contiguous -> out (M, N) = a.T @ b (a weight gradient: K is the batch).
    # Lanes split K, each summing into a partial of its own (added up after); for an output too large for
    # partials, a.T is copied contiguous (K·M copies next to K·M·N multiply-adds) and its rows are split.
    M = out.shape[0]
    N = out.shape[1]
    K = a.shape[0]
    nl = min(LANES, K // 8, (M * K * N) // _SPLIT_MACS)
    if nl <= 1:
        np.dot(a.T, b, out)
    elif (nl - 1) * M * N <= _PARTIALS_MAX:
        parts = np.empty((nl - 1, M, N), out.dtype)
        _tn_partials(a, b, out, parts, nl)
        for t in range(nl - 1):
            p = parts[t]
            for i in range(M):
                o = out[i]
                q = p[i]
                for j in range(N):
                    o[j] += q[j]
    else:
        pdot(np.ascontiguousarray(a.T), b, out)


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def row_sum(row, n):
    # sum of row[:n] in a float64 accumulator; reassociation lets it vectorise (NaN and inf still propagate)
    s = 0.0
    for j in range(n):
        s += row[j]
    return s
