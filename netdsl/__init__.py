"""netdsl: a declarative graph-compiler DSL for neural networks.

    net = netdsl.load("specs/lenet5.net")       # parse, elaborate, shape-check
    print(net.summary())
    prog = netdsl.compile(net, batch=64)         # Numba kernels (imported only here)

Importing netdsl does not import Numba, so `netdsl check`, `summary` and `graph` start fast.
"""

from __future__ import annotations

from typing import Any

from .diagnostics import InternalError, SpecError
from .net import Net, load, loads

__all__ = ["Net", "SpecError", "InternalError", "load", "loads", "compile", "train"]
__version__ = "0.1.0"


def compile(net: Net, batch: int = 1, device: str = "cpu", dtype: str = "float32", **options: Any) -> Any:  # noqa: A001
    """Compile a checked network into a `Program` (forward, backward, optimizer step) for `batch` examples."""
    from .compiler import compile_net

    return compile_net(net, batch=batch, device=device, dtype=dtype, **options)


def train(net: Net | str, **options: Any) -> Any:
    """Train a network (a `Net` or a spec path) as `netdsl train` does; returns the history."""
    from .runtime import train as run

    return run(net, **options)
