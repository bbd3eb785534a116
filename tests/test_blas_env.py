"""netdsl.blas_env: OpenBLAS's AVX-512 kernels for AMD processors it does not recognise, never over a user's choice."""

from __future__ import annotations

import pytest

from netdsl import blas_env

AVX512 = "fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16"


def cpuinfo(vendor: str, flags: str) -> str:
    block = f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 26\nflags\t\t: {flags}\n\n"
    return block + block.replace(": 0", ": 1")


@pytest.mark.parametrize(("vendor", "flags", "machine", "want"), [
    ("AuthenticAMD", AVX512, "x86_64", "SkylakeX"),            # Zen 4 / Zen 5
    ("AuthenticAMD", "fpu sse avx avx2 fma", "x86_64", None),  # Zen 1-3: no AVX-512
    ("AuthenticAMD", AVX512.replace(" avx512vl", ""), "x86_64", None),  # a subset the kernels use is missing
    ("GenuineIntel", AVX512, "x86_64", None),                  # OpenBLAS knows Intel's models itself
    ("AuthenticAMD", AVX512, "aarch64", None),
])
def test_wanted_coretype(vendor: str, flags: str, machine: str, want: str | None) -> None:
    assert blas_env.wanted_coretype(cpuinfo(vendor, flags), machine) == want


def test_a_users_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert blas_env.choose_openblas_kernels() is None
    import os

    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
