"""Shape kernels on the device: concat, transpose, mean over an axis, last step, reshape / flatten copies.

Same functions and signatures as ``kernels/cpu/shape.py`` (and the same views), on device arrays. transpose
is the strided gather of ``util`` (backward gathers through the inverse permutation); the rest are
grid-stride loops with one thread per element written. ``perm`` is a host int64 array.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ._common import flat, kernel, launch
from .util import contiguous_strides, gather


@kernel
def _concat(x, out, Li, L, I, offset, n, forward):
    # x (O, Li, I) <-> out[:, offset:offset+Li, :] of out (O, L, I)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        o = e // (Li * I)
        r = e - o * Li * I
        k = (o * L + offset) * I + r
        if forward:
            out[k] = x[e]
        else:
            x[e] = out[k]


def concat_forward(x, offset, out):
    # x (outer, L_i, inner), offset -> writes out[:, offset:offset+L_i, :] of out (outer, L, inner)
    _, Li, I = x.shape
    launch(_concat, x.size, flat(x), flat(out), Li, out.shape[1], I, int(offset), x.size, True)


def concat_backward(gout, offset, gx):
    # gout (outer, L, inner), offset -> gx (outer, L_i, inner), the slice this input fed
    _, Li, I = gx.shape
    launch(_concat, gx.size, flat(gx), flat(gout), Li, gout.shape[1], I, int(offset), gx.size, False)


def transpose_forward(x, perm, out):
    # x (d0, ..., dk), perm (k+1,) int64 -> out (d_perm[0], ..., d_perm[k]) = np.transpose(x, perm)
    perm = [int(p) for p in np.asarray(perm)]
    sx = contiguous_strides(tuple(x.shape))
    gather(out, x, tuple(x.shape[p] for p in perm), tuple(sx[p] for p in perm))


def transpose_backward(gout, perm, gx):
    # gout (out shape), perm (the forward's) -> gx (x shape)
    perm = [int(p) for p in np.asarray(perm)]
    inv = [0] * len(perm)
    for d, p in enumerate(perm):
        inv[p] = d
    sg = contiguous_strides(tuple(gout.shape))
    gather(gx, gout, tuple(gx.shape), tuple(sg[inv[d]] for d in range(len(perm))))


@kernel
def _mean_fwd(x, out, A, L, I):
    for e in range(cuda.grid(1), A * I, cuda.gridsize(1)):
        a = e // I
        i = e - a * I
        acc = 0.0
        for j in range(L):
            acc += float(x[(a * L + j) * I + i])
        out[e] = acc / L


@kernel
def _mean_bwd(g, gx, A, L, I):
    r = 1.0 / L
    for e in range(cuda.grid(1), A * L * I, cuda.gridsize(1)):
        a = e // (L * I)
        i = e % I
        gx[e] = g[a * I + i] * r


def mean_forward(x, out):
    # x (A, L, I) -> out (A, I), the mean over L
    A, L, I = x.shape
    if L == 0:
        return
    launch(_mean_fwd, A * I, flat(x), flat(out), A, L, I)


def mean_backward(gout, gx):
    # gout (A, I) -> gx (A, L, I) = gout / L broadcast along L
    A, L, I = gx.shape
    if L == 0:
        return
    launch(_mean_bwd, gx.size, flat(gout), flat(gx), A, L, I)


@kernel
def _copy(src, dst, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] = src[i]


def reshape_forward(x, out):
    # x (any shape) -> out (any shape of the same size), a flat copy
    launch(_copy, x.size, flat(x), flat(out), x.size)


def reshape_backward(gout, gx):
    launch(_copy, gout.size, flat(gout), flat(gx), gout.size)


def flatten_forward(x, out):
    launch(_copy, x.size, flat(x), flat(out), x.size)


def flatten_backward(gout, gx):
    launch(_copy, gout.size, flat(gout), flat(gx), gout.size)


@kernel
def _last(x, out, T, R, n, forward):
    # forward: out (B, R) = x[:, T-1, :]; backward: x is gx (B, T, R), out is gout (B, R): gout at T-1, else 0
    if forward:
        for e in range(cuda.grid(1), n, cuda.gridsize(1)):
            b = e // R
            out[e] = x[(b * T + T - 1) * R + e - b * R]
    else:
        for e in range(cuda.grid(1), n, cuda.gridsize(1)):
            b = e // (T * R)
            t = (e // R) % T
            x[e] = out[b * R + e % R] if t == T - 1 else 0.0


def last_forward(x, out):
    # x (B, T, R) -> out (B, R) = x[:, T-1, :]
    _, T, R = x.shape
    launch(_last, out.size, flat(x), flat(out), T, R, out.size, True)


def last_backward(gout, gx):
    # gout (B, R) -> gx (B, T, R): gout at the last step, zero elsewhere
    _, T, R = gx.shape
    launch(_last, gx.size, flat(gx), flat(gout), T, R, gx.size, False)
