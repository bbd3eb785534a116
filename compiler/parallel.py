"""How many lanes (threads) the CPU kernels split their work into, known without importing Numba.

Kernels that parallelise do it themselves, over independent pieces (samples of a batch, rows of a GEMM), each
lane calling a single-threaded BLAS on its piece: one pool of threads for everything, so OpenBLAS's spinning
workers never compete with Numba's. The lane count is fixed when a program is planned (its workspaces hold one
scratch area per lane) and read back by the kernels from the workspace size. It is Numba's thread count:
NUMBA_NUM_THREADS when set, otherwise the cores this process may run on.
"""

from __future__ import annotations

import os


def lanes() -> int:
    want = os.environ.get("NUMBA_NUM_THREADS")
    if want:
        try:
            return max(1, int(want))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
