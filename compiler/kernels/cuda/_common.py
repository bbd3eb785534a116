"""Shared machinery of the CUDA kernels: launch shapes, the tiled GEMM, block reductions, device scratch.

Every host function of the CUDA families goes through `launch`, which sizes a grid-stride launch and skips
empty work (CUDA refuses a zero-size grid). Kernels loop over their work with grid strides, so a grid can be
capped: on a GPU the caps are the hardware limits; under the simulator (one Python thread per CUDA thread)
they are small, so a simulated launch costs a few dozen threads whatever the tensor size. The same code runs
in both cases; only the constants below differ (``NETDSL_CUDA_TILE`` / ``NETDSL_CUDA_RED`` override them).

- `gemm`: C = alpha · op(A) op(B) (+ beta · C) (+ bias) through TILE×TK / TK×TILE shared-memory tiles, on flat
  arrays described by offsets and strides, so transposes, attention heads (column slices), shared batch
  operands (stride 0) and sums over a batch (the `S` slices) need no copies. A contraction no longer than
  one tile depth (S·K <= TK) has nothing to reuse: it takes a one-thread-per-output kernel instead.
- `_block_sum` / `_block_max`: tree reductions in shared memory (no warp shuffles, which the simulator lacks);
  blocks of RED threads, statistics accumulated in float64 whatever the data's dtype.
- `scratch`: small device buffers kept per (name, size, dtype) for per-row losses and partial sums.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import cuda, float64
from numba.core import config

SIM = bool(config.ENABLE_CUDASIM)
TILE = int(os.environ.get("NETDSL_CUDA_TILE", "4" if SIM else "16"))  # GEMM tile edge: TILE×TILE threads
TK = int(os.environ.get("NETDSL_CUDA_TK", "16"))  # GEMM tile depth (a multiple of TILE): one barrier per TK
RED = int(os.environ.get("NETDSL_CUDA_RED", "16" if SIM else "128"))  # threads of a reduction block (2^k)
BLOCK = 32 if SIM else 256  # threads of a pointwise block
GRID = 4 if SIM else 65535  # blocks of a grid-stride launch (per grid axis)

if RED & (RED - 1) or RED < 2:
    raise ValueError(f"NETDSL_CUDA_RED must be a power of two ≥ 2, found {RED}")
if TK % TILE:
    raise ValueError(f"NETDSL_CUDA_TK must be a multiple of the tile edge {TILE}, found {TK}")

if hasattr(config, "CUDA_LOW_OCCUPANCY_WARNINGS"):
    config.CUDA_LOW_OCCUPANCY_WARNINGS = 0  # tiny per-step launches are the norm here

# Optional record of every launch (kernel name and argument types), for compiling each one to PTX offline.
_RECORD = os.environ.get("NETDSL_CUDA_RECORD")
KERNELS: dict[str, object] = {}  # name -> kernel, for the PTX check


def kernel(fn):
    """`cuda.jit` with on-disk caching, registered by name."""
    k = cuda.jit(cache=True)(fn)
    KERNELS[f"{fn.__module__}.{fn.__name__}"] = k
    return k


def device(fn):
    return cuda.jit(device=True)(fn)


def _arg_type(a) -> list:
    if hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic):
        return ["array", np.dtype(a.dtype).name, len(a.shape), "C" if _contiguous(a) else "A"]
    if isinstance(a, tuple):
        return ["tuple", "int64", len(a)]
    if isinstance(a, (bool, np.bool_)):
        return ["scalar", "bool"]
    if isinstance(a, np.generic):
        return ["scalar", np.dtype(type(a)).name]
    return ["scalar", "int64" if isinstance(a, int) else "float64"]


def _record(k, args) -> None:
    """Append the launch's kernel and argument types to NETDSL_CUDA_RECORD (one JSON line)."""
    import json

    name = next((n for n, v in KERNELS.items() if v is k), repr(k))
    with open(_RECORD, "a", encoding="utf-8") as f:
        f.write(json.dumps([name, [_arg_type(a) for a in args]]) + "\n")


def _contiguous(a) -> bool:
    c = getattr(a, "is_c_contiguous", None)
    return bool(c()) if callable(c) else bool(a.flags["C_CONTIGUOUS"])


