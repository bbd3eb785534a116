"""Loss kernels: cross_entropy (softmax fused, label smoothing, ignore index) and mse — forward and backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")`` and write into preallocated outputs; a loss
  forward returns its value as a float64 scalar (sums are accumulated in float64). Arrays are C-contiguous,
  float32 or float64 (one dtype per call); labels are int64.
- Backward kernels OVERWRITE their gradient outputs and take the upstream gradient of the scalar loss
  ``gloss`` (1.0 when the loss is the objective).

cross_entropy, as PyTorch's with ``label_smoothing`` and ``ignore_index``: logits (N, V), labels (N,); the
target row is (1-eps)*onehot(label) + eps/V; rows whose label equals ``ignore_index`` contribute nothing and
the loss is the mean over the other rows (0 if there are none). Forward saves the softmax ``probs`` (N, V),
which is all backward needs: glogits = gloss * (probs - target) / count. A label outside [0, V) that is not
the ignore index raises IndexError. For a [T, V] sequence per sample the caller passes N = B*T.

mse: the mean of (pred - target)^2 over all elements; any shape, pred and target alike.
"""

import math

from numba import njit

from . import fastmath as fm
from ._common import row_sum

# Reductions may be reassociated so LLVM can vectorise the sums; this flag alone assumes nothing about NaN or
# infinities, which keep propagating as usual.
_REASSOC = {"reassoc", "contract"}


@njit(cache=True, error_model="numpy")
def _count(labels, ignore_index):
    c = 0
    for n in range(labels.shape[0]):
        if labels[n] != ignore_index:
            c += 1
    return c


@njit(cache=True, error_model="numpy")
def cross_entropy_forward(logits, labels, smoothing, ignore_index, probs):
    # logits (N, V), labels (N,) int64 -> probs (N, V); returns the mean loss over non-ignored rows
    N, V = logits.shape
    total = 0.0
    count = 0
    fast = logits.itemsize == 4  # float32: vectorisable exp (fastmath.py)
    for n in range(N):
        row = logits[n]
        pr = probs[n]
        m = row[0]  # in the data's dtype: a float64 maximum would widen the exponentials to float64
        for v in range(V):
            m = max(m, row[v])
        for v in range(V):
            pr[v] = fm.exp(row[v] - m, fast)
        s = row_sum(pr, V)
        r = 1.0 / s
        for v in range(V):
            pr[v] *= r
        y = labels[n]
        if y == ignore_index:
            continue
        if y < 0 or y >= V:
            raise IndexError("cross_entropy: label out of range")
        lse = m + math.log(s)
        # -sum_v target_v * log p_v with log p_v = row[v] - lse
        loss = (1.0 - smoothing) * (lse - row[y])
        if smoothing != 0.0:
            acc = 0.0
            for v in range(V):
                acc += lse - row[v]
            loss += smoothing / V * acc
        total += loss
        count += 1
    return total / count if count > 0 else 0.0


@njit(cache=True, error_model="numpy")
def cross_entropy_backward(gloss, probs, labels, smoothing, ignore_index, glogits):
    # probs (N, V) saved by forward, labels (N,) int64 -> glogits (N, V) = gloss * (probs - target) / count
    N, V = probs.shape
    count = _count(labels, ignore_index)
    f = gloss / count if count > 0 else 0.0
    off = smoothing / V
    for n in range(N):
        g = glogits[n]
        y = labels[n]
        if y == ignore_index:
            for v in range(V):
                g[v] = 0.0
            continue
        pr = probs[n]
        for v in range(V):
            g[v] = f * (pr[v] - off)
        g[y] -= f * (1.0 - smoothing)


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def mse_forward(pred, target):
    # pred, target (...) alike; returns mean((pred - target)^2)
    pf = pred.reshape(pred.size)
    tf = target.reshape(target.size)
    acc = 0.0
    for i in range(pf.shape[0]):
        d = pf[i] - tf[i]
        acc += d * d
    return acc / pf.shape[0]


@njit(cache=True, error_model="numpy")
def mse_backward(gloss, pred, target, gpred, gtarget, need_gtarget):
    # pred, target (...) -> gpred = gloss * 2 (pred - target) / n, gtarget = -gpred (if needed)
    pf = pred.reshape(pred.size)
    tf = target.reshape(target.size)
    gp = gpred.reshape(gpred.size)
    f = 2.0 * gloss / pf.shape[0]
    for i in range(pf.shape[0]):
        gp[i] = f * (pf[i] - tf[i])
    if need_gtarget:
        gt = gtarget.reshape(gtarget.size)
        for i in range(pf.shape[0]):
            gt[i] = -gp[i]
