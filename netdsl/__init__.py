"""netdsl: a declarative graph-compiler DSL for neural networks.

    net = netdsl.load("specs/lenet5.net")       # parse, elaborate, shape-check
    print(net.summary())
    prog = netdsl.compile(net, batch=64)         # Numba kernels (imported only here)

Importing netdsl does not import Numba, so `netdsl check`, `summary` and `graph` start fast.
"""

from __future__ import annotations

from typing import Any

from .blas_env import choose_openblas_kernels

choose_openblas_kernels()  # before anything loads NumPy's or SciPy's OpenBLAS

from .diagnostics import InternalError, SpecError
from .net import Net, load, loads

__all__ = ["InternalError", "Net", "SpecError", "compile", "load", "loads", "train"]
__version__ = "0.1.0"


def compile(net: Net, batch: int = 1, device: str = "cpu", dtype: str = "float32", **options: Any) -> Any:
    """Compile a checked network into a `Program` (forward, backward, optimizer step) for `batch` examples.

    Refuses (SpecError), before allocating them, parameters that cannot fit in the memory available, and a
    training step (a forward pass, for a network without a loss) whose buffer plan cannot fit, with the planned
    bytes and the largest batch that fits."""
    from .compiler import compile_net

    _parameters_fit(net, dtype)
    prog = compile_net(net, batch=batch, device=device, dtype=dtype, **options)
    if device == "cpu":
        _plan_fits(prog, net, batch, dtype, options.get("fuse", True))
    return prog


def _parameters_fit(net: Net, dtype: str) -> None:
    from .compiler import program
    from .diagnostics import Diagnostic

    avail = program.available_memory()
    if avail is None:
        return
    count = sum(p.size for p in net.ir.params.values())
    need = count * (8 if dtype == "float64" else 4) * 3  # values, gradients, optimizer state
    if need > 0.9 * avail:
        raise SpecError(Diagnostic(None, f"{net.source}: {net.name} has {count:,} parameter values: with their "
                                   f"gradients and optimizer state they need {_size(need)} ({need:,} bytes), "
                                   f"but only {_size(avail)} of memory is available",
                                   "even batch 1 does not fit: use a smaller network (fewer or narrower layers)"))


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _plan_fits(prog: Any, net: Net, batch: int, dtype: str, fuse: bool) -> None:
    """Plan the main schedule now when memory may be short (the program plans it again on its first run)."""
    from .compiler import program
    from .summary import _estimate_memory

    avail = program.available_memory()
    if avail is None or 4 * _estimate_memory(net, batch) * (2 if dtype == "float64" else 1) <= 0.9 * avail:
        return  # plenty of room: the first run's own check is enough
    from .compiler.lower import lower
    from .compiler.plan import plan

    train = net.ir.loss is not None
    sched = lower(net, train=train, fetch=[], backward=train, with_loss=train, fuse=fuse)
    prog._fits(sched, plan(sched, batch, dtype))


def train(net: Net | str, **options: Any) -> Any:
    """Train a network (a `Net` or a spec path) as `netdsl train` does; returns the history."""
    from .runtime import train as run

    return run(net, **options)
