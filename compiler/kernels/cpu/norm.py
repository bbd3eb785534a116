"""Normalisation kernels: lrn, batchnorm (train / eval), layernorm — forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, batch axis first; float32 or float64 (one dtype per call). Statistics are
  accumulated in float64 whatever the dtype.
- Backward kernels OVERWRITE their gradient outputs; ``need_gx=False`` skips the input gradient.
- An absent optional parameter (layernorm without weight or bias) is a zero-length array; its gradient output
  is then zero-length too.

Views the caller passes:
- lrn and batchnorm work on ``(N, C, S)``: for ``[C, H, W]`` inputs N=B, S=H*W; for vectors ``[D]`` N=B, C=D,
  S=1; for sequences ``[T, D]`` N=B*T, C=D, S=1.
- layernorm works on ``(N, D)`` and normalises the last axis (N = product of all leading axes).

Semantics follow PyTorch: LocalResponseNorm divides alpha by ``size`` and sums squares over channels
``[c - size//2, c + (size-1)//2]`` (zero outside); batchnorm in train mode normalises with the biased batch
variance and feeds the unbiased one to ``running_var`` (running = (1-momentum)*running + momentum*batch).

Each kernel's independent unit (a sample for lrn, a channel for batchnorm, a row for layernorm) is one helper;
the public kernel runs the units in a prange loop only when the tensor is large enough to repay a thread
launch, and in a plain loop otherwise (small per-time-step calls would drown in launch overhead).
"""

import math

from numba import njit, prange

# parallel loops only above this many elements (a lane launch costs microseconds); BLAS runs on one thread
# (compiler/parallel.py), so these lanes have the cores to themselves
_PAR_MIN = 1 << 17
# Reductions may be reassociated so LLVM can vectorise the sums; this flag alone assumes nothing about NaN or
# infinities, which keep propagating as usual.
_REASSOC = {"reassoc", "contract"}


@njit(cache=True, error_model="numpy")
def _lrn_fwd_sample(x, n, size, alpha, beta, k, out, scale):
    C, S = x.shape[1], x.shape[2]
    a = alpha / size
    lo_off = size // 2
    hi_off = (size - 1) // 2
    for c in range(C):
        sc = scale[n, c]
        for s in range(S):
            sc[s] = 0.0
        for c2 in range(max(0, c - lo_off), min(C, c + hi_off + 1)):
            xc = x[n, c2]
            for s in range(S):
                sc[s] += xc[s] * xc[s]
        for s in range(S):
            sc[s] = k + a * sc[s]
            out[n, c, s] = x[n, c, s] * sc[s] ** (-beta)


@njit(cache=True, error_model="numpy", parallel=True)
def _lrn_fwd_par(x, size, alpha, beta, k, out, scale):
    for n in prange(x.shape[0]):
        _lrn_fwd_sample(x, n, size, alpha, beta, k, out, scale)


@njit(cache=True, error_model="numpy")
def lrn_forward(x, size, alpha, beta, k, out, scale):
    # x (N, C, S) -> out (N, C, S), scale (N, C, S) = k + alpha/size * windowed sum of x^2 (saved for backward)
    if x.size >= _PAR_MIN:
        _lrn_fwd_par(x, size, alpha, beta, k, out, scale)
    else:
        for n in range(x.shape[0]):
            _lrn_fwd_sample(x, n, size, alpha, beta, k, out, scale)


@njit(cache=True, error_model="numpy")
def _lrn_bwd_sample(gout, x, out, scale, n, size, alpha, beta, gx):
    # d out[c'] / d x[c] = [c == c'] scale^-beta - 2 a beta x[c] out[c'] / scale[c'] for c in window(c')
    C, S = x.shape[1], x.shape[2]
    coef = 2.0 * alpha * beta / size
    lo_off = (size - 1) // 2
    hi_off = size // 2
    for c in range(C):
        gc = gx[n, c]
        for s in range(S):
            gc[s] = 0.0
        for c2 in range(max(0, c - lo_off), min(C, c + hi_off + 1)):
            for s in range(S):
                gc[s] += gout[n, c2, s] * out[n, c2, s] / scale[n, c2, s]
        for s in range(S):
            gc[s] = gout[n, c, s] * scale[n, c, s] ** (-beta) - coef * x[n, c, s] * gc[s]


@njit(cache=True, error_model="numpy", parallel=True)
def _lrn_bwd_par(gout, x, out, scale, size, alpha, beta, gx):
    for n in prange(x.shape[0]):
        _lrn_bwd_sample(gout, x, out, scale, n, size, alpha, beta, gx)


