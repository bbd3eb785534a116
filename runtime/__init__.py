"""netdsl.runtime: datasets, batching, optimizers, schedules, the training loop, metrics and checkpoints.

Installed as `netdsl.runtime` (never as a top-level `runtime`). Importing it is cheap: the public functions
load their modules (and Numba) on first use, so the CLI's parser can register `train`, `eval` and `sample`.

    history = netdsl.runtime.train("specs/lenet5.net", epochs=5, out="runs/lenet")
    result = netdsl.runtime.evaluate_checkpoint("specs/lenet5.net", "runs/lenet")
    text = netdsl.runtime.sample("specs/char_lstm.net", "runs/char", prompt="ROMEO:", length=200)

`netdsl.runtime.train` is always the function; its module is `sys.modules["netdsl.runtime.train"]`
(`from netdsl.runtime.train import prepare` works as usual).
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["Optimizer", "Schedule", "cooccurrence", "evaluate_checkpoint", "open_dataset", "sample", "train"]

_WHERE = {
    "evaluate_checkpoint": "infer",
    "sample": "infer",
    "cooccurrence": "words",
    "open_dataset": "data",
    "Optimizer": "optim",
    "Schedule": "schedules",
}


def train(net_or_path: Any, **options: Any) -> list[dict[str, Any]]:
    """Train a network; see `netdsl.runtime.train` (the module) for the arguments. Returns the history."""
    from .train import train as run

    return run(net_or_path, **options)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps the attribute `train` bound to the function when the submodule `train` is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
