"""Shared helpers for the runtime tests: tiny data files and tiny specs written to tmp directories."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

MLP = """
network MLP(classes=auto) {
    input x: [4]
    input y: int[]
    logits = x -> h: dense(16) -> tanh -> out: dense(classes)
    output logits
    loss cross_entropy(logits, y)
}
train MLP {
    data npz("blobs.npz")
    optimizer adam(lr=0.01)
    batch 32
    epochs 2
}
"""


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None) -> Path:
    """An IDX file of unsigned bytes (gzipped when the name ends in .gz)."""
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else (0x800 | arr.ndim)
    data = struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return x, y


@pytest.fixture
def mlp_spec(tmp_path: Path) -> Path:
    """`mlp.net` (a 4 → 16 → classes MLP with a recipe) beside `blobs.npz` (300 examples, 3 classes)."""
    x, y = blobs()
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    spec = tmp_path / "mlp.net"
    spec.write_text(MLP, encoding="utf-8")
    return spec