def launch(k, work: int, *args, threads: int = BLOCK) -> None:
    """Run `k` over `work` items with a 1-D grid-stride launch (nothing when there is no work)."""
    if work <= 0:
        return
    blocks = min(GRID, (work + threads - 1) // threads)
    if _RECORD:
        _record(k, args)
    k[blocks, threads](*args)


def launch_blocks(k, units: int, *args) -> None:
    """One block of RED threads per unit (a row, a channel), grid-striding over the units."""
    if units <= 0:
        return
    if _RECORD:
        _record(k, args)
    k[min(GRID, units), RED](*args)


def flat(a):
    """A contiguous device array seen as 1-D (no copy)."""
    return a.reshape(a.size) if len(a.shape) != 1 else a


_EMPTY: dict[np.dtype, object] = {}


def empty(dtype):
    """A zero-length device array of `dtype` (an absent bias, an unused argument)."""
    dt = np.dtype(dtype)
    e = _EMPTY.get(dt)
    if e is None:
        e = _EMPTY[dt] = cuda.device_array(0, dt)
    return e


_SCRATCH: dict[tuple[str, np.dtype], object] = {}


def scratch(name: str, size: int, dtype=np.float64):
    """A device buffer of `size` elements, kept for reuse per (name, dtype) and grown when too small."""
    dt = np.dtype(dtype)
    size = max(1, int(size))
    buf = _SCRATCH.get((name, dt))
    if buf is None or buf.size < size:
        buf = _SCRATCH[(name, dt)] = cuda.device_array(size, dt)
    return buf[:size] if buf.size != size else buf


def _whole(key, ndim: int):
    return (slice(None),) * ndim if key is Ellipsis else key


if SIM:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _DeviceArray
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceArray


class SettableArray(_DeviceArray):
    """A device array that also takes ``a[...] = x`` and ``a[...]`` (numba's refuse an Ellipsis index; numpy
    code, the runtime's included, writes parameters that way). Same memory, same kernels' view of it."""

    def __getitem__(self, key):
        return super().__getitem__(_whole(key, len(self.shape)))

    def __setitem__(self, key, value):
        return super().__setitem__(_whole(key, len(self.shape)), value)


def settable(a):
    """`a` (a device array) as a SettableArray sharing its memory."""
    if isinstance(a, SettableArray):
        return a
    if SIM:
        return SettableArray(a._ary)
    return SettableArray(a.shape, a.strides, a.dtype, gpu_data=a.gpu_data)


def scalar_arg(g, dtype=np.float64):
    """A loss gradient given as a float or as a device array: (device array or empty, float)."""
    if isinstance(g, (int, float, np.floating, np.integer)):
        return empty(dtype), float(g)
    return flat(g), 0.0


@device
def imin(a, b):
    # min of two numbers (numba's built-in min goes through a varargs overload that the deprecated built-in
    # CUDA target cannot compile without a device; this one compiles anywhere)
    return a if a <= b else b  # noqa: FURB136


@device
def imax(a, b):
    return a if a >= b else b  # noqa: FURB136


# ----------------------------------------------------------------------------------------- reductions


@device
def _block_sum(sh, v):
    # every thread of the block passes v; all get the block's total (sh: shared float64[RED])
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = RED // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()  # sh may be reused right away
    return r


@device
def _block_max(sh, v):
    # the block's maximum; a NaN anywhere makes it NaN (as numpy's max does)
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = RED // 2
    while s > 0:
        if t < s:
            a = sh[t]
            b = sh[t + s]
            if b > a or math.isnan(b):
                sh[t] = b
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()
    return r


@kernel
def _sum_lines(x, A, L, l0, n, I, out, o0):
    # out[o0 + l] = sum over a, i of x[(a * L + l0 + l) * I + i], l < n: column sums of an (A, L, I) view
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for l in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        acc = 0.0
        for e in range(t, A * I, RED):
            a = e // I
            i = e - a * I
            acc += float(x[(a * L + l0 + l) * I + i])
        tot = _block_sum(sh, acc)
        if t == 0:
            out[o0 + l] = tot


def sum_lines(x, A: int, L: int, I: int, out, l0: int = 0, n: int | None = None, o0: int = 0) -> None:
    """out[o0 + l] = Σ_{a, i} x[a, l0 + l, i] for x seen as (A, L, I) (bias gradients)."""
    n = L - l0 if n is None else n
    launch_blocks(_sum_lines, n, flat(x), A, L, l0, n, I, flat(out), o0)


@kernel
def _reduce_stage(x, n, kind, part):
    # per block: the sum of x[i] (kind 0) or of x[i]^2 (kind 1) over a grid-stride share -> part[block]
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.blockIdx.x * RED + t, n, cuda.gridDim.x * RED):
        v = float(x[i])
        acc += v * v if kind == 1 else v
    tot = _block_sum(sh, acc)
    if t == 0:
        part[cuda.blockIdx.x] = tot


