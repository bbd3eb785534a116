"""netdsl.compiler: autodiff, lowering to kernel schedules, buffer planning, code generation, kernels.

Installed as `netdsl.compiler` (never as a top-level `compiler`).
"""

from __future__ import annotations

from typing import Any


def compile_net(net: Any, batch: int = 1, device: str = "cpu", dtype: str = "float32", seed: int = 0,
                fuse: bool = True) -> Any:
    from .program import Program, fit_blas_threads

    if device == "cpu":
        fit_blas_threads()
    return Program(net, batch=batch, device=device, dtype=dtype, seed=seed, fuse=fuse)
