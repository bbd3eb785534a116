"""Optimizers as fused Numba kernels over each parameter array, with their state arrays.

Each kernel reads a parameter, its gradient and its state once and writes them back (one pass), as PyTorch's
`torch.optim` defines the update:

- `sgd(lr=0.01, momentum=0, nesterov=false, weight_decay=0)`:  d = g + wd·p;  b = μ·b + d;
  p -= lr · (d + μ·b if nesterov else b)   (plain `p -= lr·d` without momentum).
- `adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0)`: L2 decay added to the gradient;
  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  p -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + eps).
- `adamw(…, weight_decay=0.01)`: the same with decoupled decay, p ← p·(1 - lr·wd) before the step.
- `rmsprop(lr=0.01, alpha=0.99, eps=1e-8, momentum=0, weight_decay=0)`: s = α·s + (1-α)·g²;
  p -= lr · g/(√s + eps)  (through a momentum buffer when momentum > 0).

`decay_min_rank=2` applies weight decay only to parameters of rank ≥ 2 (matrices and kernels, not biases or
norm gains), as nanoGPT does. Clipping (`clip N` in a recipe) scales every gradient by N / (‖g‖ + 1e-6) when
the global norm ‖g‖ over all trainable parameters exceeds N (PyTorch's `clip_grad_norm_`); the scale is fused
into the update, the gradients themselves are not rewritten.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from numba import njit

from netdsl.diagnostics import Diagnostic, SpecError
from netdsl.recipe import OPTIMIZERS, CallSpec

DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "decay_min_rank": 0},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "decay_min_rank": 0},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "decay_min_rank": 0},
    "rmsprop": {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0, "decay_min_rank": 0},
}
SLOTS = {"sgd": ("momentum",), "adam": ("m", "v"), "adamw": ("m", "v"), "rmsprop": ("square", "momentum")}


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def sgd_kernel(p: np.ndarray, g: np.ndarray, buf: np.ndarray, lr: float, momentum: float, nesterov: bool, wd: float,
               scale: float) -> None:
    for i in range(p.size):
        d = g[i] * scale + wd * p[i]
        if momentum != 0.0:
            b = momentum * buf[i] + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = p[i] - lr * d


@njit(cache=True)
def adam_kernel(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float, beta2: float,
                eps: float, wd: float, decoupled: bool, bc1: float, bc2: float, scale: float) -> None:
    step = lr / bc1
    root = math.sqrt(bc2)
    for i in range(p.size):
        gi = g[i] * scale
        pi = p[i]
        if decoupled:
            pi = pi * (1.0 - lr * wd)
        else:
            gi = gi + wd * pi
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - step * mi / (math.sqrt(vi) / root + eps)


@njit(cache=True)
def rmsprop_kernel(p: np.ndarray, g: np.ndarray, sq: np.ndarray, buf: np.ndarray, lr: float, alpha: float, eps: float,
                   momentum: float, wd: float, scale: float) -> None:
    for i in range(p.size):
        gi = g[i] * scale + wd * p[i]
        s = alpha * sq[i] + (1.0 - alpha) * gi * gi
        sq[i] = s
        d = gi / (math.sqrt(s) + eps)
        if momentum > 0.0:
            b = momentum * buf[i] + d
            buf[i] = b
            d = b
        p[i] = p[i] - lr * d


@njit(cache=True)
def sumsq_kernel(g: np.ndarray) -> float:
    total = 0.0
    for i in range(g.size):
        x = np.float64(g[i])
        total += x * x
    return total


# ----------------------------------------------------------------------------- the optimizer


def _flat(a: np.ndarray, name: str) -> np.ndarray:
    if not a.flags.c_contiguous:
        raise SpecError(Diagnostic(None, f"internal: parameter '{name}' is not contiguous"))
    return a.reshape(-1)


def _backend(params: Any) -> Any:
    """The update kernels for where the parameters live: these, or the CUDA ones for a CudaProgram's."""
    if getattr(params, "device", "cpu") == "cuda":
        from netdsl.compiler.kernels.cuda import optim

        return optim
    return sys.modules[__name__]


zeros_like = np.zeros_like
flat = _flat


