"""Training-step benchmark: netdsl against PyTorch (when importable) on the same models and device.

    python bench/step.py                     # every model that netdsl can compile
    python bench/step.py --models lenet5 --steps 30 --json
    python bench/step.py --device cuda       # on a CUDA GPU: netdsl's numba.cuda kernels, PyTorch on cuda

Each measurement runs in its own process (netdsl and PyTorch alternating, twice), with threads equal to
cores. A step is forward + backward + an SGD-momentum update. Printed per model: median ms per step over
the timed steps after warm-up, GFLOP/s (6 × MACs × batch / step time), the process's peak resident memory,
and PyTorch's figures and the ratio netdsl / PyTorch when PyTorch is there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import MODELS


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_netdsl(name: str, steps: int, warmup: int, device: str = "cpu") -> dict:
    import netdsl

    m = MODELS[name]
    net = netdsl.loads(m["spec"], name=f"{name}.net")
    prog = netdsl.compile(net, batch=m["batch"], dtype="float32", device=device)
    rng = np.random.default_rng(0)
    feeds = m["feeds"](rng)
    from netdsl.runtime.optim import Optimizer  # the runtime's fused Numba update, as `netdsl train` runs it

    from netdsl.recipe import CallSpec

    opt = Optimizer(CallSpec("sgd", (), {"lr": 0.01, "momentum": 0.9}), prog.params, prog.trainable)

    def update() -> None:
        opt.step(prog.grads, 0.01)
        if device == "cuda":
            prog.synchronize()  # the update's kernels are queued: time them too

    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        prog.step_grads(feeds, seed=0, step=i)
        update()
        times.append(time.perf_counter() - t0)
    ms = float(np.median(times[warmup:]) * 1e3)
    macs = net.summary().totals["macs"]
    return {"ms": ms, "gflops": 6 * macs * m["batch"] / (ms * 1e-3) / 1e9, "peak_mb": _peak_mb(), "macs": macs,
            "blas": _blas_kernels()}


def run_torch(name: str, steps: int, warmup: int, device: str = "cpu") -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    m = MODELS[name]
    model, feeds, loss_fn = m["torch"](torch)
    if device == "cuda":
        model = model.to("cuda")
        feeds = tuple(f.to("cuda") for f in feeds)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, feeds)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ms = float(np.median(times[warmup:]) * 1e3)
    return {"ms": ms, "peak_mb": _peak_mb()}


def _blas_kernels() -> str:
    """The kernel set OpenBLAS chose in this process (Haswell = AVX2, SkylakeX = AVX-512), as threadpoolctl reads it."""
    try:
        import scipy.linalg  # noqa: F401 - loads SciPy's OpenBLAS, the one Numba's np.dot calls
        from threadpoolctl import threadpool_info
    except ImportError:
        return "?"
    return ",".join(sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"}))


def _child_env(native_blas: bool) -> dict[str, str]:
    env = dict(os.environ)
    if native_blas:
        # what netdsl.blas_env would choose with no OPENBLAS_CORETYPE set, given before anything loads (NumPy's
        # OpenBLAS included, for the SGEMM ceiling); OpenBLAS's own detection where it has no better idea
        import platform

        from netdsl.blas_env import wanted_coretype

        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)  # set beside a forced core type here; it sizes the forced kernels' blocks
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                core = wanted_coretype(f.read(1 << 16), platform.machine())
        except OSError:
            core = None
        if core:
            env["OPENBLAS_CORETYPE"] = core
    return env


def _worker(kind: str, name: str, steps: int, warmup: int, device: str = "cpu", native_blas: bool = False
            ) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", kind, "--models", name, "--steps", str(steps),
           "--warmup", str(warmup), "--device", device]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False, env=_child_env(native_blas))
    if r.returncode != 0:
        print(f"  {kind} {name} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def sgemm_gflops() -> float:
    """This machine's single-precision GEMM rate through numpy's BLAS on every core (the ceiling to compare with)."""
    n = 2048
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    np.dot(a, b)
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        np.dot(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--native-blas", action="store_true",
                    help="run the processes without OPENBLAS_CORETYPE, so OpenBLAS's kernels suit this CPU "
                         "(netdsl.blas_env picks AVX-512 on AMD processors OpenBLAS does not know)")
    ap.add_argument("--worker", choices=["netdsl", "torch", "sgemm"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    if args.worker == "sgemm":
        print(json.dumps({"gflops": sgemm_gflops(), "blas": _blas_kernels()}))
        return 0
    if args.worker:
        fn = run_netdsl if args.worker == "netdsl" else run_torch
        print(json.dumps(fn(names[0], args.steps, args.warmup, args.device)))
        return 0
    try:
        import importlib.util

        have_torch = importlib.util.find_spec("torch") is not None
    except Exception:  # noqa: BLE001 - a broken torch install counts as no torch
        have_torch = False
    sg = subprocess.run([sys.executable, __file__, "--worker", "sgemm"], capture_output=True, text=True, check=True,
                        env=_child_env(args.native_blas))
    sgemm = json.loads(sg.stdout.strip().splitlines()[-1])
    results = {"cores": os.cpu_count(), "device": args.device, "sgemm_gflops": round(sgemm["gflops"], 1),
               "openblas_kernels": sgemm["blas"], "models": {}}
    for name in names:
        best: dict[str, dict] = {}
        # one untimed netdsl process first: a kernel cache left cold by a code change would otherwise be filled
        # by the first measured process, whose peak memory would then be LLVM's, not the step's
        _worker("netdsl", name, 1, 1, args.device, args.native_blas)
        for _ in range(args.rounds):
            for kind in ("netdsl", "torch") if have_torch else ("netdsl",):
                r = _worker(kind, name, args.steps, args.warmup, args.device, args.native_blas)
                if r is not None and (kind not in best or r["ms"] < best[kind]["ms"]):
                    best[kind] = r
        row = {"batch": MODELS[name]["batch"]}
        if "netdsl" in best:
            row.update(ms=round(best["netdsl"]["ms"], 3), gflops=round(best["netdsl"]["gflops"], 2),
                       peak_mb=round(best["netdsl"]["peak_mb"], 1))
        if "torch" in best:
            row.update(torch_ms=round(best["torch"]["ms"], 3), torch_peak_mb=round(best["torch"]["peak_mb"], 1))
            if "ms" in row:
                row["ratio"] = round(row["ms"] / row["torch_ms"], 3)
        results["models"][name] = row
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"cores {results['cores']}, numpy SGEMM {results['sgemm_gflops']} GFLOP/s (2048³, OpenBLAS "
              f"{results['openblas_kernels']} kernels)")
        print(f"{'model':<12} {'batch':>5} {'ms/step':>9} {'GFLOP/s':>8} {'peak MB':>8} {'torch ms':>9} "
              f"{'torch MB':>9} {'ratio':>6}")
        for name, r in results["models"].items():
            print(f"{name:<12} {r['batch']:>5} {r.get('ms', float('nan')):>9.2f} {r.get('gflops', float('nan')):>8.2f} "
                  f"{r.get('peak_mb', float('nan')):>8.0f} {r.get('torch_ms', float('nan')):>9.2f} "
                  f"{r.get('torch_peak_mb', float('nan')):>9.0f} {r.get('ratio', float('nan')):>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
