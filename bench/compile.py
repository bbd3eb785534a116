"""Compile-time benchmark: `netdsl compile SPEC` as a fresh process, cold (empty kernel caches) then warm.

    python bench/compile.py                       # every spec in specs/
    python bench/compile.py specs/lenet5.net --batch 64 --json

Cold means new, empty NUMBA_CACHE_DIR and NETDSL_CACHE_DIR: every kernel is compiled by Numba. Warm runs the
same command again with those caches filled: the median of --warm runs (3), as single runs of about a second
swing by a few tenths on a busy machine. The processes may write Python bytecode (PYTHONDONTWRITEBYTECODE is
dropped from their environment), as they do on a user's installation: with it set, every warm run compiled
the project's ~50 modules from source again, 0.15 s of a GPT's 1.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, r.returncode, (r.stderr or r.stdout)[-600:]


def measure(spec: Path, batch: int, extra: list[str], warm_runs: int) -> dict:
    with tempfile.TemporaryDirectory() as numba_dir, tempfile.TemporaryDirectory() as step_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=numba_dir, NETDSL_CACHE_DIR=step_dir)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cmd = [sys.executable, "-m", "netdsl.cli", "compile", str(spec), "--batch", str(batch), *extra]
        cold, rc, err = timed(cmd, env)
        if rc != 0:
            return {"spec": spec.name, "error": err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"}
        warm = []
        for _ in range(warm_runs):
            t, rc, err = timed(cmd, env)
            if rc != 0:
                return {"spec": spec.name, "error": err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"}
            warm.append(t)
        return {"spec": spec.name, "cold_s": round(cold, 2), "warm_s": round(statistics.median(warm), 2),
                "warm_runs_s": [round(t, 2) for t in warm]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", help="spec files (default: every spec in specs/)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="network parameter overrides, as for netdsl")
    ap.add_argument("--warm", type=int, default=3, help="warm runs, the median printed (default 3)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    specs = [Path(s) for s in args.specs] or sorted((ROOT / "specs").glob("*.net"))
    extra = [a for s in args.set for a in ("--set", s)]
    rows = [measure(s, args.batch, extra, max(1, args.warm)) for s in specs]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'spec':<24} {'cold s':>8} {'warm s':>8}")
        for r in rows:
            if "error" in r:
                print(f"{r['spec']:<24} failed: {r['error']}")
            else:
                print(f"{r['spec']:<24} {r['cold_s']:>8.2f} {r['warm_s']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
