"""Compile every CUDA kernel launch recorded by a simulator run to PTX, without a GPU.

The simulator runs kernels as Python: it checks no types, so code that a GPU compiler would reject could
pass there. This script takes the launch records (``NETDSL_CUDA_RECORD`` files: kernel name and argument
types per launch) and compiles each distinct (kernel, signature) with numba's CUDA compiler (NVVM) to PTX
for compute capability 7.5, which needs the CUDA toolkit's libNVVM but no GPU and no driver.

    python tests/cuda/ptxcheck.py RECORD...     exit 0: all compiled; 77: no NVVM here; 1: failures listed
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor


def _types(spec):
    import numpy as np
    from numba import from_dtype
    from numba.core import types

    out = []
    for a in spec:
        if a[0] == "array":
            out.append(types.Array(from_dtype(np.dtype(a[1])), a[2], a[3]))
        elif a[0] == "tuple":
            out.append(types.UniTuple(from_dtype(np.dtype(a[1])), a[2]))
        elif a[1] == "bool":
            out.append(types.boolean)
        else:
            out.append(from_dtype(np.dtype(a[1])))
    return tuple(out)


class _FakeDevice:
    compute_capability = (7, 5)


def _no_driver_needed() -> None:
    """Device functions (numba's own overloads of min/max among them) ask the current device for its compute
    capability when compiled; with no driver, answer 7.5 (what the kernels are compiled for here)."""
    from numba.cuda import dispatcher

    if hasattr(dispatcher, "get_current_device"):
        dispatcher.get_current_device = lambda: _FakeDevice()


def _compile(job):
    name, spec = job
    try:
        from numba import cuda

        _no_driver_needed()

        mod = importlib.import_module(name.rsplit(".", 1)[0])
        from netdsl.compiler.kernels.cuda._common import KERNELS

        assert mod is not None
        k = KERNELS[name]
        cuda.compile_ptx(k.py_func, _types(spec), cc=(7, 5))
        return None
    except Exception as exc:  # noqa: BLE001 - reported per kernel
        return f"{name}{tuple(json.dumps(a) for a in spec)}: {type(exc).__name__}: {str(exc)[:2000]}"


def nvvm_available() -> bool:
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
        return True
    except Exception:  # noqa: BLE001
        return False


def main(paths: list[str]) -> int:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("ptxcheck must run without the simulator", file=sys.stderr)
        return 2
    if not nvvm_available():
        print("no libNVVM here (CUDA toolkit): nothing compiled")
        return 77
    jobs = set()
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                name, spec = json.loads(line)
                jobs.add((name, json.dumps(spec)))
    jobs = sorted((n, json.loads(s)) for n, s in jobs)
    with ProcessPoolExecutor(max_workers=int(os.environ.get("PTXCHECK_WORKERS", "2"))) as ex:
        failures = [r for r in ex.map(_compile, jobs, chunksize=8) if r]
    print(f"compiled {len(jobs) - len(failures)} of {len(jobs)} kernel signatures to PTX")
    for f in failures:
        print("FAILED", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
