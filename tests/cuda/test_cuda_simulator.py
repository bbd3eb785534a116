"""Runs the CUDA backend's tests in numba's simulator (and, on a machine with a GPU, on the GPU).

The simulator must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba is imported, so the tests in
`tests/cuda/sim/` run in pytest processes of their own, side by side: LeNet-5's training step in one, the
float32 kernel comparisons in a second, the float64 ones and the network tests in a third. From a cold cache
their time is mostly the CPU kernels' compiles (the reference side); two processes left one core idle for
half the run, three keep both busy. Each process records its kernel launches (kernel and argument types);
afterwards every recorded signature is compiled to PTX by numba's real CUDA compiler (needs the CUDA toolkit's
libNVVM, not a GPU), since the simulator itself checks no types.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_KERNELS, _NETWORKS = "tests/cuda/sim/test_cuda_kernels.py", "tests/cuda/sim/test_cuda_networks.py"
GROUPS = [["tests/cuda/sim/test_cuda_lenet.py"],
          [_KERNELS, "-k", "not f64"],
          [_KERNELS, _NETWORKS, "-k", "f64 or networks"]]


def _numba_cuda_importable() -> bool:
    r = subprocess.run([sys.executable, "-c", "from numba import cuda"], capture_output=True, text=True,
                       env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), timeout=300, check=False)
    return r.returncode == 0


def _run_groups(extra_env: dict[str, str], records: Path | None) -> list[tuple[list[str], int, str]]:
    procs = []
    for i, group in enumerate(GROUPS):
        env = dict(os.environ, **extra_env)
        if records is not None:
            env["NETDSL_CUDA_RECORD"] = str(records / f"launches-{i}.jsonl")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *group]
        procs.append((group, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)))
    out = []
    for group, p in procs:
        text, _ = p.communicate(timeout=1500)
        out.append((group, p.returncode, text))
    return out


def _report(results) -> str:
    return "\n\n".join(f"$ pytest {' '.join(g)}  (exit {rc})\n{text[-6000:]}" for g, rc, text in results)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    if not _numba_cuda_importable():
        pytest.skip("numba.cuda cannot be imported (install numba-cuda: pip install 'netdsl[cuda]')")
    records = tmp_path_factory.mktemp("cuda-launches")
    return _run_groups({"NUMBA_ENABLE_CUDASIM": "1"}, records), records


def test_cuda_kernels_and_programs_match_the_cpu_in_the_simulator(simulated):
    results, _ = simulated
    assert all(rc == 0 for _, rc, _ in results), _report(results)
    for _, _, text in results:
        assert " passed" in text.strip().splitlines()[-1], text[-2000:]


def test_every_simulated_launch_compiles_to_ptx(simulated):
    results, records = simulated
    if any(rc != 0 for _, rc, _ in results):
        pytest.skip("the simulator tests failed (reported by the test above)")
    files = sorted(str(p) for p in records.glob("launches-*.jsonl"))
    assert files, "the simulator run recorded no launches"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, str(HERE / "ptxcheck.py"), *files], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=1500, check=False)
    if r.returncode == 77:
        pytest.skip("no libNVVM (CUDA toolkit) here to compile PTX with")
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]
    assert "compiled" in r.stdout


@pytest.mark.cuda
def test_the_same_tests_on_a_real_gpu():
    results = _run_groups({"NETDSL_CUDA_GPU": "1", "NUMBA_ENABLE_CUDASIM": "0"}, None)
    assert all(rc == 0 for _, rc, _ in results), _report(results)
