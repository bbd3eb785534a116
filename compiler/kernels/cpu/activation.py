"""Activation kernels: relu, leaky_relu, sigmoid, tanh, gelu (exact), softmax, identity, dropout.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, float32 or float64 (one dtype per call).
- Backward kernels OVERWRITE their gradient outputs (fan-out accumulation is the caller's job).
- Pointwise kernels accept arrays of any rank (all operands the same shape) and walk them flat.
  ``out`` may alias ``x`` (in-place) for every forward here; what backward reads is chosen so that in-place
  forwards stay differentiable: relu, sigmoid, tanh and softmax read their output ``y``; leaky_relu and gelu
  read their input ``x``; dropout reads nothing (its mask is recomputed).
- softmax works on an ``(A, L, I)`` view and normalises the middle axis (axis=-1 is I=1).
- dropout is inverted dropout: kept elements are scaled by 1/(1-p). The mask is a pure function of
  (seed, step, node_id, flat element index) through a splitmix64 hash, so forward and backward (and a rerun)
  agree without any stored mask or global RNG state. In eval mode the caller uses identity instead.
"""

import math

import numpy as np
from numba import njit, prange

from . import fastmath as fm
from ._common import LANES, copy_flat

# below this many elements a prange launch costs more than it saves; the cheap, memory-bound pointwise loops
# stay serial, GELU's erf and exp split into lanes from _PAR_POINTWISE elements a lane
_PAR_MIN = 1 << 17
_PAR_POINTWISE = 1 << 15
_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT1_2_32, _INV_SQRT_2PI_32 = np.float32(_SQRT1_2), np.float32(_INV_SQRT_2PI)
_HALF32, _ONE32 = np.float32(0.5), np.float32(1.0)


@njit(cache=True, error_model="numpy")
def relu_forward(x, out):
    # x (...) -> out (...)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for i in range(xf.shape[0]):
        v = xf[i]
        of[i] = 0.0 if v <= 0 else v  # NaN propagates, as in PyTorch


@njit(cache=True, error_model="numpy")
def relu_backward(gout, y, gx):
    # gout, y = forward output (...) -> gx (...)
    gf = gout.reshape(gout.size)
    yf = y.reshape(y.size)
    xf = gx.reshape(gx.size)
    for i in range(gf.shape[0]):
        xf[i] = gf[i] if yf[i] > 0 else 0.0


@njit(cache=True, error_model="numpy")
def leaky_relu_forward(x, a, out):
    # x (...), a = negative slope -> out (...)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for i in range(xf.shape[0]):
        v = xf[i]
        of[i] = v if v > 0 else a * v


@njit(cache=True, error_model="numpy")
def leaky_relu_backward(gout, x, a, gx):
    # gout, x = forward input (...) -> gx (...)
    gf = gout.reshape(gout.size)
    xf = x.reshape(x.size)
    of = gx.reshape(gx.size)
    for i in range(gf.shape[0]):
        of[i] = gf[i] if xf[i] > 0 else a * gf[i]


@njit(cache=True, error_model="numpy")
def sigmoid_forward(x, out):
    # x (...) -> out (...); the two branches keep exp from overflowing
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    fast = x.itemsize == 4  # float32: the vectorisable form (fastmath.py)
    for i in range(xf.shape[0]):
        of[i] = fm.sigmoid(xf[i], fast)


@njit(cache=True, error_model="numpy")
def sigmoid_backward(gout, y, gx):
    # gout, y = forward output (...) -> gx (...)
    gf = gout.reshape(gout.size)
    yf = y.reshape(y.size)
    of = gx.reshape(gx.size)
    for i in range(gf.shape[0]):
        of[i] = gf[i] * yf[i] * (1.0 - yf[i])


@njit(cache=True, error_model="numpy")
def tanh_forward(x, out):
    # x (...) -> out (...)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    fast = x.itemsize == 4
    for i in range(xf.shape[0]):
        of[i] = fm.tanh(xf[i], fast)


@njit(cache=True, error_model="numpy")
def tanh_backward(gout, y, gx):
    # gout, y = forward output (...) -> gx (...)
    gf = gout.reshape(gout.size)
    yf = y.reshape(y.size)
    of = gx.reshape(gx.size)
    for i in range(gf.shape[0]):
        of[i] = gf[i] * (1.0 - yf[i] * yf[i])


@njit(cache=True, error_model="numpy")
def _gelu_fwd_range(xf, of, i0, i1):
    # the loops run over views from 0: LLVM does not vectorise `range(i0, i1)` here (7x slower)
    xs = xf[i0:i1]
    os = of[i0:i1]
    if xf.itemsize == 4:  # float32 arithmetic throughout: one float64 constant would widen the whole loop
        for i in range(xs.shape[0]):
            v = xs[i]
            os[i] = _HALF32 * v * (_ONE32 + fm.erf32(v * _SQRT1_2_32))
    else:
        for i in range(xs.shape[0]):
            v = xs[i]
            os[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT1_2))


