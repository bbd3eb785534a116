"""BLAS GEMM with leading dimensions and beta, callable from ``@njit`` code: ``gemm_ld``.

``np.dot`` inside Numba takes whole contiguous arrays and overwrites its output. A kernel that keeps operands
as blocks of a larger matrix (a step's columns of every step's gate gradients, rows ld elements apart) would
have to copy them out first. ``gemm_ld`` hands BLAS the block where it lies, through the same entry point
Numba's ``np.dot`` calls (``numba_xxgemm``, scipy's BLAS), so it runs the same code at the same speed.

Row-major convention: the operands are given by their first element (a view starting there: any layout) and
their leading dimension, the distance between consecutive rows of the stored matrix.
"""

import numpy as np
from numba import njit, prange
from numba.core import errors, types
from numba.extending import overload
from numba.np.linalg import _BLAS, ensure_blas, get_blas_kind
from numba.np.numpy_support import as_dtype

from ._common import _SPLIT_MACS, LANES


def _gemm_ld(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    raise NotImplementedError("gemm_ld runs in @njit code only")


@overload(_gemm_ld)
def _gemm_ld_impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in (a, b, c)):
        return None
    if not (a.dtype == b.dtype == c.dtype and c.dtype in (types.float32, types.float64)):
        raise errors.TypingError("gemm_ld: a, b and c must share one float dtype")
    ensure_blas()
    xxgemm = _BLAS().numba_xxgemm(c.dtype)
    kind = ord(get_blas_kind(c.dtype))
    dt = as_dtype(c.dtype)

    def impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        if m == 0 or n == 0:
            return
        if a.strides[1] != a.itemsize or b.strides[1] != b.itemsize or c.strides[1] != c.itemsize:
            raise ValueError("gemm_ld: the operands' rows must be contiguous (ld gives the distance between rows)")
        scal = np.empty(2, dt)
        scal[0] = 1.0
        scal[1] = beta
        # BLAS is column-major: the row-major C (m, n) is its C^T (n, m) = op(B)^T op(A)^T, each stored
        # matrix read as its own transpose, so the flags carry over with the operands swapped
        r = xxgemm(kind, np.int8(84 if trans_b else 78), np.int8(84 if trans_a else 78), n, m, k,
                   scal[0:1].ctypes, b.ctypes, ldb, a.ctypes, lda, scal[1:2].ctypes, c.ctypes, ldc)
        if r < 0:
            raise RuntimeError("gemm_ld: BLAS reported an error")
        scal[0] = scal[1]  # keeps scal alive past the call

    return impl


@njit(cache=True, error_model="numpy")
def gemm_ld(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    # C (m, n) = op(A) op(B) + beta C, row-major, op(X) = X^T when trans_x: op(A) (m, k), op(B) (k, n).
    # a, b, c: views starting at each operand's first element; lda, ldb, ldc their rows' distances
    _gemm_ld(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)


@njit(cache=True, error_model="numpy")
def gemm_rows(trans_a, a, b, out, beta):
    # out (M, N) C-contiguous = op(a) @ b[:, :N] + beta out, op(a) = a[:M, :K] or, when trans_a, a[:K, :M]^T;
    # a and b (K, >= N) with rows ld apart (views of wider matrices); out's rows split over the lanes where
    # the work is large (a lane takes rows of a, or its columns when transposed)
    M, N = out.shape
    K = b.shape[0]
    lda = a.strides[0] // a.itemsize
    ldb = b.strides[0] // b.itemsize
    nl = min(LANES, M // 8, (M * K * N) // _SPLIT_MACS)
    if nl <= 1:
        gemm_ld(trans_a, False, M, N, K, a, lda, b, ldb, beta, out, N)
    else:
        _gemm_rows_lanes(trans_a, a, lda, b, ldb, out, beta, nl)


@njit(cache=True, error_model="numpy", parallel=True)
def _gemm_rows_lanes(trans_a, a, lda, b, ldb, out, beta, nl):
    M, N = out.shape
    K = b.shape[0]
    for lane in prange(nl):
        r0 = lane * M // nl
        r1 = (lane + 1) * M // nl
        gemm_ld(trans_a, False, r1 - r0, N, K, a[:, r0:] if trans_a else a[r0:], lda, b, ldb, beta, out[r0:], N)
