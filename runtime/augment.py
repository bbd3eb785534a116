"""Image augmentation from a recipe's `augment` line: `augment crop(pad=4), flip, normalize(mean=…, std=…)`.

- `crop(pad=4)`: zero-pad each side by `pad`, then cut a random window of the original size (training only).
- `flip`: mirror left–right with probability ½ (training only).
- `normalize(mean, std)`: `(x - mean) / std` per channel (a number, or one per channel); applied to training
  *and* evaluation batches.

Steps run in the order written, on the dataset's image field (`[C, H, W]` floats), in place on the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError
from netdsl.recipe import CallSpec

Step = Callable[[np.ndarray, np.random.Generator | None], np.ndarray]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _per_channel(call: CallSpec, key: str, channels: int) -> np.ndarray:
    v = call.kwargs[key]
    vals = v if isinstance(v, list) else [v]
    if not vals or not all(_num(x) for x in vals):
        raise SpecError(Diagnostic(call.span, f"normalize: {key} must be a number or a list of numbers, found {v!r}"))
    if len(vals) not in (1, channels):
        raise SpecError(Diagnostic(call.span, f"normalize: {key} has {len(vals)} values for images of "
                                   f"{channels} channels", f"give one value or {channels}"))
    arr = np.array(vals, dtype=np.float32)
    if key == "std" and (arr <= 0).any():
        raise SpecError(Diagnostic(call.span, "normalize: std must be positive"))
    return np.broadcast_to(arr, (channels,)).reshape(1, channels, 1, 1).copy()


def _crop(pad: int) -> Step:
    def run(x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        if rng is None or pad == 0:
            return x
        n, _, h, w = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        oy = rng.integers(0, 2 * pad + 1, size=n)
        ox = rng.integers(0, 2 * pad + 1, size=n)
        out = np.empty_like(x)
        for i in range(n):
            out[i] = padded[i, :, oy[i]: oy[i] + h, ox[i]: ox[i] + w]
        return out

    return run


def _flip(x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    if rng is None:
        return x
    mask = rng.random(len(x)) < 0.5
    x = x.copy()
    x[mask] = x[mask][..., ::-1]
    return x


def _normalize(mean: np.ndarray, std: np.ndarray) -> Step:
    def run(x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        return (x - mean) / std

    return run


class Augment:
    """The recipe's augmentation steps for one input (the image field)."""

    def __init__(self, calls: list[CallSpec], target: str, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise SpecError(Diagnostic(calls[0].span if calls else None,
                                       f"augment acts on images [C, H, W]; input '{target}' is "
                                       f"[{', '.join(map(str, shape))}]"))
        self.target = target
        self.steps: list[Step] = []
        self.text = ", ".join(str(c) for c in calls)
        for c in calls:
            if c.name == "crop":
                pad = c.kwargs.get("pad", 4)
                if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
                    raise SpecError(Diagnostic(c.span, f"crop: pad must be a whole number ≥ 0, found {pad!r}"))
                self.steps.append(_crop(pad))
            elif c.name == "flip":
                self.steps.append(_flip)
            elif c.name == "normalize":
                self.steps.append(_normalize(_per_channel(c, "mean", shape[0]), _per_channel(c, "std", shape[0])))
            else:
                raise SpecError(Diagnostic(c.span, f"unknown augmentation '{c.name}'", "crop, flip, normalize"))

    def train(self, feeds: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        x = feeds[self.target]
        for s in self.steps:
            x = s(x, rng)
        feeds[self.target] = np.ascontiguousarray(x, dtype=np.float32)

    def eval(self, feeds: dict[str, np.ndarray]) -> None:
        x = feeds[self.target]
        for s in self.steps:
            x = s(x, None)
        feeds[self.target] = np.ascontiguousarray(x, dtype=np.float32)
