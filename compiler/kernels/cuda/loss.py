"""Loss kernels on the device: cross_entropy (softmax fused, label smoothing, ignore index) and mse.

Same functions and semantics as ``kernels/cpu/loss.py``, on device arrays, with two additions so that a step
never waits for the host in the middle:
- a loss forward takes an optional ``out``: a one-element device array that receives the loss (and is
  returned). Without it the loss is copied to the host and returned as a float, as on the CPU.
- a backward's ``gloss`` may be a float or a one-element device array (the loss gradient buffer itself).

cross_entropy: one block per row (max, sum of exponentials and the row sum for smoothing are block
reductions), writing ``probs`` and the row's loss into a device scratch; one more block sums the rows and
counts the labels. A label outside [0, V) that is not the ignore index cannot raise on the device: its row's
loss is NaN (a CudaProgram checks labels on the host before they are copied in, with the CPU's message).
mse: a grid-stride sum of squared differences in per-block partials, then one block adds them.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from ._common import RED, _block_max, _block_sum, flat, kernel, launch, launch_blocks, scalar_arg, scratch


@kernel
def _ce_rows(logits, labels, smoothing, ignore, probs, rowloss, N, V):
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        base = n * V
        m = -math.inf
        tot = 0.0
        for v in range(t, V, RED):
            z = float(logits[base + v])
            tot += z
            if z > m or math.isnan(z):
                m = z
        m = _block_max(sh, m)
        tot = _block_sum(sh, tot)
        s = 0.0
        for v in range(t, V, RED):
            e = math.exp(float(logits[base + v]) - m)
            probs[base + v] = e
            s += e
        s = _block_sum(sh, s)
        r = 1.0 / s
        for v in range(t, V, RED):
            probs[base + v] = probs[base + v] * r
        if t == 0:
            y = labels[n]
            if y == ignore:
                rowloss[2 * n] = 0.0
                rowloss[2 * n + 1] = 0.0
            elif y < 0 or y >= V:
                rowloss[2 * n] = math.nan
                rowloss[2 * n + 1] = 1.0
            else:
                lse = m + math.log(s)
                loss = (1.0 - smoothing) * (lse - float(logits[base + y]))
                if smoothing != 0.0:
                    loss += smoothing / V * (V * lse - tot)
                rowloss[2 * n] = loss
                rowloss[2 * n + 1] = 1.0


@kernel
def _ce_total(rowloss, N, out):
    # out[0] = sum of row losses / number of counted rows (0 when none); one block
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    a = 0.0
    c = 0.0
    for n in range(t, N, RED):
        a += rowloss[2 * n]
        c += rowloss[2 * n + 1]
    a = _block_sum(sh, a)
    c = _block_sum(sh, c)
    if t == 0:
        out[0] = a / c if c > 0 else 0.0


def _result(out, dev):
    if out is not None:
        return out
    return float(dev.copy_to_host()[0])


def cross_entropy_forward(logits, labels, smoothing, ignore_index, probs, out=None):
    # logits (N, V), labels (N,) int64 -> probs (N, V); the mean loss over non-ignored rows: into `out`
    # (a one-element device array, returned) or returned as a float
    N, V = logits.shape
    dst = flat(out) if out is not None else scratch("ce.loss", 1)
    rows = scratch("ce.rows", 2 * N)
    if N > 0 and V > 0:
        launch_blocks(_ce_rows, N, flat(logits), flat(labels), float(smoothing), int(ignore_index), flat(probs),
                      rows, N, V)
    launch_blocks(_ce_total, 1, rows, N if V > 0 else 0, dst)
    return _result(out, dst)


@kernel
def _ce_count(labels, ignore, N, gdev, gval, f):
    # f[0] = gloss / (number of labels that are not ignore) (0 when none); one block
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    c = 0.0
    for n in range(t, N, RED):
        if labels[n] != ignore:
            c += 1.0
    c = _block_sum(sh, c)
    if t == 0:
        g = float(gdev[0]) if gdev.size > 0 else gval
        f[0] = g / c if c > 0 else 0.0


@kernel
def _ce_grad(probs, labels, smoothing, ignore, f, gl, N, V):
    fv = f[0]
    off = smoothing / V
    for e in range(cuda.grid(1), N * V, cuda.gridsize(1)):
        n = e // V
        v = e - n * V
        y = labels[n]
        if y == ignore:
            gl[e] = 0.0
        else:
            d = fv * (probs[e] - off)
            if v == y:
                d -= fv * (1.0 - smoothing)
            gl[e] = d


def cross_entropy_backward(gloss, probs, labels, smoothing, ignore_index, glogits):
    # probs (N, V) saved by forward, labels (N,) int64 -> glogits (N, V) = gloss * (probs - target) / count
    N, V = probs.shape
    gdev, gval = scalar_arg(gloss)
    f = scratch("ce.f", 1)
    launch_blocks(_ce_count, 1, flat(labels), int(ignore_index), N, gdev, gval, f)
    launch(_ce_grad, N * V, flat(probs), flat(labels), float(smoothing), int(ignore_index), f, flat(glogits), N, V)


@kernel
def _sq_stage(p, q, n, part):
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.blockIdx.x * RED + t, n, cuda.gridDim.x * RED):
        d = float(p[i]) - float(q[i])
        acc += d * d
    tot = _block_sum(sh, acc)
    if t == 0:
        part[cuda.blockIdx.x] = tot


@kernel
def _mean_stage(part, m, n, out):
    # out[0] = sum(part[:m]) / n; one block
    sh = cuda.shared.array(RED, dtype=float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(t, m, RED):
        acc += part[i]
    tot = _block_sum(sh, acc)
    if t == 0:
        out[0] = tot / n


def mse_forward(pred, target, out=None):
    # pred, target (...) alike; the mean of (pred - target)^2 into `out` (returned) or returned as a float
    n = pred.size
    dst = flat(out) if out is not None else scratch("mse.loss", 1)
    from ._common import GRID

    blocks = max(1, min(GRID, (n + RED - 1) // RED))
    part = scratch("mse.part", blocks)
    launch_blocks(_sq_stage, blocks, flat(pred), flat(target), n, part)
    launch_blocks(_mean_stage, 1, part, blocks, n, dst)
    return _result(out, dst)


@kernel
def _mse_grad(p, q, gp, gq, need_q, gdev, gval, n):
    g = float(gdev[0]) if gdev.size > 0 else gval
    f = 2.0 * g / n
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = f * (float(p[i]) - float(q[i]))
        gp[i] = d
        if need_q:
            gq[i] = -gp[i]


def mse_backward(gloss, pred, target, gpred, gtarget, need_gtarget):
    # pred, target (...) -> gpred = gloss * 2 (pred - target) / n, gtarget = -gpred (if needed)
    gdev, gval = scalar_arg(gloss)
    launch(_mse_grad, pred.size, flat(pred), flat(target), flat(gpred), flat(gtarget) if need_gtarget else flat(gpred),
           bool(need_gtarget), gdev, gval, pred.size)
