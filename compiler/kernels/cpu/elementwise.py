"""Elementwise kernels: add, sub, mul, div with numpy broadcasting, and unary neg — forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, float32 or float64 (one dtype per call).
- Backward kernels OVERWRITE their gradient outputs; ``need_ga`` / ``need_gb`` skip an unused one (its output
  may then be a zero-size placeholder).

Broadcasting: ``out`` has the broadcast shape (rank <= 5). The caller passes each input reshaped to the
output's rank with size-1 axes where it is broadcast (numpy's right-aligned rule is also applied when an
input has a lower rank). A scalar operand is an array of ones-shape. Backward sums the gradient over each
input's broadcast axes, so ``ga`` has exactly ``a``'s shape and ``gb`` ``b``'s.

How it runs: inputs of the output's size take a flat loop. Otherwise ``_geometry`` describes the output as
rows of a unit-stride inner axis, with each operand's element stride per axis (0 where it broadcasts), after
merging adjacent axes that every operand walks contiguously — so a per-channel bias on (B, C, H, W) becomes
B*C rows of H*W. Each op has its own loops (rather than one shared loop nest switching on the op) because
Numba re-optimises every callee inside each caller: small self-contained kernels compile much faster.
"""

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _geometry(out, a, b):
    # -> n (5,) sizes, sa/sb (5,) element strides (0 = broadcast), right-aligned, adjacent axes merged
    # where both operands (and the contiguous output) can walk them as one
    n0 = np.ones(5, np.int64)
    a0 = np.zeros(5, np.int64)
    b0 = np.zeros(5, np.int64)
    off = 5 - out.ndim
    for d in range(out.ndim):
        n0[off + d] = out.shape[d]
    st = 1
    off = 5 - a.ndim
    for d in range(a.ndim - 1, -1, -1):
        if a.shape[d] != 1:
            a0[off + d] = st
        st *= a.shape[d]
    st = 1
    off = 5 - b.ndim
    for d in range(b.ndim - 1, -1, -1):
        if b.shape[d] != 1:
            b0[off + d] = st
        st *= b.shape[d]
    n = np.ones(5, np.int64)
    sa = np.zeros(5, np.int64)
    sb = np.zeros(5, np.int64)
    k = 4  # slot of the group being built, filled from the right
    started = False
    for d in range(4, -1, -1):
        if n0[d] == 1:
            continue
        if started and a0[d] == sa[k] * n[k] and b0[d] == sb[k] * n[k]:
            n[k] *= n0[d]
            continue
        if started:
            k -= 1
        n[k] = n0[d]
        sa[k] = a0[d]
        sb[k] = b0[d]
        started = True
    return n, sa, sb


@njit(cache=True, error_model="numpy")
def _offset(r, n, s):
    # element offset of row r (an index over axes 0..3 of n) in an operand with strides s
    o = 0
    for d in range(3, -1, -1):
        o += (r % n[d]) * s[d]
        r //= n[d]
    return o