@njit(cache=True, error_model="numpy", parallel=True)
def _gelu_fwd_par(xf, of, nl):
    n = xf.shape[0]
    for lane in prange(nl):
        _gelu_fwd_range(xf, of, lane * n // nl, (lane + 1) * n // nl)


@njit(cache=True, error_model="numpy")
def gelu_forward(x, out):
    # x (...) -> out (...); exact GELU x * Phi(x) with erf, not the tanh approximation
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    nl = min(LANES, xf.shape[0] // _PAR_POINTWISE)
    if nl > 1:
        _gelu_fwd_par(xf, of, nl)
    else:
        _gelu_fwd_range(xf, of, 0, xf.shape[0])


@njit(cache=True, error_model="numpy")
def _gelu_bwd_range(gf, xf, of, i0, i1):
    gs = gf[i0:i1]
    xs = xf[i0:i1]
    os = of[i0:i1]
    if xf.itemsize == 4:
        for i in range(xs.shape[0]):
            v = xs[i]
            cdf = _HALF32 * (_ONE32 + fm.erf32(v * _SQRT1_2_32))
            pdf = _INV_SQRT_2PI_32 * fm.exp32(-_HALF32 * v * v)
            os[i] = gs[i] * (cdf + v * pdf)
    else:
        for i in range(xs.shape[0]):
            v = xs[i]
            cdf = 0.5 * (1.0 + math.erf(v * _SQRT1_2))
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * v * v)
            os[i] = gs[i] * (cdf + v * pdf)


@njit(cache=True, error_model="numpy", parallel=True)
def _gelu_bwd_par(gf, xf, of, nl):
    n = xf.shape[0]
    for lane in prange(nl):
        _gelu_bwd_range(gf, xf, of, lane * n // nl, (lane + 1) * n // nl)


@njit(cache=True, error_model="numpy")
def gelu_backward(gout, x, gx):
    # gout, x = forward input (...) -> gx (...); d/dx = Phi(x) + x * phi(x)
    gf = gout.reshape(gout.size)
    xf = x.reshape(x.size)
    of = gx.reshape(gx.size)
    nl = min(LANES, xf.shape[0] // _PAR_POINTWISE)
    if nl > 1:
        _gelu_bwd_par(gf, xf, of, nl)
    else:
        _gelu_bwd_range(gf, xf, of, 0, xf.shape[0])


@njit(cache=True, error_model="numpy")
def identity_forward(x, out):
    # x (...) -> out (...)
    copy_flat(x, out)


@njit(cache=True, error_model="numpy")
def identity_backward(gout, gx):
    # gout (...) -> gx (...)
    copy_flat(gout, gx)


@njit(cache=True, error_model="numpy")
def _softmax_fwd_line(x, a, i, out):
    # one line x[a, :, i]; the max is subtracted so exp cannot overflow
    L = x.shape[1]
    m = -math.inf
    for j in range(L):
        m = max(m, x[a, j, i])
    s = 0.0
    fast = x.itemsize == 4
    for j in range(L):
        e = fm.exp(x[a, j, i] - m, fast)
        out[a, j, i] = e
        s += e
    r = 1.0 / s
    for j in range(L):
        out[a, j, i] *= r


@njit(cache=True, error_model="numpy", parallel=True)
def _softmax_fwd_par(x, out):
    I = x.shape[2]
    for ai in prange(x.shape[0] * I):
        _softmax_fwd_line(x, ai // I, ai % I, out)


@njit(cache=True, error_model="numpy")
def softmax_forward(x, out):
    # x (A, L, I) -> out (A, L, I), normalised over L
    if x.size >= _PAR_MIN:
        _softmax_fwd_par(x, out)
        return
    for a in range(x.shape[0]):
        for i in range(x.shape[2]):
            _softmax_fwd_line(x, a, i, out)


@njit(cache=True, error_model="numpy")
def _softmax_bwd_line(gout, y, a, i, gx):
    # gx = y * (g - sum_L g*y)
    L = y.shape[1]
    s = 0.0
    for j in range(L):
        s += gout[a, j, i] * y[a, j, i]
    for j in range(L):
        gx[a, j, i] = y[a, j, i] * (gout[a, j, i] - s)


@njit(cache=True, error_model="numpy", parallel=True)
def _softmax_bwd_par(gout, y, gx):
    I = y.shape[2]
    for ai in prange(y.shape[0] * I):
        _softmax_bwd_line(gout, y, ai // I, ai % I, gx)


@njit(cache=True, error_model="numpy")
def softmax_backward(gout, y, gx):
    # gout, y = forward output (A, L, I) -> gx (A, L, I)
    if y.size >= _PAR_MIN:
        _softmax_bwd_par(gout, y, gx)
        return
    for a in range(y.shape[0]):
        for i in range(y.shape[2]):
            _softmax_bwd_line(gout, y, a, i, gx)


@njit(cache=True, error_model="numpy")
def _splitmix(z):
    # splitmix64 finaliser: a bijective avalanche on uint64 (wrapping arithmetic)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, error_model="numpy")
def dropout_key(seed, step, node_id):
    # one 64-bit stream key per (seed, step, node); chained so that no two fields can cancel
    k = _splitmix(np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15))
    k = _splitmix(k ^ np.uint64(step))
    return _splitmix(k ^ np.uint64(node_id))


@njit(cache=True, error_model="numpy")
def dropout_uniform(key, i):
    # uniform in [0, 1) for element i: 53 high bits of splitmix64 at stream position i
    h = _splitmix(key + (np.uint64(i) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
    return np.float64(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, error_model="numpy")
def dropout_forward(x, p, seed, step, node_id, out):
    # x (...) -> out (...); element i kept iff uniform(seed, step, node_id, i) >= p, then scaled by 1/(1-p)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    key = dropout_key(seed, step, node_id)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    for i in range(xf.shape[0]):
        of[i] = xf[i] * scale if dropout_uniform(key, i) >= p else 0.0


@njit(cache=True, error_model="numpy")
def dropout_backward(gout, p, seed, step, node_id, gx):
    # gout (...) -> gx (...), the same mask regenerated from (seed, step, node_id)
    gf = gout.reshape(gout.size)
    of = gx.reshape(gx.size)
    key = dropout_key(seed, step, node_id)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    for i in range(gf.shape[0]):
        of[i] = gf[i] * scale if dropout_uniform(key, i) >= p else 0.0
