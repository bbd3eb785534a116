"""Whole-network helpers for compiler tests: random feeds and float64 gradient checks through a Program."""

from __future__ import annotations

import numpy as np

import netdsl


def feeds(net, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs: floats ~ N(0, 1); integer labels in range of the logits they meet."""
    out = {}
    ranges = _label_ranges(net)
    for name, nid in net.ir.inputs.items():
        t = net.ir.node(nid).outputs[0]
        if t.is_int:
            out[name] = rng.integers(0, ranges.get(name, 2), size=(batch,) + t.shape).astype(np.int64)
        else:
            out[name] = rng.standard_normal((batch,) + t.shape)
    return out


def _label_ranges(net) -> dict[str, int]:
    ranges: dict[str, int] = {}
    inputs = {nid: name for name, nid in net.ir.inputs.items()}
    for n in net.ir:
        if n.op == "cross_entropy" and n.inputs[1].node in inputs:
            ranges[inputs[n.inputs[1].node]] = net.ir.type_of(n.inputs[0]).shape[-1]
        if n.op == "embedding" and n.inputs[0].node in inputs:
            ranges[inputs[n.inputs[0].node]] = n.attrs["vocab"]
    return ranges


def compile64(text: str, batch: int = 2, **params):
    net = netdsl.loads(text, **params)
    return net, netdsl.compile(net, batch=batch, dtype="float64")


RTOL = 1e-6  # relative agreement of the analytic gradient with two-sided differences (float64)
ATOL = 1e-9  # a floor for entries near zero: the differences' own rounding noise is ~1e-11 at eps = 1e-5


def finite_difference_check(prog, x, names=None, per_param: int = 6, eps: float = 1e-5, seed: int = 0):
    """Two-sided differences of the train-mode loss against loss_and_grads, on a few entries per parameter.

    Returns the worst ratio |fd - g| / (RTOL·(|fd| + |g|) + ATOL) — at most 1 when the gradient is right —
    and where it occurred.
    """
    rng = np.random.default_rng(seed)
    _, grads = prog.loss_and_grads(x, seed=0, update_stats=False)
    worst, where = 0.0, None
    for name in names or sorted(grads):
        p = prog.params[name]
        flat = p.reshape(-1)
        idx = rng.choice(flat.size, size=min(per_param, flat.size), replace=False)
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            up = prog.loss(x, train=True)
            flat[i] = old - eps
            down = prog.loss(x, train=True)
            flat[i] = old
            fd = (up - down) / (2 * eps)
            g = grads[name].reshape(-1)[i]
            err = abs(fd - g) / (RTOL * (abs(fd) + abs(g)) + ATOL)
            if err > worst:
                worst, where = err, (name, int(i), fd, g)
    return worst, where


def direction_check(prog, x, eps: float = 1e-7, seed: int = 1):
    """⟨∇L, d⟩ against (L(θ+εd) − L(θ−εd)) / 2ε for one random direction d over every parameter."""
    rng = np.random.default_rng(seed)
    _, grads = prog.loss_and_grads(x, seed=0, update_stats=False)
    dirs = {k: rng.standard_normal(g.shape) for k, g in grads.items()}
    analytic = sum(float((grads[k] * d).sum()) for k, d in dirs.items())
    saved = {k: prog.params[k].copy() for k in dirs}
    for k, d in dirs.items():
        prog.params[k][...] = saved[k] + eps * d
    up = prog.loss(x, train=True)
    for k, d in dirs.items():
        prog.params[k][...] = saved[k] - eps * d
    down = prog.loss(x, train=True)
    for k in dirs:
        prog.params[k][...] = saved[k]
    fd = (up - down) / (2 * eps)
    return abs(fd - analytic) / max(1e-8, abs(fd) + abs(analytic)), fd, analytic
