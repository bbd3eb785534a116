"""The benchmark models: each a netdsl spec, random feeds, and the same model in PyTorch (built lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np

LENET5 = """
network LeNet5(classes=10) {
    input image: [1, 32, 32]
    input label: int[]
    logits = image
        -> c1: conv(6, kernel=5) -> tanh -> s2: avgpool(2)
        -> c3: conv(16, kernel=5) -> tanh -> s4: avgpool(2)
        -> flatten -> f5: dense(120) -> tanh -> f6: dense(84) -> tanh -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
"""


def _lenet_feeds(rng: np.random.Generator, batch: int = 64) -> dict[str, np.ndarray]:
    return {"image": rng.standard_normal((batch, 1, 32, 32)).astype(np.float32),
            "label": rng.integers(0, 10, size=batch).astype(np.int64)}


def _lenet_torch(torch: Any) -> tuple[Any, Any, Any]:
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    f = _lenet_feeds(np.random.default_rng(0))
    x, y = torch.from_numpy(f["image"]), torch.from_numpy(f["label"])
    return model, (x, y), lambda m, d: nn.functional.cross_entropy(m(d[0]), d[1])


MODELS: dict[str, dict[str, Any]] = {
    "lenet5": {"spec": LENET5, "batch": 64, "feeds": _lenet_feeds, "torch": _lenet_torch},
}
