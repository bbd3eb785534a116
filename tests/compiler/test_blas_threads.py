"""Compiling a CPU program leaves every OpenBLAS in the process on one thread, SciPy's (Numba's np.dot) above all:
the kernels' lanes call BLAS concurrently, and BLAS threads of its own on top of them oversubscribe the cores."""

from __future__ import annotations

import json
import subprocess
import sys

SNIPPET = """
import json
import netdsl
from threadpoolctl import threadpool_info
net = netdsl.loads('network N { input x: [4]\\n y = x -> dense(3)\\n output y }', name="n.net")
netdsl.compile(net, batch=2)
print(json.dumps([(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]))
"""


def test_compile_limits_numbas_blas_to_one_thread() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "NETDSL_BLAS_THREADS"}
    r = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=300, env=env,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    libs = json.loads(r.stdout.strip().splitlines()[-1])
    # SciPy's copy (the one Numba calls; NumPy bundles another, whose file name also says scipy_openblas)
    assert any("scipy.libs" in path or "/scipy/" in path for path, _ in libs), libs
    assert all(n == 1 for _, n in libs), libs
