"""Data movement around kernels: copies, accumulation, fills and time-major transposes (numpy; memory-bound).

These are not ops of the op table but the glue that lowering inserts: gradient accumulation where a value fans
out, and the (B, T, …) <-> (T, B, …) layouts around an unroll's loop (each step's slice must be contiguous).
"""

from __future__ import annotations

import numpy as np


def copy(dst: np.ndarray, src: np.ndarray) -> None:
    # dst, src: same shape (src may broadcast)
    np.copyto(dst, src, casting="unsafe")


def accumulate(dst: np.ndarray, src: np.ndarray) -> None:
    # dst += src (a later contribution to a gradient)
    np.add(dst, src, out=dst)


def zero(dst: np.ndarray) -> None:
    dst.fill(0)


def fill(dst: np.ndarray, value: float) -> None:
    dst.fill(value)


def time_major(src: np.ndarray, dst: np.ndarray) -> None:
    # src (B, T, R) -> dst (T, B, R)
    np.copyto(dst, src.transpose(1, 0, 2), casting="unsafe")


def batch_major(src: np.ndarray, dst: np.ndarray) -> None:
    # src (T, B, R) -> dst (B, T, R)
    np.copyto(dst, src.transpose(1, 0, 2), casting="unsafe")