@njit(cache=True, error_model="numpy")
def lrn_backward(gout, x, out, scale, size, alpha, beta, gx):
    # gout, x, out (forward output), scale (saved) (N, C, S) -> gx (N, C, S)
    if x.size >= _PAR_MIN:
        _lrn_bwd_par(gout, x, out, scale, size, alpha, beta, gx)
    else:
        for n in range(x.shape[0]):
            _lrn_bwd_sample(gout, x, out, scale, n, size, alpha, beta, gx)


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _bn_train_channel(x, c, gamma, beta, eps, momentum, running_mean, running_var, update_stats,
                      out, save_mean, save_invstd):
    # two passes (mean, then centred squares) in float64: one-pass E[x^2]-E[x]^2 cancels badly
    N, S = x.shape[0], x.shape[2]
    m = N * S
    acc = 0.0
    for n in range(N):
        for s in range(S):
            acc += x[n, c, s]
    mean = acc / m
    acc = 0.0
    for n in range(N):
        for s in range(S):
            d = x[n, c, s] - mean
            acc += d * d
    var = acc / m
    inv = 1.0 / math.sqrt(var + eps)
    save_mean[c] = mean
    save_invstd[c] = inv
    sc = gamma[c] * inv
    sh = beta[c] - mean * sc
    for n in range(N):
        for s in range(S):
            out[n, c, s] = x[n, c, s] * sc + sh
    if update_stats:
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean
        unbiased = var * m / (m - 1) if m > 1 else var
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased


@njit(cache=True, error_model="numpy", parallel=True)
def _bn_train_par(x, gamma, beta, eps, momentum, running_mean, running_var, update_stats, out, save_mean,
                  save_invstd):
    for c in prange(x.shape[1]):
        _bn_train_channel(x, c, gamma, beta, eps, momentum, running_mean, running_var, update_stats, out,
                          save_mean, save_invstd)


@njit(cache=True, error_model="numpy")
def batchnorm_forward_train(x, gamma, beta, eps, momentum, running_mean, running_var, update_stats,
                            out, save_mean, save_invstd):
    # x (N, C, S), gamma/beta/running_* (C,) -> out (N, C, S), save_mean/save_invstd (C,) for backward;
    # running_* updated in place only if update_stats
    if x.size >= _PAR_MIN:
        _bn_train_par(x, gamma, beta, eps, momentum, running_mean, running_var, update_stats, out, save_mean,
                      save_invstd)
    else:
        for c in range(x.shape[1]):
            _bn_train_channel(x, c, gamma, beta, eps, momentum, running_mean, running_var, update_stats, out,
                              save_mean, save_invstd)


@njit(cache=True, error_model="numpy")
def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps, out):
    # x (N, C, S), gamma/beta/running_* (C,) -> out (N, C, S) with the running statistics
    N, C, S = x.shape
    for n in range(N):
        for c in range(C):
            sc = gamma[c] / math.sqrt(running_var[c] + eps)
            sh = beta[c] - running_mean[c] * sc
            for s in range(S):
                out[n, c, s] = x[n, c, s] * sc + sh


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _bn_bwd_channel(gout, x, c, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx):
    N, S = x.shape[0], x.shape[2]
    m = N * S
    mean = save_mean[c]
    inv = save_invstd[c]
    sg = 0.0
    sgx = 0.0
    for n in range(N):
        for s in range(S):
            g = gout[n, c, s]
            sg += g
            sgx += g * (x[n, c, s] - mean)
    gbeta[c] = sg
    ggamma[c] = sgx * inv
    if need_gx:
        # gx = gamma*inv/m * (m*g - sum g - xhat * sum g*xhat)
        f = gamma[c] * inv
        mg = sg / m
        mgx = sgx * inv * inv / m
        for n in range(N):
            for s in range(S):
                gx[n, c, s] = f * (gout[n, c, s] - mg - (x[n, c, s] - mean) * mgx)


@njit(cache=True, error_model="numpy", parallel=True)
def _bn_bwd_par(gout, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx):
    for c in prange(x.shape[1]):
        _bn_bwd_channel(gout, x, c, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx)


