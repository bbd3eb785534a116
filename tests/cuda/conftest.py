"""The `cuda` marker: a test that needs a real GPU is skipped when this process has none."""

from __future__ import annotations

import os

import pytest


def real_gpu() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no numba.cuda, a broken driver: no GPU
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is not None and not real_gpu():
        pytest.skip("needs a CUDA GPU (none here)")
