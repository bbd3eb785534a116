"""Optimizer updates on the device: the CPU kernels of ``runtime/optim.py`` (same names and signatures) as
host functions launching one fused pointwise kernel per parameter, plus the squared-norm reduction used for
gradient clipping. ``runtime.optim.Optimizer`` uses these when the parameters are device arrays (a
CudaProgram's), keeping its state arrays on the device too.
"""

from __future__ import annotations

import math

from numba import cuda

from ._common import flat as _flat
from ._common import kernel, launch, settable, total, total_squares


@kernel
def _sgd(p, g, buf, lr, momentum, nesterov, wd, scale, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = g[i] * scale + wd * p[i]
        if momentum != 0.0:
            b = momentum * buf[i] + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = p[i] - lr * d


@kernel
def _adam(p, g, m, v, lr, beta1, beta2, eps, wd, decoupled, step, root, scale, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        gi = g[i] * scale
        pi = p[i] * 1.0
        if decoupled:
            pi = pi * (1.0 - lr * wd)
        else:
            gi = gi + wd * pi
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - step * mi / (math.sqrt(vi) / root + eps)


@kernel
def _rmsprop(p, g, sq, buf, lr, alpha, eps, momentum, wd, scale, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        gi = g[i] * scale + wd * p[i]
        s = alpha * sq[i] + (1.0 - alpha) * gi * gi
        sq[i] = s
        d = gi / (math.sqrt(s) + eps)
        if momentum > 0.0:
            b = momentum * buf[i] + d
            buf[i] = b
            d = b
        p[i] = p[i] - lr * d


def flat(a, name=None):
    """A device parameter, gradient or state array seen as 1-D (no copy)."""
    return _flat(a)


def zeros_like(a):
    """A device array of zeros shaped like `a` (an optimizer's state slot)."""
    from .util import zero

    z = cuda.device_array(a.shape, a.dtype)
    zero(z)
    return settable(z)  # checkpoints restore state with state[...] = saved


def sgd_kernel(p, g, buf, lr, momentum, nesterov, wd, scale):
    launch(_sgd, p.size, _flat(p), _flat(g), _flat(buf), float(lr), float(momentum), bool(nesterov), float(wd),
           float(scale), p.size)


def adam_kernel(p, g, m, v, lr, beta1, beta2, eps, wd, decoupled, bc1, bc2, scale):
    launch(_adam, p.size, _flat(p), _flat(g), _flat(m), _flat(v), float(lr), float(beta1), float(beta2),
           float(eps), float(wd), bool(decoupled), float(lr) / float(bc1), math.sqrt(bc2), float(scale), p.size)


def rmsprop_kernel(p, g, sq, buf, lr, alpha, eps, momentum, wd, scale):
    launch(_rmsprop, p.size, _flat(p), _flat(g), _flat(sq), _flat(buf), float(lr), float(alpha), float(eps),
           float(momentum), float(wd), float(scale), p.size)


def sumsq_kernel(g) -> float:
    """Σ g² in float64 (a device-to-host copy of one number)."""
    return total(g, squares=True)


def grad_norm(grads) -> float:
    """The global norm of a list of gradient arrays, with one device-to-host copy for all of them."""
    return math.sqrt(total_squares(grads))
