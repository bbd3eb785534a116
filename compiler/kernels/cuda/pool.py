"""Pooling kernels on the device: maxpool2d, avgpool2d, global_avgpool — forward and backward.

Same functions, signatures and semantics as ``kernels/cpu/pool.py`` (PyTorch's: maxpool's first maximum
wins and a NaN wins, argmax is the flat index ``h * W + w`` in the input plane; avgpool counts padding but
not a ceil-mode overhang), on device arrays.

Forwards: one thread per output element. avgpool's backward gathers: one thread per input element walks the
windows that cover it, so overlapping windows add up without atomics, in the CPU's order. maxpool's backward
only has the argmax indices (no window geometry), so it scatters each output's gradient to its winner with an
atomic add (the order of the additions where windows overlap is unspecified).
"""

from __future__ import annotations

import math

from numba import cuda

from ._common import device, flat, imax, imin, kernel, launch
from .util import zero


@kernel
def _maxpool_fwd(x, out, argmax, C, H, W, P, Q, kh, kw, sh, sw, ph, pw, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        q = e % Q
        p = (e // Q) % P
        bc = e // (P * Q)
        base = bc * H * W
        h0 = p * sh - ph
        h1 = imin(h0 + kh, H)
        h0 = imax(h0, 0)
        w0 = q * sw - pw
        w1 = imin(w0 + kw, W)
        w0 = imax(w0, 0)
        if h0 >= h1 or w0 >= w1:  # a window entirely in padding
            out[e] = -math.inf
            argmax[e] = -1
            continue
        best = x[base + h0 * W + w0]
        idx = h0 * W + w0
        for h in range(h0, h1):
            for w in range(w0, w1):
                v = x[base + h * W + w]
                if v > best or math.isnan(v):
                    best = v
                    idx = h * W + w
        out[e] = best
        argmax[e] = idx


def maxpool2d_forward(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out, argmax):
    # x (B, C, H, W) -> out (B, C, P, Q), argmax (B, C, P, Q) int64 flat index into x[b, c] (-1: empty window)
    _, C, H, W = x.shape
    P, Q = out.shape[2], out.shape[3]
    launch(_maxpool_fwd, out.size, flat(x), flat(out), flat(argmax), C, H, W, P, Q, kh, kw, stride_h, stride_w,
           pad_h, pad_w, out.size)


@device
def _covering(h, s, pad, k, n_out):
    # output positions p with p*s - pad <= h < p*s - pad + k, clipped to [0, n_out): [lo, hi)
    lo = (h + pad - k) // s + 1
    if lo < 0:  # noqa: PLR1730 (no built-in max: see _common.imax)
        lo = 0
    hi = (h + pad) // s + 1
    if hi > n_out:  # noqa: PLR1730
        hi = n_out
    return lo, hi


@kernel
def _maxpool_bwd(g, argmax, gx, P, Q, H, W, n):
    # one thread per output: its gradient goes to the winning input (atomics: windows may overlap)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = argmax[e]
        if i >= 0:
            cuda.atomic.add(gx, (e // (P * Q)) * H * W + i, g[e])


def maxpool2d_backward(gout, argmax, gx):
    # gout (B, C, P, Q), argmax (B, C, P, Q) int64 -> gx (B, C, H, W); overlapping windows add up
    # (in an unspecified order where windows overlap: atomics)
    _, _, H, W = gx.shape
    P, Q = gout.shape[2], gout.shape[3]
    zero(gx)
    launch(_maxpool_bwd, gout.size, flat(gout), flat(argmax), flat(gx), P, Q, H, W, gout.size)


@device
def _window(p, stride, pad, k, n):
    # clipped window [lo, hi) and PyTorch's divisor part (the window clipped to the padded extent only)
    lo = p * stride - pad
    hi = imin(lo + k, n + pad)
    return imax(lo, 0), imin(hi, n), hi - lo


@kernel
def _avgpool_fwd(x, out, H, W, P, Q, kh, kw, sh, sw, ph, pw, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        q = e % Q
        p = (e // Q) % P
        bc = e // (P * Q)
        base = bc * H * W
        h0, h1, dh = _window(p, sh, ph, kh, H)
        w0, w1, dw = _window(q, sw, pw, kw, W)
        acc = 0.0
        for h in range(h0, h1):
            for w in range(w0, w1):
                acc += float(x[base + h * W + w])
        out[e] = acc / (dh * dw)


def avgpool2d_forward(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out):
    # x (B, C, H, W) -> out (B, C, P, Q); divisor counts padding but not the ceil-mode overhang
    _, _, H, W = x.shape
    P, Q = out.shape[2], out.shape[3]
    launch(_avgpool_fwd, out.size, flat(x), flat(out), H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w,
           out.size)


@kernel
def _avgpool_bwd(g, gx, H, W, P, Q, kh, kw, sh, sw, ph, pw, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        bc = e // (H * W)
        p0, p1 = _covering(h, sh, ph, kh, P)
        q0, q1 = _covering(w, sw, pw, kw, Q)
        acc = 0.0
        for p in range(p0, p1):
            _, _, dh = _window(p, sh, ph, kh, H)
            for q in range(q0, q1):
                _, _, dw = _window(q, sw, pw, kw, W)
                acc += float(g[(bc * P + p) * Q + q]) / (dh * dw)
        gx[e] = acc


def avgpool2d_backward(gout, kh, kw, stride_h, stride_w, pad_h, pad_w, gx):
    # gout (B, C, P, Q) -> gx (B, C, H, W)
    _, _, H, W = gx.shape
    P, Q = gout.shape[2], gout.shape[3]
    launch(_avgpool_bwd, gx.size, flat(gout), flat(gx), H, W, P, Q, kh, kw, stride_h, stride_w, pad_h, pad_w,
           gx.size)


@kernel
def _gap_fwd(x, out, S, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        acc = 0.0
        for s in range(S):
            acc += float(x[e * S + s])
        out[e] = acc / S


@kernel
def _gap_bwd(g, gx, S, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        gx[e] = g[e // S] / S


def global_avgpool_forward(x, out):
    # x (B, C, S) -> out (B, C)
    B, C, S = x.shape
    if S == 0:
        return
    launch(_gap_fwd, B * C, flat(x), flat(out), S, B * C)


def global_avgpool_backward(gout, gx):
    # gout (B, C) -> gx (B, C, S)
    _, _, S = gx.shape
    if S == 0:
        return
    launch(_gap_bwd, gx.size, flat(gout), flat(gx), S, gx.size)
