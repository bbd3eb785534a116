"""Long front-end fuzzing runs: grammar derivations and zoo mutations, as tests/reliability/test_fuzz.py runs in CI.

    python bench/fuzz.py --cases 100000              # half grammar cases, half zoo mutations, one process
    python bench/fuzz.py --cases 20000 --jobs 2 --kind zoo
    python bench/fuzz.py --show 1234                 # print case 1234 (same --seed) and its outcome

Case i is a pure function of (--seed, i): its tape of choices comes from `random.Random(f"{seed}:{i}")`, so any
case can be replayed alone with --show. Every outcome must be a checked network or a positioned `SpecError` in
under 2 s of CPU time (tests/reliability/fuzzlib.py's `check_outcome`); anything else is a failure, written to
--failures DIR (the spec text and the error) and counted. Prints the count, the rate and the result; exits 1 when
any case failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from reliability import fuzzlib

TAPE = 200  # choices per case (the generators take the cheapest option once a tape runs out)


def make_case(seed: int, i: int, kind: str) -> tuple[str, str, str, dict[str, Any] | None, bool]:
    """(kind, label, text, network parameters, plan memory?) of case i."""
    rng = random.Random(f"{seed}:{i}")
    tape = [rng.randrange(1 << 16) for _ in range(rng.randrange(TAPE + 1))]
    k = kind if kind != "both" else ("grammar" if i % 2 == 0 else "zoo")
    if k == "grammar":
        return k, "grammar", fuzzlib.grammar_case(tape), None, True
    stem, text = fuzzlib.zoo_case(tape)
    return k, stem, text, fuzzlib.ZOO_PARAMS.get(stem), False


def run_range(args: tuple[int, int, int, str, str]) -> dict[str, Any]:
    seed, start, stop, kind, failures = args
    fuzzlib.warm()
    counts: dict[str, int] = {"ok": 0, "error": 0, "fail": 0, "grammar": 0, "zoo": 0}
    slowest = (0.0, -1)
    fails: list[str] = []
    for i in range(start, stop):
        k, label, text, params, memory = make_case(seed, i, kind)
        counts[k] += 1
        t0 = time.process_time()
        try:
            counts[fuzzlib.check_outcome(text, params=params, memory=memory)] += 1
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            counts["fail"] += 1
            where = Path(failures)
            where.mkdir(parents=True, exist_ok=True)
            (where / f"case-{seed}-{i}.net").write_text(text, encoding="utf-8")
            (where / f"case-{seed}-{i}.txt").write_text(
                f"case {i} (seed {seed}, {label}): {type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
                encoding="utf-8")
            fails.append(f"case {i} ({label}): {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        dt = time.process_time() - t0
        if dt > slowest[0]:
            slowest = (dt, i)
    return {"counts": counts, "slowest": slowest, "fails": fails}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", choices=["both", "grammar", "zoo"], default="both")
    ap.add_argument("--jobs", type=int, default=1, help="processes (each takes a contiguous range of cases)")
    ap.add_argument("--chunk", type=int, default=2000, help="cases per work unit (progress is printed per unit)")
    ap.add_argument("--failures", default="fuzz-failures", help="directory for the failing cases")
    ap.add_argument("--show", type=int, metavar="I", help="print case I and its outcome, run nothing else")
    args = ap.parse_args(argv)

    if args.show is not None:
        fuzzlib.warm()
        _, label, text, params, memory = make_case(args.seed, args.show, args.kind)
        print(f"# case {args.show} (seed {args.seed}, {label})\n{text}")
        try:
            print("outcome:", fuzzlib.check_outcome(text, params=params, memory=memory))
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            return 1
        import netdsl

        try:
            netdsl.loads(text, fuzzlib.NAME, **(params or {}))
        except netdsl.SpecError as err:
            print(err)
        return 0

    units = [(args.seed, a, min(a + args.chunk, args.cases), args.kind, args.failures)
             for a in range(0, args.cases, args.chunk)]
    total: dict[str, int] = {"ok": 0, "error": 0, "fail": 0, "grammar": 0, "zoo": 0}
    slowest = (0.0, -1)
    fails: list[str] = []
    t0 = time.perf_counter()
    print(f"fuzz: {args.cases:,} cases ({args.kind}), seed {args.seed}, {args.jobs} process(es)", flush=True)

    def take(r: dict[str, Any]) -> None:
        nonlocal slowest
        for k, v in r["counts"].items():
            total[k] += v
        slowest = max(slowest, tuple(r["slowest"]))
        fails.extend(r["fails"])
        done = total["ok"] + total["error"] + total["fail"]
        el = time.perf_counter() - t0
        print(f"  {done:,} cases, {el:.0f} s, {done / el:,.0f} cases/s: {total['ok']:,} ok, {total['error']:,} "
              f"errors, {total['fail']} failures", flush=True)

    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            for r in pool.imap(run_range, units):
                take(r)
    else:
        for u in units:
            take(run_range(u))
    el = time.perf_counter() - t0
    done = total["ok"] + total["error"] + total["fail"]
    for f in fails[:20]:
        print("  FAIL", f)
    result = "PASS" if not total["fail"] else f"FAIL ({total['fail']} failing cases in {args.failures}/)"
    print(f"fuzz: {done:,} cases (grammar {total['grammar']:,}, zoo {total['zoo']:,}) in {el:.1f} s, "
          f"{done / el:,.0f} cases/s: {total['ok']:,} loaded, {total['error']:,} positioned errors, "
          f"{total['fail']} failures; slowest case {slowest[0]:.2f} s CPU (#{slowest[1]}); {result}", flush=True)
    return 1 if total["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