def total_squares(arrays) -> float:
    """Σ over the arrays of Σ x², in float64, with a single device-to-host copy (a global gradient norm²)."""
    arrays = [a for a in arrays if a.size > 0]
    if not arrays:
        return 0.0
    counts = [min(GRID, (a.size + RED - 1) // RED) for a in arrays]
    part = scratch("total_squares.part", sum(counts))
    o = 0
    for a, blocks in zip(arrays, counts, strict=True):
        args = (flat(a), a.size, 1, part[o:o + blocks])
        if _RECORD:
            _record(_reduce_stage, args)
        _reduce_stage[blocks, RED](*args)
        o += blocks
    out = scratch("total_squares.out", 1)
    if _RECORD:
        _record(_reduce_stage, (part, o, 0, out))
    _reduce_stage[1, RED](part, o, 0, out)
    return float(out.copy_to_host()[0])


def total(x, squares: bool = False) -> float:
    """Σ x (or Σ x²) over a device array, in float64, returned to the host."""
    part = device_total(x, squares)
    return float(part.copy_to_host()[0]) if part is not None else 0.0


def device_total(x, squares: bool = False):
    """Σ x (or Σ x²) into a one-element float64 device array (None for an empty x)."""
    n = x.size
    if n == 0:
        return None
    blocks = min(GRID, (n + RED - 1) // RED)
    part = scratch("total.part", blocks)
    if _RECORD:
        _record(_reduce_stage, (flat(x), n, 1 if squares else 0, part))
    _reduce_stage[blocks, RED](flat(x), n, 1 if squares else 0, part)
    if blocks > 1:
        out = scratch("total.out", 1)
        if _RECORD:
            _record(_reduce_stage, (part, blocks, 0, out))
        _reduce_stage[1, RED](part, blocks, 0, out)
        return out
    return part


# --------------------------------------------------------------------------------------------- GEMM


@kernel
def _gemm(M, N, K, S, Z, Z2,
          A, a_off, a_z1, a_z2, a_s, a_rs, a_cs,
          B, b_off, b_z1, b_z2, b_s, b_rs, b_cs,
          C, c_off, c_z1, c_z2, c_rs, c_cs,
          alpha, beta, bias, bias_rs, bias_cs, zero):
    # For z < Z (z1 = z // Z2, z2 = z % Z2), i < M, j < N:
    #   C[z][i, j] = alpha * sum_{s < S, k < K} A[z, s][i, k] B[z, s][k, j] + beta * C[z][i, j] + bias[i, j]
    # where X[z, s][r, c] = X[x_off + z1 * x_z1 + z2 * x_z2 + s * x_s + r * x_rs + c * x_cs] (C without s).
    # beta is 0 or 1 (C is not read when 0); bias has bias_rs/bias_cs strides, or is empty.
    sA = cuda.shared.array((TILE, TK), dtype=A.dtype)
    sB = cuda.shared.array((TK, TILE), dtype=B.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    ntm = (M + TILE - 1) // TILE
    ntn = (N + TILE - 1) // TILE
    has_bias = bias.size > 0
    for z in range(cuda.blockIdx.z, Z, cuda.gridDim.z):
        z1 = z // Z2
        z2 = z - z1 * Z2
        for ti in range(cuda.blockIdx.y, ntm, cuda.gridDim.y):
            i = ti * TILE + ty
            for tj in range(cuda.blockIdx.x, ntn, cuda.gridDim.x):
                j = tj * TILE + tx
                acc = zero
                for s in range(S):
                    abase = a_off + z1 * a_z1 + z2 * a_z2 + s * a_s
                    bbase = b_off + z1 * b_z1 + z2 * b_z2 + s * b_s
                    for k0 in range(0, K, TK):
                        for l in range(tx, TK, TILE):  # row ty of the A tile
                            ka = k0 + l
                            if i < M and ka < K:
                                sA[ty, l] = A[abase + i * a_rs + ka * a_cs]
                            else:
                                sA[ty, l] = 0
                        for l in range(ty, TK, TILE):  # column tx of the B tile
                            kb = k0 + l
                            if kb < K and j < N:
                                sB[l, tx] = B[bbase + kb * b_rs + j * b_cs]
                            else:
                                sB[l, tx] = 0
                        cuda.syncthreads()
                        for kk in range(TK):
                            acc += sA[ty, kk] * sB[kk, tx]
                        cuda.syncthreads()
                if i < M and j < N:
                    v = alpha * acc
                    if has_bias:
                        v += bias[i * bias_rs + j * bias_cs]
                    ci = c_off + z1 * c_z1 + z2 * c_z2 + i * c_rs + j * c_cs
                    if beta != 0.0:
                        v += C[ci]
                    C[ci] = v


@kernel
def _gemm_small(M, N, K, S, Z, Z2,
                A, a_off, a_z1, a_z2, a_s, a_rs, a_cs,
                B, b_off, b_z1, b_z2, b_s, b_rs, b_cs,
                C, c_off, c_z1, c_z2, c_rs, c_cs,
                alpha, beta, bias, bias_rs, bias_cs, zero):
    # `_gemm` for a short contraction (S·K <= TK): one thread per output element, no tiles (nothing to reuse)
    has_bias = bias.size > 0
    MN = M * N
    for e in range(cuda.grid(1), Z * MN, cuda.gridsize(1)):
        z = e // MN
        r = e - z * MN
        i = r // N
        j = r - i * N
        z1 = z // Z2
        z2 = z - z1 * Z2
        acc = zero
        for s in range(S):
            abase = a_off + z1 * a_z1 + z2 * a_z2 + s * a_s + i * a_rs
            bbase = b_off + z1 * b_z1 + z2 * b_z2 + s * b_s + j * b_cs
            for k in range(K):
                acc += A[abase + k * a_cs] * B[bbase + k * b_rs]
        v = alpha * acc
        if has_bias:
            v += bias[i * bias_rs + j * bias_cs]
        ci = c_off + z1 * c_z1 + z2 * c_z2 + i * c_rs + j * c_cs
        if beta != 0.0:
            v += C[ci]
        C[ci] = v


class Mat:
    """A matrix operand of `gemm`: a device array and the strides of its element (r, c) in batch z, slice s.

    element = arr.flat[off + z1·z1s + z2·z2s + s·ss + r·rs + c·cs]
    """

    __slots__ = ("arr", "cs", "off", "rs", "s", "z1", "z2")

    def __init__(self, arr, off=0, z1=0, z2=0, s=0, rs=0, cs=1):
        self.arr = flat(arr)
        self.off, self.z1, self.z2, self.s, self.rs, self.cs = off, z1, z2, s, rs, cs


def mat(a, trans: bool = False, off: int = 0, ld: int | None = None) -> Mat:
    """A 2-D operand (rows, cols), or its transpose; `ld` the row stride (default: cols)."""
    cols = a.shape[len(a.shape) - 1]
    ld = cols if ld is None else ld
    return Mat(a, off, rs=1, cs=ld) if trans else Mat(a, off, rs=ld, cs=1)


def batched(a, trans: bool = False, batch: int | None = None, sum_batch: bool = False) -> Mat:
    """A 3-D operand (Z, rows, cols) per batch element (stride 0 when Z is 1: shared by every batch), or
    summed over its batch (`sum_batch`: the S slices)."""
    z, r, c = a.shape
    zs = 0 if z == 1 else r * c
    m = Mat(a, 0, 0 if sum_batch else zs, 0, zs if sum_batch else 0, c, 1)
    if trans:
        m.rs, m.cs = 1, c
    return m


def gemm(a: Mat, b: Mat, c: Mat, M: int, N: int, K: int, Z: int = 1, Z2: int = 1, S: int = 1,
         alpha: float = 1.0, accumulate: bool = False, bias=None, bias_rs: int = 0, bias_cs: int = 1) -> None:
    """C = alpha · op(A) op(B) [+ C] [+ bias] for every batch z < Z (see `_gemm`)."""
    if M <= 0 or N <= 0 or Z <= 0:
        return
    dt = c.arr.dtype
    bias = empty(dt) if bias is None or bias.size == 0 else flat(bias)
    ntm, ntn = (M + TILE - 1) // TILE, (N + TILE - 1) // TILE
    cap_xy = 2 if SIM else 65535
    grid = (min(ntn, cap_xy if SIM else 2**31 - 1), min(ntm, cap_xy), min(Z, 2 if SIM else 65535))
    args = (M, N, K, S, Z, Z2,
            a.arr, a.off, a.z1, a.z2, a.s, a.rs, a.cs,
            b.arr, b.off, b.z1, b.z2, b.s, b.rs, b.cs,
            c.arr, c.off, c.z1, c.z2, c.rs, c.cs,
            float(alpha), 1.0 if accumulate else 0.0, bias, bias_rs, bias_cs, dt.type(0))
    if K * S <= TK:
        launch(_gemm_small, Z * M * N, *args)
        return
    if _RECORD:
        _record(_gemm, args)
    _gemm[grid, (TILE, TILE)](*args)


def cdiv(a: int, b: int) -> int:
    return -((-a) // b)


def prod(shape) -> int:
    return math.prod(shape)
