"""Learning-rate schedules. Each says what it counts.

- `constant`: the optimizer's lr throughout.
- `step(every, gamma=0.1)` — counts **epochs**: lr · gammaᵏ with k = ⌊epoch / every⌋ (epoch 0 is the first).
- `multistep(milestones, gamma=0.1)` — counts **epochs**: lr · gammaᵏ, k = the number of milestones ≤ epoch.
- `cosine(warmup=0, min_lr=0, steps=run's total)` — counts **steps**: during the first `warmup` steps
  lr · (s+1)/(warmup+1) (nanoGPT's warm-up), then min_lr + ½(lr − min_lr)(1 + cos(π·(s − warmup)/(steps −
  warmup))), and min_lr after `steps`.
- `plateau(factor=0.1, patience=10, min_lr=0)` — counts **evaluations** (once per epoch, or every `--every`
  steps): when the validation loss has not improved (by a relative 1e-4) for more than `patience` evaluations,
  lr ← max(lr · factor, min_lr) — "divide by 10 when the validation error stops improving", as AlexNet was
  trained; PyTorch's `ReduceLROnPlateau` defaults.

Epoch-counting schedules see the epoch a step falls in (step // steps_per_epoch), so they also work for runs
measured in steps.
"""

from __future__ import annotations

import math
from typing import Any

from netdsl.diagnostics import Diagnostic, SpecError
from netdsl.recipe import SCHEDULES, CallSpec

UNITS = {"constant": "steps", "step": "epochs", "multistep": "epochs", "cosine": "steps", "plateau": "evaluations"}
DEFAULTS: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"gamma": 0.1},
    "multistep": {"gamma": 0.1},
    "cosine": {"warmup": 0, "min_lr": 0.0, "steps": None},
    "plateau": {"factor": 0.1, "patience": 10, "min_lr": 0.0},
}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Schedule:
    """lr(step, epoch) for a schedule call; `observe(val_loss)` feeds the plateau schedule."""

    def __init__(self, call: CallSpec | None, base_lr: float, total_steps: int) -> None:
        call = call or CallSpec("constant")
        if call.name not in DEFAULTS:
            raise SpecError(Diagnostic(call.span, f"unknown schedule '{call.name}'", "known: " + ", ".join(SCHEDULES)))
        self.call = call
        self.name = call.name
        self.unit = UNITS[call.name]
        self.base = base_lr
        self.total = total_steps
        a = {**DEFAULTS[call.name], **call.kwargs}
        self.args = a

        def err(msg: str) -> SpecError:
            return SpecError(Diagnostic(call.span, f"{call}: {msg}"))

        if self.name == "step" and (not _int(a["every"]) or a["every"] < 1):
            raise err(f"every must be a positive whole number of epochs, found {a['every']!r}")
        if self.name == "multistep":
            ms = a["milestones"]
            if not isinstance(ms, list) or not all(_int(m) and m >= 0 for m in ms) or ms != sorted(ms):
                raise err(f"milestones must be a rising list of epochs, found {ms!r}")
        if self.name in ("step", "multistep") and (not _num(a["gamma"]) or a["gamma"] <= 0):
            raise err(f"gamma must be positive, found {a['gamma']!r}")
        if self.name == "cosine":
            if not _int(a["warmup"]) or a["warmup"] < 0:
                raise err(f"warmup must be a whole number of steps ≥ 0, found {a['warmup']!r}")
            if a["steps"] is not None and (not _int(a["steps"]) or a["steps"] < 1):
                raise err(f"steps must be a positive whole number, found {a['steps']!r}")
            if not _num(a["min_lr"]) or a["min_lr"] < 0:
                raise err(f"min_lr must be a number ≥ 0, found {a['min_lr']!r}")
        if self.name == "plateau":
            if not _num(a["factor"]) or not 0 < a["factor"] < 1:
                raise err(f"factor must be in (0, 1), found {a['factor']!r}")
            if not _int(a["patience"]) or a["patience"] < 0:
                raise err(f"patience must be a whole number ≥ 0, found {a['patience']!r}")
            if not _num(a["min_lr"]) or a["min_lr"] < 0:
                raise err(f"min_lr must be a number ≥ 0, found {a['min_lr']!r}")
        # plateau state
        self.current = base_lr
        self.best: float | None = None
        self.bad = 0

    def describe(self) -> str:
        return f"{self.call} (counts {self.unit})" if self.name != "constant" else "constant"

    def lr(self, step: int, epoch: int) -> float:
        a = self.args
        if self.name == "step":
            return self.base * a["gamma"] ** (epoch // a["every"])
        if self.name == "multistep":
            return self.base * a["gamma"] ** sum(1 for m in a["milestones"] if m <= epoch)
        if self.name == "cosine":
            warm = a["warmup"]
            total = a["steps"] or self.total
            if step < warm:
                return self.base * (step + 1) / (warm + 1)
            if step >= total:
                return float(a["min_lr"])
            ratio = (step - warm) / max(1, total - warm)
            return a["min_lr"] + 0.5 * (self.base - a["min_lr"]) * (1.0 + math.cos(math.pi * ratio))
        if self.name == "plateau":
            return self.current
        return self.base

    def observe(self, metric: float) -> None:
        """An evaluation's validation loss (plateau only)."""
        if self.name != "plateau" or not math.isfinite(metric):
            return
        if self.best is None or metric < self.best * (1 - 1e-4):
            self.best = metric
            self.bad = 0
            return
        self.bad += 1
        if self.bad > self.args["patience"]:
            self.current = max(self.current * self.args["factor"], float(self.args["min_lr"]))
            self.bad = 0

    def state(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "bad": self.bad}

    def load_state(self, s: dict[str, Any]) -> None:
        self.current = float(s.get("current", self.base))
        self.best = s.get("best")
        self.bad = int(s.get("bad", 0))
