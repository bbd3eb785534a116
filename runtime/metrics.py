"""Progress display, `metrics.jsonl` and `curves.png`.

The progress bar is tqdm's when tqdm is importable (the `progress` extra) and stderr is a terminal, else a
plain line printed every few seconds; both show the loss, examples per second and the ETA. `curves.png` needs matplotlib (the `plot`
extra); without it a note is printed and training goes on.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Steps done out of `total`, with the running loss and throughput."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "train") -> None:
        self.total = total
        self.done = initial
        self.enabled = enabled
        self.bar: Any = None
        self.start = time.perf_counter()
        self.start_step = initial
        self.last_print = self.start
        if not enabled or not sys.stderr.isatty():  # logs get the plain periodic line, not redraws
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr,
                        leave=False, mininterval=0.5)

    def update(self, loss: float, examples_per_s: float, epoch: int) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {epoch + 1}, loss {loss:.4f}, {examples_per_s:,.0f} ex/s", refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now - self.last_print >= 5 or self.done == self.total:
            self.last_print = now
            rate = (self.done - self.start_step) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"  step {self.done}/{self.total} (epoch {epoch + 1}): loss {loss:.4f}, "
                  f"{examples_per_s:,.0f} examples/s, ETA {_eta(eta)}", file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsLog:
    """One JSON object per evaluation, appended to `DIR/metrics.jsonl` (when there is a directory)."""

    def __init__(self, directory: Path | None, resume_step: int | None = None) -> None:
        self.path = directory / "metrics.jsonl" if directory is not None else None
        if self.path is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():  # drop lines written after the checkpoint we resume from
            keep = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            # as checkpoints are written: a temporary file, fsync'ed, renamed over the old one, so that a run
            # killed meanwhile leaves either the old lines or the new ones, never a truncated file
            from .checkpoint import write_atomic

            data = "".join(k + "\n" for k in keep).encode("utf-8")
            write_atomic(self.path, lambda f: f.write(data))

    def append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def plot(history: list[dict[str, Any]], path: Path) -> str | None:
    """Write the loss and accuracy/perplexity curves to `path`; returns a note when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"note: matplotlib is not installed, so {path.name} was not drawn (pip install 'netdsl[plot]')"
    if not history:
        return None
    steps = [h["step"] for h in history]
    second = next((k for k in ("val_accuracy", "val_perplexity") if any(h.get(k) is not None for h in history)), None)
    fig, axes = plt.subplots(1, 2 if second else 1, figsize=(10 if second else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    for key, label, color in (("train_loss", "train", "C0"), ("val_loss", "validation", "C1")):
        pts = [(s, h[key]) for s, h in zip(steps, history, strict=True) if h.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o" if len(pts) < 30 else None, label=label, color=color)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if second:
        ax2 = axes[0][1]
        for key, label, color in ((second.replace("val_", "train_"), "train", "C0"), (second, "validation", "C1")):
            pts = [(s, h[key]) for s, h in zip(steps, history, strict=True) if h.get(key) is not None]
            if pts:
                ax2.plot(*zip(*pts, strict=True), marker="o" if len(pts) < 30 else None, label=label, color=color)
        ax2.set_xlabel("step")
        ax2.set_ylabel(second.replace("val_", ""))
        ax2.grid(alpha=0.3)
        ax2.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        return f"note: could not write {path}: {exc}"
    finally:
        plt.close(fig)
    return None


def fmt_metrics(m: dict[str, Any]) -> str:
    """`val_loss 0.0812, val_accuracy 97.78%` from a metrics record (the keys that are set)."""
    parts = []
    for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_perplexity", "loss", "accuracy",
              "perplexity"):
        v = m.get(k)
        if v is None:
            continue
        if k.endswith("accuracy"):
            parts.append(f"{k} {100 * v:.2f}%")
        elif k.endswith("perplexity"):
            parts.append(f"{k} {v:.3f}")
        else:
            parts.append(f"{k} {v:.4f}")
    return ", ".join(parts)
