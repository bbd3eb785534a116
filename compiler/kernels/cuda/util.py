"""Data movement around kernels on the device: copies, accumulation, fills and time-major transposes.

The CPU family's functions (same names and signatures) on device arrays. A copy or accumulate whose source
broadcasts (numpy's right-aligned rule) and the (B, T, R) <-> (T, B, R) transposes go through one strided
gather kernel over up to 6 axes; same-size copies take a flat loop.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ._common import flat, kernel, launch

RANK = 6  # axes of the strided gather (a view has at most 6: time, batch and 4 of its own)


@kernel
def _copy_flat(dst, src, n, acc):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if acc:
            dst[i] += src[i]
        else:
            dst[i] = src[i]


@kernel
def _gather(dst, src, n, s, off, total, acc):
    # dst[i] (= or +=) src[off + sum_d idx_d(i) * s[d]], idx(i) the 6-D index of i in the shape n
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = i
        o = off
        for d in range(RANK - 1, -1, -1):
            nd = n[d]
            q = r // nd
            o += (r - q * nd) * s[d]
            r = q
        if acc:
            dst[i] += src[o]
        else:
            dst[i] = src[o]


@kernel
def _fill(dst, value, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] = value


def _pad(t, fill):
    t = tuple(int(v) for v in t)
    if len(t) > RANK:
        raise ValueError(f"cuda util: more than {RANK} axes")
    return (fill,) * (RANK - len(t)) + t


def contiguous_strides(shape) -> tuple[int, ...]:
    out, st = [], 1
    for d in reversed(shape):
        out.append(st)
        st *= d
    return tuple(reversed(out))


def gather(dst, src, shape, strides, off: int = 0, accumulate: bool = False) -> None:
    """dst (contiguous, `shape` elements in order) = / += src.flat[off + index · strides]."""
    total = int(np.prod(shape)) if len(shape) else 1
    launch(_gather, total, flat(dst), flat(src), _pad(shape, 1), _pad(strides, 0), int(off), total, accumulate)


def broadcast_strides(src_shape, dst_shape) -> tuple[int, ...]:
    """src's element strides seen at dst's shape (right-aligned; 0 where src has size 1 or is absent)."""
    rank = len(dst_shape)
    src_shape = tuple(src_shape)
    if len(src_shape) > rank:  # extra leading axes of size 1 only
        if any(d != 1 for d in src_shape[: len(src_shape) - rank]):
            raise ValueError(f"cannot broadcast {src_shape} to {tuple(dst_shape)}")
        src_shape = src_shape[len(src_shape) - rank :]
    own = contiguous_strides(src_shape)
    pad = rank - len(src_shape)
    out = []
    for d in range(rank):
        if d < pad:
            out.append(0)
            continue
        n = src_shape[d - pad]
        if n != 1 and n != dst_shape[d]:
            raise ValueError(f"cannot broadcast {src_shape} to {tuple(dst_shape)}")
        out.append(0 if n == 1 else own[d - pad])
    return tuple(out)


def _move(dst, src, acc: bool) -> None:
    if dst.size == 0:
        return
    if src.size == dst.size:
        launch(_copy_flat, dst.size, flat(dst), flat(src), dst.size, acc)
        return
    shape = tuple(dst.shape)
    gather(dst, src, shape, broadcast_strides(src.shape, shape), 0, acc)


def copy(dst, src) -> None:
    # dst, src: same shape (src may broadcast)
    _move(dst, src, False)


def accumulate(dst, src) -> None:
    # dst += src (a later contribution to a gradient)
    _move(dst, src, True)


def zero(dst) -> None:
    launch(_fill, dst.size, flat(dst), dst.dtype.type(0), dst.size)


def fill(dst, value: float) -> None:
    launch(_fill, dst.size, flat(dst), dst.dtype.type(value), dst.size)


def time_major(src, dst) -> None:
    # src (B, T, R) -> dst (T, B, R)
    B, T, R = src.shape
    gather(dst, src, (T, B, R), (R, T * R, 1))


def batch_major(src, dst) -> None:
    # src (T, B, R) -> dst (B, T, R)
    T, B, R = src.shape
    gather(dst, src, (B, T, R), (R, B * R, 1))
