"""Binary elementwise kernels with numpy broadcasting: add, sub, mul, div — forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True)``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, float32 or float64 (one dtype per call).
- Backward kernels OVERWRITE their gradient outputs; ``need_ga`` / ``need_gb`` skip an unused one (its output
  may then be a zero-size placeholder).

Broadcasting: ``out`` has the broadcast shape (rank <= 5). The caller passes each input reshaped to the
output's rank with size-1 axes where it is broadcast (numpy's right-aligned rule is also applied when an
input has a lower rank). A scalar operand is an array of ones-shape. Backward sums the gradient over each
input's broadcast axes, so ``ga`` has exactly ``a``'s shape and ``gb`` ``b``'s.

Inputs of the output's size take a flat fast path; everything else walks the output as 4 outer loops plus
a unit-stride inner loop (broadcast axes have stride 0), with the op chosen outside the inner loop.
"""

import numpy as np
from numba import njit

_ADD = 0
_SUB = 1
_MUL = 2
_DIV = 3


@njit(cache=True)
def _strides5(out, a):
    # element strides of a aligned to out's axes padded to rank 5; 0 on broadcast (size-1) axes
    s = np.zeros(5, np.int64)
    off = 5 - a.ndim
    st = 1
    for d in range(a.ndim - 1, -1, -1):
        if a.shape[d] != 1:
            s[off + d] = st
        st *= a.shape[d]
    return s


@njit(cache=True)
def _shape5(out):
    n = np.ones(5, np.int64)
    off = 5 - out.ndim
    for d in range(out.ndim):
        n[off + d] = out.shape[d]
    return n


@njit(cache=True)
def _binary_forward(a, b, out, op):
    af = a.reshape(a.size)
    bf = b.reshape(b.size)
    of = out.reshape(out.size)
    if a.size == out.size and b.size == out.size:
        if op == _ADD:
            for i in range(of.shape[0]):
                of[i] = af[i] + bf[i]
        elif op == _SUB:
            for i in range(of.shape[0]):
                of[i] = af[i] - bf[i]
        elif op == _MUL:
            for i in range(of.shape[0]):
                of[i] = af[i] * bf[i]
        else:
            for i in range(of.shape[0]):
                of[i] = af[i] / bf[i]
        return
    n = _shape5(out)
    sa = _strides5(out, a)
    sb = _strides5(out, b)
    n4 = n[4]
    a4 = sa[4]
    b4 = sb[4]
    for i0 in range(n[0]):
        for i1 in range(n[1]):
            for i2 in range(n[2]):
                for i3 in range(n[3]):
                    oo = (((i0 * n[1] + i1) * n[2] + i2) * n[3] + i3) * n4
                    oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]
                    ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]
                    if op == _ADD:
                        for i in range(n4):
                            of[oo + i] = af[oa + i * a4] + bf[ob + i * b4]
                    elif op == _SUB:
                        for i in range(n4):
                            of[oo + i] = af[oa + i * a4] - bf[ob + i * b4]
                    elif op == _MUL:
                        for i in range(n4):
                            of[oo + i] = af[oa + i * a4] * bf[ob + i * b4]
                    else:
                        for i in range(n4):
                            of[oo + i] = af[oa + i * a4] / bf[ob + i * b4]


@njit(cache=True)
def _term(op, which, g, av, bv):
    # d(a op b)/d(a or b) times the upstream gradient g
    if op == _ADD:
        return g
    if op == _SUB:
        return g if which == 0 else -g
    if op == _MUL:
        return g * bv if which == 0 else g * av
    return g / bv if which == 0 else -g * av / (bv * bv)


@njit(cache=True)
def _binary_grad(gout, a, b, target, which, op):
    # target has the shape of a (which=0) or b (which=1); sums over that operand's broadcast axes
    gf = gout.reshape(gout.size)
    af = a.reshape(a.size)
    bf = b.reshape(b.size)
    tf = target.reshape(target.size)
    if a.size == gout.size and b.size == gout.size:
        for i in range(gf.shape[0]):
            tf[i] = _term(op, which, gf[i], af[i], bf[i])
        return
    tf[:] = 0.0
    n = _shape5(gout)
    sa = _strides5(gout, a)
    sb = _strides5(gout, b)
    st = sa if which == 0 else sb
    n4 = n[4]
    a4 = sa[4]
    b4 = sb[4]
    t4 = st[4]
    for i0 in range(n[0]):
        for i1 in range(n[1]):
            for i2 in range(n[2]):
                for i3 in range(n[3]):
                    oo = (((i0 * n[1] + i1) * n[2] + i2) * n[3] + i3) * n4
                    oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]
                    ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]
                    ot = i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3]
                    for i in range(n4):
                        tf[ot + i * t4] += _term(op, which, gf[oo + i], af[oa + i * a4], bf[ob + i * b4])


@njit(cache=True)
def add_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out (broadcast shape)
    _binary_forward(a, b, out, _ADD)


@njit(cache=True)
def add_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b (their own shapes) -> ga like a, gb like b
    if need_ga:
        _binary_grad(gout, a, b, ga, 0, _ADD)
    if need_gb:
        _binary_grad(gout, a, b, gb, 1, _ADD)


@njit(cache=True)
def sub_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a - b
    _binary_forward(a, b, out, _SUB)


@njit(cache=True)
def sub_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b -> ga like a, gb like b
    if need_ga:
        _binary_grad(gout, a, b, ga, 0, _SUB)
    if need_gb:
        _binary_grad(gout, a, b, gb, 1, _SUB)


@njit(cache=True)
def mul_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a * b
    _binary_forward(a, b, out, _MUL)


@njit(cache=True)
def mul_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b -> ga = sum(g * b), gb = sum(g * a) over broadcast axes
    if need_ga:
        _binary_grad(gout, a, b, ga, 0, _MUL)
    if need_gb:
        _binary_grad(gout, a, b, gb, 1, _MUL)


@njit(cache=True)
def div_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a / b
    _binary_forward(a, b, out, _DIV)


@njit(cache=True)
def div_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b -> ga = sum(g / b), gb = sum(-g * a / b^2) over broadcast axes
    if need_ga:
        _binary_grad(gout, a, b, ga, 0, _DIV)
    if need_gb:
        _binary_grad(gout, a, b, gb, 1, _DIV)
