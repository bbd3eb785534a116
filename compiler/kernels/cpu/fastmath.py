"""Vectorisable float32 transcendental functions for the kernels' inner loops.

Numba calls libm's scalar tanhf/expf/erff once per element, which LLVM cannot vectorise without SVML: a tanh
over a LeNet activation took 4–8 ms where NumPy's SIMD tanh takes 0.05 ms. These inline rational and
polynomial forms compile to straight-line arithmetic that LLVM vectorises. They are used only on float32
arrays (`fast` = itemsize 4, decided once per kernel call, outside the loop); float64 — the gradient checks'
dtype — keeps the exact libm functions.

Accuracy (float32): tanh within 3 ulp (Eigen's 13/6 rational form), exp within 2 ulp on [-87, 88]
(Cephes' polynomial with a 2^n scale built by a bit cast), erf within 2e-7 absolute (Abramowitz–Stegun 7.1.26).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_T_LIM = 7.90531110763549805
_A1, _A3, _A5, _A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08
_A9, _A11, _A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
_B0, _B2, _B4, _B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06

_LOG2E = 1.44269504088896341
_C1, _C2 = 0.693359375, -2.12194440e-4
_P0, _P1, _P2 = 1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3
_P3, _P4, _P5 = 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1


@intrinsic
def _bits_to_float32(typingctx, v):
    """Reinterpret an int32's bits as a float32 (how 2^n is built without a libm call)."""
    if v != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(cache=True, inline="always", fastmath=True, error_model="numpy")
def tanh32(x):
    x = min(max(x, -_T_LIM), _T_LIM)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


@njit(cache=True, inline="always", fastmath=True, error_model="numpy")
def exp32(x):
    x = min(max(x, -87.3), 88.7)
    n = math.floor(x * _LOG2E + 0.5)
    r = x - n * _C1 - n * _C2
    y = _P0 * r + _P1
    y = y * r + _P2
    y = y * r + _P3
    y = y * r + _P4
    y = y * r + _P5
    y = y * r * r + r + 1.0
    return y * _bits_to_float32(np.int32((np.int32(n) + 127) << 23))


@njit(cache=True, inline="always", error_model="numpy")
def tanh(x, fast):
    return tanh32(x) if fast else math.tanh(x)


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid(x, fast):
    if fast:
        return 1.0 / (1.0 + exp32(-x))
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, inline="always", error_model="numpy")
def exp(x, fast):
    return exp32(x) if fast else math.exp(x)


@njit(cache=True, inline="always", fastmath=True, error_model="numpy")
def erf32(x):
    s = 1.0 if x >= 0 else -1.0
    a = abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
    return s * (1.0 - y * exp32(-a * a))


@njit(cache=True, inline="always", error_model="numpy")
def erf(x, fast):
    return erf32(x) if fast else math.erf(x)