def check_hyper(call: CallSpec) -> dict[str, Any]:
    """The optimizer's settings with defaults filled in, each value checked."""
    if call.name not in DEFAULTS:
        raise SpecError(Diagnostic(call.span, f"unknown optimizer '{call.name}'", "known: " + ", ".join(OPTIMIZERS)))
    h = dict(DEFAULTS[call.name])
    for k, v in call.kwargs.items():
        if k not in h:
            raise SpecError(Diagnostic(call.span, f"{call.name} has no argument '{k}'",
                                       "its arguments: " + ", ".join(h)))
        h[k] = v

    def err(msg: str) -> SpecError:
        return SpecError(Diagnostic(call.span, f"{call}: {msg}"))

    for k, v in h.items():
        if k == "nesterov":
            if not isinstance(v, bool):
                raise err(f"nesterov must be true or false, found {v!r}")
            continue
        if k == "decay_min_rank":
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise err(f"decay_min_rank must be a whole number ≥ 0, found {v!r}")
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise err(f"{k} must be a number, found {v!r}")
        h[k] = float(v)
    if h["lr"] <= 0:
        raise err(f"lr must be positive, found {h['lr']}")
    if h["weight_decay"] < 0:
        raise err("weight_decay must be ≥ 0")
    for k in ("momentum", "beta1", "beta2", "alpha"):
        if k in h and not 0 <= h[k] < 1:
            raise err(f"{k} must be in [0, 1), found {h[k]}")
    if "eps" in h and h["eps"] <= 0:
        raise err("eps must be positive")
    if h.get("nesterov") and h["momentum"] == 0:
        raise err("nesterov needs momentum > 0")
    return h


class Optimizer:
    """Updates `params[name]` in place from `grads[name]` for every name in `names`.

    `state` holds the optimizer's arrays by `name/slot` (zeros at the start), `t` the number of steps taken.
    """

    def __init__(self, call: CallSpec, params: dict[str, np.ndarray], names: list[str]) -> None:
        self.name = call.name
        self.hyper = check_hyper(call)
        self.params = params
        self.names = list(names)
        self.t = 0
        self.k = _backend(params)  # update kernels (and state arrays) where the parameters live
        self.state: dict[str, np.ndarray] = {}
        for n in self.names:
            for slot in SLOTS[self.name]:
                self.state[f"{n}/{slot}"] = self.k.zeros_like(params[n])
        min_rank = self.hyper["decay_min_rank"]
        self.decay = {n: self.hyper["weight_decay"] if params[n].ndim >= min_rank else 0.0 for n in self.names}

    @property
    def lr(self) -> float:
        return float(self.hyper["lr"])

    def describe(self) -> str:
        shown = {k: v for k, v in self.hyper.items() if DEFAULTS[self.name][k] != v or k == "lr"}
        return f"{self.name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) + ")"

    def grad_norm(self, grads: dict[str, np.ndarray]) -> float:
        k = self.k
        if hasattr(k, "grad_norm"):  # the device's: one reduction over every gradient, one copy to the host
            return k.grad_norm([grads[n] for n in self.names])
        return math.sqrt(sum(k.sumsq_kernel(k.flat(grads[n], n)) for n in self.names))

    def step(self, grads: dict[str, np.ndarray], lr: float, clip: float | None = None) -> float | None:
        """One update at learning rate `lr`; returns the gradient norm when clipping (else None)."""
        scale = 1.0
        norm = None
        if clip is not None:
            norm = self.grad_norm(grads)
            if norm > clip:
                scale = clip / (norm + 1e-6)
        self.t += 1
        h = self.hyper
        k = self.k
        for n in self.names:
            p = k.flat(self.params[n], n)
            g = k.flat(grads[n], n)
            wd = self.decay[n]
            if self.name == "sgd":
                k.sgd_kernel(p, g, k.flat(self.state[f"{n}/momentum"], n), lr, h["momentum"], h["nesterov"], wd,
                             scale)
            elif self.name in ("adam", "adamw"):
                bc1 = 1.0 - h["beta1"] ** self.t
                bc2 = 1.0 - h["beta2"] ** self.t
                k.adam_kernel(p, g, k.flat(self.state[f"{n}/m"], n), k.flat(self.state[f"{n}/v"], n), lr, h["beta1"],
                              h["beta2"], h["eps"], wd, self.name == "adamw", bc1, bc2, scale)
            else:
                k.rmsprop_kernel(p, g, k.flat(self.state[f"{n}/square"], n), k.flat(self.state[f"{n}/momentum"], n),
                                 lr, h["alpha"], h["eps"], h["momentum"], wd, scale)
        return norm

    def load_state(self, arrays: dict[str, np.ndarray], t: int) -> None:
        """Restore the state arrays (copied into the live ones) and the step count."""
        for k, a in self.state.items():
            src = arrays.get(k)
            if src is None or src.shape != a.shape:
                raise SpecError(Diagnostic(None, f"the checkpoint's optimizer state has no '{k}' of shape {a.shape}",
                                           "resume with the optimizer the run started with"))
            a[...] = src
        self.t = int(t)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def with_lr(call: CallSpec, lr: float | None) -> CallSpec:
    """The optimizer call with its learning rate replaced (`--lr`)."""
    if lr is None:
        return call
    return CallSpec(call.name, (), {**call.kwargs, "lr": lr}, call.span)
