"""Activation kernels on the device: relu, leaky_relu, sigmoid, tanh, gelu (exact), softmax, identity, dropout.

Same functions and signatures as ``kernels/cpu/activation.py``, on device arrays. Pointwise kernels walk
the flat arrays with a grid-stride loop (any rank; ``out`` may alias ``x``). softmax normalises the middle
axis of an ``(A, L, I)`` view with one block per line: the maximum and the sum are shared-memory tree
reductions. dropout regenerates the CPU backend's mask exactly: the same splitmix64 hash of (seed, step,
node, flat index), the per-call key computed on the host.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ._common import RED, _block_max, _block_sum, device, flat, kernel, launch, launch_blocks

_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327

RELU, LEAKY, SIGMOID, TANH, GELU, IDENTITY = 0, 1, 2, 3, 4, 5


@kernel
def _unary_fwd(x, out, op, a, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        if op == RELU:
            out[i] = 0.0 if v <= 0 else v
        elif op == LEAKY:
            out[i] = v if v > 0 else a * v
        elif op == SIGMOID:
            if v >= 0:
                out[i] = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                out[i] = e / (1.0 + e)
        elif op == TANH:
            out[i] = math.tanh(v)
        elif op == GELU:
            out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT1_2))
        else:
            out[i] = v


@kernel
def _unary_bwd(g, z, gx, op, a, n):
    # z is the forward output (relu, sigmoid, tanh) or input (leaky_relu, gelu); unused for identity
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        gv = g[i]
        if op == RELU:
            gx[i] = gv if z[i] > 0 else 0.0
        elif op == LEAKY:
            gx[i] = gv if z[i] > 0 else a * gv
        elif op == SIGMOID:
            y = z[i]
            gx[i] = gv * y * (1.0 - y)
        elif op == TANH:
            y = z[i]
            gx[i] = gv * (1.0 - y * y)
        elif op == GELU:
            v = z[i]
            cdf = 0.5 * (1.0 + math.erf(v * _SQRT1_2))
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * v * v)
            gx[i] = gv * (cdf + v * pdf)
        else:
            gx[i] = gv


def _fwd(x, out, op, a=0.0):
    launch(_unary_fwd, x.size, flat(x), flat(out), op, float(a), x.size)


def _bwd(g, z, gx, op, a=0.0):
    launch(_unary_bwd, g.size, flat(g), flat(z), flat(gx), op, float(a), g.size)


def relu_forward(x, out):
    _fwd(x, out, RELU)


def relu_backward(gout, y, gx):
    _bwd(gout, y, gx, RELU)


def leaky_relu_forward(x, a, out):
    _fwd(x, out, LEAKY, a)


def leaky_relu_backward(gout, x, a, gx):
    _bwd(gout, x, gx, LEAKY, a)


def sigmoid_forward(x, out):
    _fwd(x, out, SIGMOID)


def sigmoid_backward(gout, y, gx):
    _bwd(gout, y, gx, SIGMOID)


def tanh_forward(x, out):
    _fwd(x, out, TANH)


def tanh_backward(gout, y, gx):
    _bwd(gout, y, gx, TANH)


def gelu_forward(x, out):
    _fwd(x, out, GELU)


def gelu_backward(gout, x, gx):
    _bwd(gout, x, gx, GELU)


def identity_forward(x, out):
    _fwd(x, out, IDENTITY)


def identity_backward(gout, gx):
    _bwd(gout, gout, gx, IDENTITY)


# -------------------------------------------------------------------------------------------- softmax


@kernel
def _softmax_fwd(x, out, A, L, I):
    # one block per line (a, i) of the (A, L, I) view: out[a, :, i] = softmax(x[a, :, i])
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for line in range(cuda.blockIdx.x, A * I, cuda.gridDim.x):
        a = line // I
        base = a * L * I + (line - a * I)
        m = -math.inf
        for j in range(t, L, RED):
            v = float(x[base + j * I])
            if v > m or math.isnan(v):
                m = v
        m = _block_max(sh, m)
        s = 0.0
        for j in range(t, L, RED):
            e = math.exp(float(x[base + j * I]) - m)
            out[base + j * I] = e
            s += e
        s = _block_sum(sh, s)
        r = 1.0 / s
        for j in range(t, L, RED):
            out[base + j * I] = out[base + j * I] * r


@kernel
def _softmax_bwd(g, y, gx, A, L, I):
    # gx = y * (g - sum_L g*y), one block per line
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for line in range(cuda.blockIdx.x, A * I, cuda.gridDim.x):
        a = line // I
        base = a * L * I + (line - a * I)
        s = 0.0
        for j in range(t, L, RED):
            s += float(g[base + j * I]) * float(y[base + j * I])
        s = _block_sum(sh, s)
        for j in range(t, L, RED):
            k = base + j * I
            gx[k] = y[k] * (g[k] - s)


def softmax_forward(x, out):
    # x (A, L, I) -> out (A, L, I), normalised over L
    A, L, I = x.shape
    if L == 0:
        return
    launch_blocks(_softmax_fwd, A * I, flat(x), flat(out), A, L, I)


def softmax_backward(gout, y, gx):
    # gout, y = forward output (A, L, I) -> gx (A, L, I)
    A, L, I = y.shape
    if L == 0:
        return
    launch_blocks(_softmax_bwd, A * I, flat(gout), flat(y), flat(gx), A, L, I)


# -------------------------------------------------------------------------------------------- dropout

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix_host(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def dropout_key(seed, step, node_id) -> np.uint64:
    """The CPU backend's per-call stream key (seed, step, node), computed on the host."""
    k = _splitmix_host((int(seed) + _GOLDEN) & _M64)
    k = _splitmix_host(k ^ (int(step) & _M64))
    return np.uint64(_splitmix_host(k ^ (int(node_id) & _M64)))


@device
def _splitmix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@device
def dropout_uniform(key, i):
    # uniform in [0, 1) for element i: 53 high bits of splitmix64 at stream position i
    h = _splitmix(key + (np.uint64(i) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
    return float(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@kernel
def _dropout(x, out, p, scale, key, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i] * scale if dropout_uniform(key, i) >= p else 0.0


def dropout_forward(x, p, seed, step, node_id, out):
    # x (...) -> out (...); element i kept iff uniform(seed, step, node_id, i) >= p, then scaled by 1/(1-p)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    launch(_dropout, x.size, flat(x), flat(out), float(p), scale, dropout_key(seed, step, node_id), x.size)


def dropout_backward(gout, p, seed, step, node_id, gx):
    # gout (...) -> gx (...), the same mask regenerated from (seed, step, node_id)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    launch(_dropout, gout.size, flat(gout), flat(gx), float(p), scale, dropout_key(seed, step, node_id),
           gout.size)
