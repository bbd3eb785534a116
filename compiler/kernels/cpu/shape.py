"""Shape kernels: concat, transpose, mean over an axis, last step, reshape / flatten copies — fwd and bwd.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, float32 or float64 (one dtype per call); integer arrays are int64.
- Backward kernels OVERWRITE their gradient outputs (fan-out accumulation is the caller's job).

Views the caller passes:
- concat: one call per input. With ``axis`` the concat axis, input i is viewed as ``(outer, L_i, inner)``
  and the output as ``(outer, sum L_i, inner)`` (outer = product of the axes before, inner = after);
  ``offset`` is the sum of the L_j of the inputs before i.
- mean over an axis: ``(A, L, I)`` view with L the reduced axis; the output is ``(A, I)``.
- transpose: any rank <= 5, ``perm`` an int64 array with ``out.shape[d] == x.shape[perm[d]]`` (numpy's
  ``np.transpose(x, perm)``).
- last (the last step of a sequence): ``(B, T, R)`` view -> ``(B, R)``.
- reshape / flatten are views in a compiled program; the copy kernels here serve when a fresh buffer is
  wanted (any shapes of equal size).
"""

import numpy as np
from numba import njit

from ._common import copy_flat


@njit(cache=True, error_model="numpy")
def concat_forward(x, offset, out):
    # x (outer, L_i, inner), offset -> writes out[:, offset:offset+L_i, :] of out (outer, L, inner)
    # loops, not a slice assignment (see copy_flat)
    O, Li, N = x.shape
    for o in range(O):
        for i in range(Li):
            src = x[o, i]
            dst = out[o, offset + i]
            for k in range(N):
                dst[k] = src[k]


@njit(cache=True, error_model="numpy")
def concat_backward(gout, offset, gx):
    # gout (outer, L, inner), offset -> gx (outer, L_i, inner), the slice this input fed
    O, Li, N = gx.shape
    for o in range(O):
        for i in range(Li):
            src = gout[o, offset + i]
            dst = gx[o, i]
            for k in range(N):
                dst[k] = src[k]


@njit(cache=True, error_model="numpy")
def _permuted_strides(x, perm):
    # element strides of x read in out's axis order, left-padded to rank 5 (stride 0 on padding axes)
    sx = np.zeros(x.ndim, np.int64)
    st = 1
    for d in range(x.ndim - 1, -1, -1):
        sx[d] = st
        st *= x.shape[d]
    s = np.zeros(5, np.int64)
    n = np.ones(5, np.int64)
    off = 5 - x.ndim
    for d in range(x.ndim):
        s[off + d] = sx[perm[d]]
        n[off + d] = x.shape[perm[d]]
    return s, n


@njit(cache=True, error_model="numpy")
def transpose_forward(x, perm, out):
    # x (d0, ..., dk), perm (k+1,) int64 -> out (d_perm[0], ..., d_perm[k]); gathers x along out's order
    s, n = _permuted_strides(x, perm)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    s4 = s[4]
    n4 = n[4]
    for i0 in range(n[0]):
        for i1 in range(n[1]):
            for i2 in range(n[2]):
                for i3 in range(n[3]):
                    oo = (((i0 * n[1] + i1) * n[2] + i2) * n[3] + i3) * n4
                    ox = i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3]
                    for i in range(n4):
                        of[oo + i] = xf[ox + i * s4]


@njit(cache=True, error_model="numpy")
def transpose_backward(gout, perm, gx):
    # gout (out shape), perm (the forward's) -> gx (x shape); scatters gout back through the same map
    s, n = _permuted_strides(gx, perm)
    gf = gout.reshape(gout.size)
    xf = gx.reshape(gx.size)
    s4 = s[4]
    n4 = n[4]
    for i0 in range(n[0]):
        for i1 in range(n[1]):
            for i2 in range(n[2]):
                for i3 in range(n[3]):
                    oo = (((i0 * n[1] + i1) * n[2] + i2) * n[3] + i3) * n4
                    ox = i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3]
                    for i in range(n4):
                        xf[ox + i * s4] = gf[oo + i]


@njit(cache=True, error_model="numpy")
def mean_forward(x, out):
    # x (A, L, I) -> out (A, I), the mean over L
    A, L, I = x.shape
    for a in range(A):
        o = out[a]
        for i in range(I):
            o[i] = 0.0
        for j in range(L):
            xr = x[a, j]
            for i in range(I):
                o[i] += xr[i]
        for i in range(I):
            o[i] /= L


@njit(cache=True, error_model="numpy")
def mean_backward(gout, gx):
    # gout (A, I) -> gx (A, L, I) = gout / L broadcast along L
    A, L, I = gx.shape
    r = 1.0 / L
    for a in range(A):
        for j in range(L):
            for i in range(I):
                gx[a, j, i] = gout[a, i] * r


@njit(cache=True, error_model="numpy")
def reshape_forward(x, out):
    # x (any shape) -> out (any shape of the same size), a flat copy
    copy_flat(x, out)


@njit(cache=True, error_model="numpy")
def reshape_backward(gout, gx):
    # gout (out shape) -> gx (x shape), a flat copy
    copy_flat(gout, gx)


@njit(cache=True, error_model="numpy")
def flatten_forward(x, out):
    # x (B, ...) -> out (B, prod ...), a flat copy
    copy_flat(x, out)


@njit(cache=True, error_model="numpy")
def flatten_backward(gout, gx):
    # gout (B, prod ...) -> gx (B, ...), a flat copy
    copy_flat(gout, gx)


@njit(cache=True, error_model="numpy")
def last_forward(x, out):
    # x (B, T, R) -> out (B, R) = x[:, T-1, :], the last step of a sequence
    B, T, R = x.shape
    for b in range(B):
        for r in range(R):
            out[b, r] = x[b, T - 1, r]


@njit(cache=True, error_model="numpy")
def last_backward(gout, gx):
    # gout (B, R) -> gx (B, T, R): gout at the last step, zero elsewhere
    B, T, R = gx.shape
    for b in range(B):
        for t in range(T - 1):
            for r in range(R):
                gx[b, t, r] = 0.0
        for r in range(R):
            gx[b, T - 1, r] = gout[b, r]