@njit(cache=True, error_model="numpy")
def add_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a + b (broadcast shape)
    af, bf, of = a.reshape(a.size), b.reshape(b.size), out.reshape(out.size)
    if a.size == out.size and b.size == out.size:
        for i in range(of.shape[0]):
            of[i] = af[i] + bf[i]
        return
    n, sa, sb = _geometry(out, a, b)
    n4, a4, b4 = n[4], sa[4], sb[4]
    for r in range(out.size // n4 if n4 > 0 else 0):
        oa, ob, oo = _offset(r, n, sa), _offset(r, n, sb), r * n4
        for i in range(n4):
            of[oo + i] = af[oa + i * a4] + bf[ob + i * b4]


@njit(cache=True, error_model="numpy")
def sub_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a - b
    af, bf, of = a.reshape(a.size), b.reshape(b.size), out.reshape(out.size)
    if a.size == out.size and b.size == out.size:
        for i in range(of.shape[0]):
            of[i] = af[i] - bf[i]
        return
    n, sa, sb = _geometry(out, a, b)
    n4, a4, b4 = n[4], sa[4], sb[4]
    for r in range(out.size // n4 if n4 > 0 else 0):
        oa, ob, oo = _offset(r, n, sa), _offset(r, n, sb), r * n4
        for i in range(n4):
            of[oo + i] = af[oa + i * a4] - bf[ob + i * b4]


@njit(cache=True, error_model="numpy")
def mul_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a * b
    af, bf, of = a.reshape(a.size), b.reshape(b.size), out.reshape(out.size)
    if a.size == out.size and b.size == out.size:
        for i in range(of.shape[0]):
            of[i] = af[i] * bf[i]
        return
    n, sa, sb = _geometry(out, a, b)
    n4, a4, b4 = n[4], sa[4], sb[4]
    for r in range(out.size // n4 if n4 > 0 else 0):
        oa, ob, oo = _offset(r, n, sa), _offset(r, n, sb), r * n4
        for i in range(n4):
            of[oo + i] = af[oa + i * a4] * bf[ob + i * b4]


@njit(cache=True, error_model="numpy")
def div_forward(a, b, out):
    # a, b (broadcastable, rank-matched) -> out = a / b
    af, bf, of = a.reshape(a.size), b.reshape(b.size), out.reshape(out.size)
    if a.size == out.size and b.size == out.size:
        for i in range(of.shape[0]):
            of[i] = af[i] / bf[i]
        return
    n, sa, sb = _geometry(out, a, b)
    n4, a4, b4 = n[4], sa[4], sb[4]
    for r in range(out.size // n4 if n4 > 0 else 0):
        oa, ob, oo = _offset(r, n, sa), _offset(r, n, sb), r * n4
        for i in range(n4):
            of[oo + i] = af[oa + i * a4] / bf[ob + i * b4]


@njit(cache=True, error_model="numpy")
def _sum_into(gout, t, which, sign, n, sa, sb):
    # t (flat, a's or b's size) = sign * sum of gout over that operand's broadcast axes
    gf = gout.reshape(gout.size)
    if t.shape[0] == gf.shape[0]:
        for i in range(gf.shape[0]):
            t[i] = sign * gf[i]
        return
    st = sa if which == 0 else sb
    t[:] = 0.0
    n4, t4 = n[4], st[4]
    for r in range(gf.shape[0] // n4 if n4 > 0 else 0):
        ot, oo = _offset(r, n, st), r * n4
        for i in range(n4):
            t[ot + i * t4] += sign * gf[oo + i]


@njit(cache=True, error_model="numpy")
def add_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b (their own shapes) -> ga like a, gb like b
    n, sa, sb = _geometry(gout, a, b)
    if need_ga:
        _sum_into(gout, ga.reshape(ga.size), 0, 1.0, n, sa, sb)
    if need_gb:
        _sum_into(gout, gb.reshape(gb.size), 1, 1.0, n, sa, sb)


@njit(cache=True, error_model="numpy")
def sub_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b -> ga = sum(g), gb = -sum(g) over broadcast axes
    n, sa, sb = _geometry(gout, a, b)
    if need_ga:
        _sum_into(gout, ga.reshape(ga.size), 0, 1.0, n, sa, sb)
    if need_gb:
        _sum_into(gout, gb.reshape(gb.size), 1, -1.0, n, sa, sb)


@njit(cache=True, error_model="numpy")
def _mul_grad(gout, other, t, so, st, n):
    # t (flat) = sum over t's broadcast axes of gout * other; so/st: strides of other / of t
    gf = gout.reshape(gout.size)
    xf = other.reshape(other.size)
    if t.shape[0] == gf.shape[0] and xf.shape[0] == gf.shape[0]:
        for i in range(gf.shape[0]):
            t[i] = gf[i] * xf[i]
        return
    t[:] = 0.0
    n4, x4, t4 = n[4], so[4], st[4]
    for r in range(gf.shape[0] // n4 if n4 > 0 else 0):
        ox, ot, oo = _offset(r, n, so), _offset(r, n, st), r * n4
        for i in range(n4):
            t[ot + i * t4] += gf[oo + i] * xf[ox + i * x4]


@njit(cache=True, error_model="numpy")
def mul_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b -> ga = sum(g * b), gb = sum(g * a) over broadcast axes
    n, sa, sb = _geometry(gout, a, b)
    if need_ga:
        _mul_grad(gout, b, ga.reshape(ga.size), sb, sa, n)
    if need_gb:
        _mul_grad(gout, a, gb.reshape(gb.size), sa, sb, n)


@njit(cache=True, error_model="numpy")
def div_backward(gout, a, b, ga, gb, need_ga, need_gb):
    # gout (out shape), a, b -> ga = sum(g / b), gb = sum(-g * a / b^2) over broadcast axes
    n, sa, sb = _geometry(gout, a, b)
    gf = gout.reshape(gout.size)
    af = a.reshape(a.size)
    bf = b.reshape(b.size)
    same = a.size == gout.size and b.size == gout.size
    n4, a4, b4 = n[4], sa[4], sb[4]
    rows = gf.shape[0] // n4 if n4 > 0 else 0
    if need_ga:
        t = ga.reshape(ga.size)
        if same:
            for i in range(gf.shape[0]):
                t[i] = gf[i] / bf[i]
        else:
            t[:] = 0.0
            for r in range(rows):
                oa, ob, oo = _offset(r, n, sa), _offset(r, n, sb), r * n4
                for i in range(n4):
                    t[oa + i * a4] += gf[oo + i] / bf[ob + i * b4]
    if need_gb:
        t = gb.reshape(gb.size)
        if same:
            for i in range(gf.shape[0]):
                t[i] = -gf[i] * af[i] / (bf[i] * bf[i])
        else:
            t[:] = 0.0
            for r in range(rows):
                oa, ob, oo = _offset(r, n, sa), _offset(r, n, sb), r * n4
                for i in range(n4):
                    bv = bf[ob + i * b4]
                    t[ob + i * b4] -= gf[oo + i] * af[oa + i * a4] / (bv * bv)


@njit(cache=True, error_model="numpy")
def neg_forward(x, out):
    # x (...) -> out = -x (...), unary minus
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for i in range(xf.shape[0]):
        of[i] = -xf[i]


@njit(cache=True, error_model="numpy")
def neg_backward(gout, gx):
    # gout (...) -> gx = -gout (...)
    gf = gout.reshape(gout.size)
    of = gx.reshape(gx.size)
    for i in range(gf.shape[0]):
        of[i] = -gf[i]
