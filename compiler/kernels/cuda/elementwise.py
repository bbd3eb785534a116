"""Elementwise kernels on the device: add, sub, mul, div with numpy broadcasting, and neg — fwd and bwd.

Same functions and signatures as ``kernels/cpu/elementwise.py``, on device arrays. The caller passes each
input at the output's rank with size-1 axes where it broadcasts (right-aligned when of lower rank).

Forward: one thread per output element (grid-stride); each operand's offset comes from its per-axis element
strides (0 on a broadcast axis), computed on the host and passed as 6-tuples. Backward writes each input's
gradient with one thread per element of that input, which sums the output gradient over the input's
broadcast axes itself: deterministic, no atomics (a bias-like operand gets a long per-thread loop).
"""

from __future__ import annotations

from numba import cuda

from ._common import flat, launch
from ._common import kernel as _kernel
from .util import RANK, broadcast_strides, contiguous_strides

ADD, SUB, MUL, DIV = 0, 1, 2, 3


@_kernel
def _binary(a, b, out, op, n, sa, sb, total):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = i
        oa = 0
        ob = 0
        for d in range(RANK - 1, -1, -1):
            nd = n[d]
            q = r // nd
            k = r - q * nd
            oa += k * sa[d]
            ob += k * sb[d]
            r = q
        x = a[oa]
        y = b[ob]
        if op == ADD:
            out[i] = x + y
        elif op == SUB:
            out[i] = x - y
        elif op == MUL:
            out[i] = x * y
        else:
            out[i] = x / y


@_kernel
def _binary_grad(g, a, b, t, which, op, kn, rn, so, sa, sb, ntarget, R):
    # t[e] = sum over the target's broadcast axes of d(out)/d(operand `which`) * g; kn: the target's kept
    # sizes (1 on reduced axes), rn: the reduced sizes (1 elsewhere); so/sa/sb element strides per axis
    for e in range(cuda.grid(1), ntarget, cuda.gridsize(1)):
        r = e
        og = 0
        oa = 0
        ob = 0
        for d in range(RANK - 1, -1, -1):
            nd = kn[d]
            q = r // nd
            k = r - q * nd
            og += k * so[d]
            oa += k * sa[d]
            ob += k * sb[d]
            r = q
        acc = 0.0
        for rr in range(R):
            r = rr
            og2 = og
            oa2 = oa
            ob2 = ob
            for d in range(RANK - 1, -1, -1):
                nd = rn[d]
                q = r // nd
                k = r - q * nd
                og2 += k * so[d]
                oa2 += k * sa[d]
                ob2 += k * sb[d]
                r = q
            gv = float(g[og2])
            if op == ADD:
                acc += gv
            elif op == SUB:
                acc += gv if which == 0 else -gv
            elif op == MUL:
                acc += gv * float(b[ob2]) if which == 0 else gv * float(a[oa2])
            else:
                bv = b[ob2]  # the dtype's division: inf for a zero divisor (as numpy's error model gives)
                acc += gv / bv if which == 0 else -gv * a[oa2] / (bv * bv)
        t[e] = acc


def _pad(t, fill):
    t = tuple(int(v) for v in t)
    return (fill,) * (RANK - len(t)) + t


def _geometry(out_shape, a_shape, b_shape):
    shape = tuple(out_shape)
    if len(shape) > RANK:
        raise ValueError(f"elementwise: more than {RANK} axes")
    return (_pad(shape, 1), _pad(broadcast_strides(a_shape, shape), 0), _pad(broadcast_strides(b_shape, shape), 0),
            _pad(contiguous_strides(shape), 0))


def _forward(a, b, out, op):
    if out.size == 0:
        return
    n, sa, sb, _ = _geometry(out.shape, a.shape, b.shape)
    launch(_binary, out.size, flat(a), flat(b), flat(out), op, n, sa, sb, out.size)


def _grad(gout, a, b, t, which, op):
    if t.size == 0:
        return
    n, sa, sb, so = _geometry(gout.shape, a.shape, b.shape)
    st = sa if which == 0 else sb
    kn = tuple(n[d] if st[d] != 0 or n[d] == 1 else 1 for d in range(RANK))
    rn = tuple(1 if st[d] != 0 or n[d] == 1 else n[d] for d in range(RANK))
    R = 1
    for d in rn:
        R *= d
    launch(_binary_grad, t.size, flat(gout), flat(a), flat(b), flat(t), which, op, kn, rn, so, sa, sb, t.size, R)


def _backward(gout, a, b, ga, gb, need_ga, need_gb, op):
    if need_ga:
        _grad(gout, a, b, ga, 0, op)
    if need_gb:
        _grad(gout, a, b, gb, 1, op)


def add_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a + b (broadcast shape)
    _forward(a, b, out, ADD)


def sub_forward(a, b, out):
    _forward(a, b, out, SUB)


def mul_forward(a, b, out):
    _forward(a, b, out, MUL)


def div_forward(a, b, out):
    _forward(a, b, out, DIV)


def add_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b (their own shapes) -> ga like a, gb like b
    _backward(gout, a, b, ga, gb, need_ga, need_gb, ADD)


def sub_backward(gout, a, b, ga, gb, need_ga, need_gb):
    _backward(gout, a, b, ga, gb, need_ga, need_gb, SUB)


def mul_backward(gout, a, b, ga, gb, need_ga, need_gb):
    _backward(gout, a, b, ga, gb, need_ga, need_gb, MUL)


def div_backward(gout, a, b, ga, gb, need_ga, need_gb):
    _backward(gout, a, b, ga, gb, need_ga, need_gb, DIV)


@_kernel
def _neg(x, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = -x[i]


def neg_forward(x, out):
    # x (...) -> out = -x (...)
    launch(_neg, x.size, flat(x), flat(out), x.size)


def neg_backward(gout, gx):
    # gout (...) -> gx = -gout (...)
    launch(_neg, gout.size, flat(gout), flat(gx), gout.size)
