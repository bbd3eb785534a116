"""Vectorisable float32 transcendental functions for the kernels' inner loops.

Numba calls libm's scalar tanhf/expf/erff once per element, which LLVM cannot vectorise without SVML: a tanh
over a LeNet activation took 4–8 ms where NumPy's SIMD tanh takes 0.05 ms. These inline rational and
polynomial forms compile to straight-line arithmetic that LLVM vectorises. They are used only on float32
arrays (`fast` = itemsize 4, decided once per kernel call, outside the loop); float64 — the gradient checks'
dtype — keeps the exact libm functions.

All arithmetic of the *32 forms is float32. Accuracy as tests/kernels/test_fastmath.py measures it: tanh within
6 ulp (Eigen's 13/6 rational form; the worst near saturation), exp within 1 ulp on [-87, 88] (Cephes'
polynomial with a 2^n scale built by a bit cast), sigmoid within 3 ulp, erf within 6e-7 absolute
(Abramowitz–Stegun 7.1.26, whose own error is 1.5e-7; the rest is float32 cancellation in 1 - y·exp(-x²)).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_f = np.float32  # every constant of the *32 forms is float32: a float64 one would promote the whole
# polynomial to double precision, which LLVM then vectorises at a quarter of the width with slow divisions

_T_LIM = _f(7.90531110763549805)
_A1, _A3, _A5, _A7 = _f(4.89352455891786e-03), _f(6.37261928875436e-04), _f(1.48572235717979e-05), _f(5.12229709037114e-08)
_A9, _A11, _A13 = _f(-8.60467152213735e-11), _f(2.00018790482477e-13), _f(-2.76076847742355e-16)
_B0, _B2, _B4, _B6 = _f(4.89352518554385e-03), _f(2.26843463243900e-03), _f(1.18534705686654e-04), _f(1.19825839466702e-06)

_LOG2E = _f(1.44269504088896341)
_C1, _C2 = _f(0.693359375), _f(-2.12194440e-4)
_P0, _P1, _P2 = _f(1.9875691500e-4), _f(1.3981999507e-3), _f(8.3334519073e-3)
_P3, _P4, _P5 = _f(4.1665795894e-2), _f(1.6666665459e-1), _f(5.0000001201e-1)
_EXP_LO, _EXP_HI = _f(-87.3), _f(88.7)
_ONE, _HALF, _ZERO = _f(1.0), _f(0.5), _f(0.0)
_E_P, _E1, _E2, _E3, _E4, _E5 = (_f(0.3275911), _f(1.061405429), _f(-1.453152027), _f(1.421413741), _f(-0.284496736),
                                 _f(0.254829592))


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
    x = min(max(x, _EXP_LO), _EXP_HI)
    n = np.floor(x * _LOG2E + _HALF)  # np.floor keeps float32 (math.floor would give an int64)
    r = x - n * _C1 - n * _C2
    y = _P0 * r + _P1
    y = y * r + _P2
    y = y * r + _P3
    y = y * r + _P4
    y = y * r + _P5
    y = y * r * r + r + _ONE
    return y * _bits_to_float32(np.int32((np.int32(n) + 127) << 23))


@njit(cache=True, inline="always", error_model="numpy")
def tanh(x, fast):
    return tanh32(x) if fast else math.tanh(x)


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid(x, fast):
    if fast:
        return _ONE / (_ONE + exp32(-x))
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, inline="always", error_model="numpy")
def exp(x, fast):
    return exp32(x) if fast else math.exp(x)


@njit(cache=True, inline="always", fastmath=True, error_model="numpy")
def erf32(x):
    a = abs(x)
    t = _ONE / (_ONE + _E_P * a)
    y = ((((_E1 * t + _E2) * t + _E3) * t + _E4) * t + _E5) * t
    e = _ONE - y * exp32(-a * a)
    return e if x >= _ZERO else -e


@njit(cache=True, inline="always", error_model="numpy")
def erf(x, fast):
    return erf32(x) if fast else math.erf(x)
