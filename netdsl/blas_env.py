"""Pick OpenBLAS's AVX-512 kernels on AMD processors that have AVX-512 but that OpenBLAS does not recognise.

OpenBLAS chooses its kernels from the CPU model when it loads. The OpenBLAS bundled with SciPy (which Numba's
``np.dot`` calls) does not know AMD's Zen 5 (family 0x1A) and falls back to its Haswell (AVX2) kernels, which
run SGEMM at half the speed of its SkylakeX (AVX-512) kernels on the same cores: measured on this project's
2-core EPYC, 211 against 405 GFLOP/s for a 2048³ SGEMM, 187 against 301 for the 128×1152×8192 product of a
ResNet convolution. The choice is read from ``OPENBLAS_CORETYPE`` when a library loads, so this runs before
anything imports NumPy or SciPy. A user's own ``OPENBLAS_CORETYPE`` is always left alone, and so is every
processor that is not AMD (OpenBLAS recognises Intel's AVX-512 models itself) or lacks the AVX-512
subsets (F, CD, BW, DQ, VL) the SkylakeX kernels use.
"""

from __future__ import annotations

import os
import platform

_NEEDED = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def wanted_coretype(cpuinfo: str, machine: str) -> str | None:
    """The OPENBLAS_CORETYPE to set for a processor described by /proc/cpuinfo's text, or None."""
    if machine not in ("x86_64", "AMD64"):
        return None
    vendor = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    if vendor == "AuthenticAMD" and _NEEDED <= flags:
        return "SkylakeX"
    return None


def choose_openblas_kernels() -> str | None:
    """Set OPENBLAS_CORETYPE for this process when `wanted_coretype` asks for it; returns what was set."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read(1 << 16)
    except OSError:
        return None
    core = wanted_coretype(text, platform.machine())
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = core
    return core