@njit(cache=True, error_model="numpy")
def batchnorm_backward(gout, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx):
    # train mode: gout, x (N, C, S), gamma/save_* (C,) -> gx (N, C, S), ggamma/gbeta (C,)
    if x.size >= _PAR_MIN:
        _bn_bwd_par(gout, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx)
    else:
        for c in range(x.shape[1]):
            _bn_bwd_channel(gout, x, c, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx)


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def batchnorm_backward_eval(gout, x, gamma, running_mean, running_var, eps, gx, ggamma, gbeta, need_gx):
    # eval mode (frozen statistics): gout, x (N, C, S), gamma/running_* (C,) -> gx (N, C, S), ggamma/gbeta (C,)
    N, C, S = x.shape
    for c in range(C):
        mean = running_mean[c]
        inv = 1.0 / math.sqrt(running_var[c] + eps)
        sg = 0.0
        sgx = 0.0
        for n in range(N):
            for s in range(S):
                g = gout[n, c, s]
                sg += g
                sgx += g * (x[n, c, s] - mean)
        gbeta[c] = sg
        ggamma[c] = sgx * inv
        if need_gx:
            f = gamma[c] * inv
            for n in range(N):
                for s in range(S):
                    gx[n, c, s] = f * gout[n, c, s]


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _ln_fwd_row(x, n, gamma, beta, eps, out, save_mean, save_invstd):
    D = x.shape[1]
    has_w = gamma.shape[0] > 0
    has_b = beta.shape[0] > 0
    xr = x[n]
    acc = 0.0
    for d in range(D):
        acc += xr[d]
    mean = acc / D
    acc = 0.0
    for d in range(D):
        t = xr[d] - mean
        acc += t * t
    inv = 1.0 / math.sqrt(acc / D + eps)
    save_mean[n] = mean
    save_invstd[n] = inv
    o = out[n]
    for d in range(D):
        v = (xr[d] - mean) * inv
        if has_w:
            v = v * gamma[d]
        if has_b:
            v = v + beta[d]
        o[d] = v


@njit(cache=True, error_model="numpy", parallel=True)
def _ln_fwd_par(x, gamma, beta, eps, out, save_mean, save_invstd):
    for n in prange(x.shape[0]):
        _ln_fwd_row(x, n, gamma, beta, eps, out, save_mean, save_invstd)


@njit(cache=True, error_model="numpy")
def layernorm_forward(x, gamma, beta, eps, out, save_mean, save_invstd):
    # x (N, D), gamma (D,) or (0,), beta (D,) or (0,) -> out (N, D), save_mean/save_invstd (N,)
    if x.size >= _PAR_MIN:
        _ln_fwd_par(x, gamma, beta, eps, out, save_mean, save_invstd)
    else:
        for n in range(x.shape[0]):
            _ln_fwd_row(x, n, gamma, beta, eps, out, save_mean, save_invstd)


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _ln_bwd_row(gout, x, n, gamma, save_mean, save_invstd, gx):
    # gx = inv * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = gout * gamma
    D = x.shape[1]
    has_w = gamma.shape[0] > 0
    mean = save_mean[n]
    inv = save_invstd[n]
    s1 = 0.0
    s2 = 0.0
    for d in range(D):
        gh = gout[n, d] * gamma[d] if has_w else gout[n, d]
        s1 += gh
        s2 += gh * (x[n, d] - mean) * inv
    s1 /= D
    s2 /= D
    for d in range(D):
        gh = gout[n, d] * gamma[d] if has_w else gout[n, d]
        gx[n, d] = inv * (gh - s1 - (x[n, d] - mean) * inv * s2)


@njit(cache=True, error_model="numpy", parallel=True)
def _ln_bwd_par(gout, x, gamma, save_mean, save_invstd, gx):
    for n in prange(x.shape[0]):
        _ln_bwd_row(gout, x, n, gamma, save_mean, save_invstd, gx)


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def layernorm_backward(gout, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, need_gx):
    # gout, x (N, D), gamma (D,) or (0,), save_* (N,) -> gx (N, D), ggamma (D,) or (0,), gbeta (D,) or (0,)
    N = x.shape[0]
    for d in range(ggamma.shape[0]):
        ggamma[d] = 0.0
    for d in range(gbeta.shape[0]):
        gbeta[d] = 0.0
    if ggamma.shape[0] > 0 or gbeta.shape[0] > 0:
        for n in range(N):
            mean = save_mean[n]
            inv = save_invstd[n]
            for d in range(ggamma.shape[0]):
                ggamma[d] += gout[n, d] * (x[n, d] - mean) * inv
            for d in range(gbeta.shape[0]):
                gbeta[d] += gout[n, d]
    if need_gx:
        if x.size >= _PAR_MIN:
            _ln_bwd_par(gout, x, gamma, save_mean, save_invstd, gx)
        else:
            for n in range(N):
                _ln_bwd_row(gout, x, n, gamma, save_mean, save_invstd, gx)
