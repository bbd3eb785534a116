"""CPU kernels: one module per op family (`<op>_forward` / `<op>_backward`, `@njit(cache=True)`).

Numba's on-disk cache checks only the source file of the function it caches, so a kernel that inlines a
helper from another module (`fastmath.py`, `_common.py`) would keep running the old helper after an upgrade.
On import, this package therefore stamps the cache with a hash of all its sources (and of the lane count the
kernels split their work into) and drops cached kernels whose stamp differs.
Importing it imports no kernel family (each family module imports on its own); it starts Numba's thread pool.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from netdsl.compiler.parallel import lanes


def _refresh_kernel_cache() -> None:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    digest.update(f"lanes={lanes()}".encode())  # _common.LANES is compiled into the kernels as a constant
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    stamp = digest.hexdigest()
    cache = here / "__pycache__"
    marker = cache / "netdsl-kernels.stamp"
    try:
        if marker.read_text(encoding="ascii") == stamp:
            return
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        marker.write_text(stamp, encoding="ascii")
    except OSError:  # a read-only install: Numba then caches elsewhere (its user-wide directory)
        pass


_refresh_kernel_cache()


def _launch_threads() -> None:
    # A kernel loaded from Numba's cache calls its parallel (prange) helpers directly, not through the dispatcher
    # that would first start Numba's thread pool: with no pool, the first such call crashes the process
    # (SIGSEGV). Asking for the thread count starts the pool, once, as the kernels are imported.
    import numba

    numba.get_num_threads()


_launch_threads()
