"""Normalisation kernels on the device: lrn, batchnorm (train / eval), layernorm — forward and backward.

Same functions, signatures, views and semantics as ``kernels/cpu/norm.py``, on device arrays. Statistics are
accumulated in float64 whatever the dtype.

- lrn: one thread per element (its channel window is a short loop).
- batchnorm: one block per channel; the two passes (mean, then centred squares) and backward's two sums are
  shared-memory tree reductions; thread 0 writes the saved statistics and updates the running ones.
- layernorm: one block per row for the statistics and the input gradient; the weight and bias gradients are
  column sums over the rows (one block per column).
"""

from __future__ import annotations

import math

from numba import cuda, float64

from ._common import RED, _block_sum, flat, imax, imin, kernel, launch, launch_blocks


@kernel
def _lrn_fwd(x, out, scale, C, S, size, alpha, beta, k, n):
    a = alpha / size
    lo_off = size // 2
    hi_off = (size - 1) // 2
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = e % S
        c = (e // S) % C
        nb = e // (C * S)
        acc = 0.0
        for c2 in range(imax(0, c - lo_off), imin(C, c + hi_off + 1)):
            v = float(x[(nb * C + c2) * S + s])
            acc += v * v
        sc = k + a * acc
        scale[e] = sc
        out[e] = x[e] * sc ** (-beta)


@kernel
def _lrn_bwd(g, x, out, scale, gx, C, S, size, alpha, beta, n):
    coef = 2.0 * alpha * beta / size
    lo_off = (size - 1) // 2
    hi_off = size // 2
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = e % S
        c = (e // S) % C
        nb = e // (C * S)
        acc = 0.0
        for c2 in range(imax(0, c - lo_off), imin(C, c + hi_off + 1)):
            j = (nb * C + c2) * S + s
            acc += float(g[j]) * float(out[j]) / float(scale[j])
        gx[e] = g[e] * scale[e] ** (-beta) - coef * x[e] * acc


def lrn_forward(x, size, alpha, beta, k, out, scale):
    # x (N, C, S) -> out (N, C, S), scale (N, C, S) = k + alpha/size * windowed sum of x^2
    _, C, S = x.shape
    launch(_lrn_fwd, x.size, flat(x), flat(out), flat(scale), C, S, int(size), float(alpha), float(beta),
           float(k), x.size)


def lrn_backward(gout, x, out, scale, size, alpha, beta, gx):
    # gout, x, out (forward output), scale (saved) (N, C, S) -> gx (N, C, S)
    _, C, S = x.shape
    launch(_lrn_bwd, x.size, flat(gout), flat(x), flat(out), flat(scale), flat(gx), C, S, int(size),
           float(alpha), float(beta), x.size)


# ------------------------------------------------------------------------------------------ batchnorm


@kernel
def _bn_train(x, gamma, beta, eps, momentum, rmean, rvar, update, out, smean, sinv, N, C, S):
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    m = N * S
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        acc = 0.0
        for e in range(t, m, RED):
            nb = e // S
            acc += float(x[(nb * C + c) * S + e - nb * S])
        mean = _block_sum(sh, acc) / m
        acc = 0.0
        for e in range(t, m, RED):
            nb = e // S
            d = float(x[(nb * C + c) * S + e - nb * S]) - mean
            acc += d * d
        var = _block_sum(sh, acc) / m
        inv = 1.0 / math.sqrt(var + eps)
        sc = gamma[c] * inv
        shift = beta[c] - mean * sc
        for e in range(t, m, RED):
            nb = e // S
            j = (nb * C + c) * S + e - nb * S
            out[j] = x[j] * sc + shift
        if t == 0:
            smean[c] = mean
            sinv[c] = inv
            if update:
                rmean[c] = (1.0 - momentum) * rmean[c] + momentum * mean
                unbiased = var * m / (m - 1) if m > 1 else var
                rvar[c] = (1.0 - momentum) * rvar[c] + momentum * unbiased


def batchnorm_forward_train(x, gamma, beta, eps, momentum, running_mean, running_var, update_stats,
                            out, save_mean, save_invstd):
    # x (N, C, S), gamma/beta/running_* (C,) -> out (N, C, S), save_mean/save_invstd (C,) for backward;
    # running_* updated in place only if update_stats
    N, C, S = x.shape
    if N * S == 0:
        return
    launch_blocks(_bn_train, C, flat(x), gamma, beta, float(eps), float(momentum), running_mean, running_var,
                  bool(update_stats), flat(out), save_mean, save_invstd, N, C, S)


@kernel
def _bn_eval(x, gamma, beta, rmean, rvar, eps, out, C, S, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        c = (e // S) % C
        sc = gamma[c] / math.sqrt(rvar[c] + eps)
        out[e] = x[e] * sc + (beta[c] - rmean[c] * sc)


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps, out):
    # x (N, C, S), gamma/beta/running_* (C,) -> out (N, C, S) with the running statistics
    _, C, S = x.shape
    launch(_bn_eval, x.size, flat(x), gamma, beta, running_mean, running_var, float(eps), flat(out), C, S, x.size)


@kernel
def _bn_bwd(g, x, gamma, mean_a, inv_a, eps, frozen, gx, ggamma, gbeta, need_gx, N, C, S):
    # frozen: eval mode (mean_a / inv_a are running_mean / running_var, the input gradient is f * g)
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    m = N * S
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        mean = float(mean_a[c])
        inv = 1.0 / math.sqrt(float(inv_a[c]) + eps) if frozen else float(inv_a[c])
        sg = 0.0
        sgx = 0.0
        for e in range(t, m, RED):
            nb = e // S
            j = (nb * C + c) * S + e - nb * S
            gv = float(g[j])
            sg += gv
            sgx += gv * (float(x[j]) - mean)
        sg = _block_sum(sh, sg)
        sgx = _block_sum(sh, sgx)
        if t == 0:
            gbeta[c] = sg
            ggamma[c] = sgx * inv
        if need_gx:
            f = gamma[c] * inv
            mg = sg / m
            mgx = sgx * inv * inv / m
            for e in range(t, m, RED):
                nb = e // S
                j = (nb * C + c) * S + e - nb * S
                if frozen:
                    gx[j] = f * g[j]
                else:
                    gx[j] = f * (g[j] - mg - (x[j] - mean) * mgx)


def batchnorm_backward(gout, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx):
    # train mode: gout, x (N, C, S), gamma/save_* (C,) -> gx (N, C, S), ggamma/gbeta (C,)
    N, C, S = x.shape
    if N * S == 0:
        return
    launch_blocks(_bn_bwd, C, flat(gout), flat(x), gamma, save_mean, save_invstd, 0.0, False,
                  flat(gx) if need_gx else gamma, ggamma, gbeta, bool(need_gx), N, C, S)


def batchnorm_backward_eval(gout, x, gamma, running_mean, running_var, eps, gx, ggamma, gbeta, need_gx):
    # eval mode (frozen statistics): gout, x (N, C, S), gamma/running_* (C,) -> gx (N, C, S), ggamma/gbeta (C,)
    N, C, S = x.shape
    if N * S == 0:
        return
    launch_blocks(_bn_bwd, C, flat(gout), flat(x), gamma, running_mean, running_var, float(eps), True,
                  flat(gx) if need_gx else gamma, ggamma, gbeta, bool(need_gx), N, C, S)


# ------------------------------------------------------------------------------------------ layernorm


@kernel
def _ln_fwd(x, gamma, beta, eps, out, smean, sinv, N, D):
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    has_w = gamma.size > 0
    has_b = beta.size > 0
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        base = n * D
        acc = 0.0
        for d in range(t, D, RED):
            acc += float(x[base + d])
        mean = _block_sum(sh, acc) / D
        acc = 0.0
        for d in range(t, D, RED):
            v = float(x[base + d]) - mean
            acc += v * v
        inv = 1.0 / math.sqrt(_block_sum(sh, acc) / D + eps)
        if t == 0:
            smean[n] = mean
            sinv[n] = inv
        for d in range(t, D, RED):
            v = (x[base + d] - mean) * inv
            if has_w:
                v = v * gamma[d]
            if has_b:
                v = v + beta[d]
            out[base + d] = v


def layernorm_forward(x, gamma, beta, eps, out, save_mean, save_invstd):
    # x (N, D), gamma (D,) or (0,), beta (D,) or (0,) -> out (N, D), save_mean/save_invstd (N,)
    N, D = x.shape
    if D == 0:
        return
    launch_blocks(_ln_fwd, N, flat(x), gamma, beta, float(eps), flat(out), flat(save_mean), flat(save_invstd),
                  N, D)


@kernel
def _ln_bwd_x(g, x, gamma, smean, sinv, gx, N, D):
    # gx = inv * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = gout * gamma; one block per row
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    has_w = gamma.size > 0
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        base = n * D
        mean = float(smean[n])
        inv = float(sinv[n])
        s1 = 0.0
        s2 = 0.0
        for d in range(t, D, RED):
            gh = float(g[base + d]) * float(gamma[d]) if has_w else float(g[base + d])
            s1 += gh
            s2 += gh * (float(x[base + d]) - mean) * inv
        s1 = _block_sum(sh, s1) / D
        s2 = _block_sum(sh, s2) / D
        for d in range(t, D, RED):
            gh = float(g[base + d]) * float(gamma[d]) if has_w else float(g[base + d])
            gx[base + d] = inv * (gh - s1 - (float(x[base + d]) - mean) * inv * s2)


@kernel
def _ln_bwd_w(g, x, smean, sinv, ggamma, gbeta, N, D):
    # ggamma[d] = sum_n g * xhat, gbeta[d] = sum_n g: one block per column
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for d in range(cuda.blockIdx.x, D, cuda.gridDim.x):
        a = 0.0
        b = 0.0
        for n in range(t, N, RED):
            gv = float(g[n * D + d])
            a += gv * (float(x[n * D + d]) - float(smean[n])) * float(sinv[n])
            b += gv
        a = _block_sum(sh, a)
        b = _block_sum(sh, b)
        if t == 0:
            if ggamma.size > 0:
                ggamma[d] = a
            if gbeta.size > 0:
                gbeta[d] = b


def layernorm_backward(gout, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx):
    # gout, x (N, D), gamma (D,) or (0,), save_* (N,) -> gx (N, D), ggamma (D,) or (0,), gbeta (D,) or (0,)
    N, D = x.shape
    if D == 0:
        return
    if ggamma.size > 0 or gbeta.size > 0:
        launch_blocks(_ln_bwd_w, D, flat(gout), flat(x), flat(save_mean), flat(save_invstd), ggamma, gbeta, N, D)
    if need_gx:
        launch_blocks(_ln_bwd_x, N, flat(gout), flat(x), gamma, flat(save_mean), flat(save_invstd), flat(gx),
                      N, D)
