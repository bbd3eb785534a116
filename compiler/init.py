"""Parameter initialisation as PyTorch does it per layer, drawn from the run's seed.

conv/dense weights: Kaiming-uniform with a = √5, i.e. uniform ±1/√fan_in; biases uniform ±1/√fan_in;
embeddings N(0, 1); norms weight 1, bias 0; running statistics mean 0, variance 1. Fixed weights (`weights=`)
are copied, a single (kh, kw) kernel repeated for every (out, in) pair. Parameters are drawn in registry order
from one generator, so the same seed gives the same network.
"""

from __future__ import annotations

import numpy as np

from netdsl.ir import ParamSpec


def init_params(specs: dict[str, ParamSpec], seed: int, dtype: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        out[name] = init_one(spec, rng, dtype)
    return out


def init_one(spec: ParamSpec, rng: np.random.Generator, dtype: str) -> np.ndarray:
    kind, arg = spec.init
    shape = spec.shape
    if kind == "uniform":
        a = rng.uniform(-arg, arg, size=shape)
    elif kind == "normal":
        a = rng.normal(0.0, arg, size=shape)
    elif kind == "const":
        a = np.full(shape, arg)
    elif kind == "fixed":
        w = np.asarray(arg, dtype=np.float64)
        a = np.broadcast_to(w, shape) if w.shape != shape else w
    else:
        raise ValueError(f"unknown initialiser {kind} for {spec.name}")
    return np.ascontiguousarray(a, dtype=dtype)
