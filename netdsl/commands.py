"""CLI commands that need the compiler or the runtime (imported only when such a command runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the .net file")
    p.add_argument("--set", action="append", metavar="K=V", help="override a network parameter")
    p.add_argument("--network", help="the network to use when the file holds several")
    p.add_argument("--allow-path", action="append", metavar="DIR", help="allow imports from this directory")


def cmd_compile(args: argparse.Namespace) -> int:
    from .cli import UsageError, _load

    if args.batch < 1:
        raise UsageError(f"--batch must be at least 1, found {args.batch}")
    net = _load(args)
    t0 = time.perf_counter()
    import netdsl

    prog = netdsl.compile(net, batch=args.batch, device=args.device, dtype=args.dtype)
    train = net.ir.loss is not None
    code = prog.code(train=train)
    plan = prog.plan_text(train=train)
    if train:
        prog.code(train=False)  # warm the eval schedule's kernels too
    _warm(prog, net, args.batch)
    elapsed = time.perf_counter() - t0
    if args.o:
        out = Path(args.o)
        out.mkdir(parents=True, exist_ok=True)
        (out / "step.py").write_text(code, encoding="utf-8")
        (out / "plan.txt").write_text(plan + "\n", encoding="utf-8")
        (out / "ir.txt").write_text(net.ir.pretty() + "\n", encoding="utf-8")
    if args.emit == "code":
        print(code, end="")
    elif args.emit == "plan":
        print(plan)
    elif args.emit == "ir":
        print(net.ir.pretty())
    if args.profile:
        print_profile(prog, net, args.batch)
    peak = prog.peak_bytes(train=train)
    print(f"{args.spec}: compiled {net.name} for batch ≤ {args.batch} ({args.dtype}, {args.device}) in "
          f"{elapsed:.2f} s; planned peak {peak / 2**20:.1f} MiB per {'training' if train else 'forward'} step")
    return 0


def print_profile(prog: Any, net: Any, batch: int, steps: int | None = None) -> None:
    """Per-kernel time, share and GFLOP/s next to the spec line (like `caffe time`)."""
    import numpy as np

    from .summary import node_flops

    rng = np.random.default_rng(0)
    feeds = {}
    for name, nid in net.ir.inputs.items():
        t = net.ir.node(nid).outputs[0]
        if t.is_int:
            hi = _label_range(net, nid)
            feeds[name] = rng.integers(0, hi, size=(batch,) + t.shape)
        else:
            feeds[name] = rng.standard_normal((batch,) + t.shape).astype(np.float32)
    rows = prog.profile(feeds, steps=steps)
    total = sum(r["seconds"] for r in rows)
    flops = {n.name: node_flops(net.ir, n) for n in net.ir}
    print(f"profile of one {'training' if net.ir.loss is not None else 'forward'} step at batch {batch}: "
          f"{total * 1e3:.3f} ms (medians over {rows[-1]['steps']} steps; overhead: the step's time outside the "
          "kernels)")
    print(f"{'ms':>10} {'share':>6} {'GFLOP/s':>8}  {'kernel':<34} {'layer':<20} spec")
    for r in rows:
        fwd = r["kernel"].endswith("_forward") and r["note"] == ""
        gf = f"{flops.get(r['node'], 0) * batch / r['seconds'] / 1e9:8.2f}" if fwd and r["seconds"] > 0 else " " * 8
        print(f"{r['seconds'] * 1e3:10.4f} {r['seconds'] / total:6.1%} {gf}  {r['kernel']:<34} {r['node'][:20]:<20} "
              f"{r['where']} {r['source']}")


def _label_range(net: Any, nid: int) -> int:
    for n in net.ir:
        if n.op == "cross_entropy" and n.inputs[1].node == nid:
            return net.ir.type_of(n.inputs[0]).shape[-1]
        if n.op == "embedding" and n.inputs[0].node == nid:
            return n.attrs["vocab"]
    return 2


def _warm(prog: Any, net: Any, batch: int) -> None:
    """Run one step on zeros so every kernel is compiled (or loaded from Numba's cache) now."""
    import numpy as np

    feeds = {}
    for name, nid in net.ir.inputs.items():
        t = net.ir.node(nid).outputs[0]
        feeds[name] = np.zeros((1,) + t.shape, dtype=np.int64 if t.is_int else np.float32)
    if hasattr(prog, "precompile"):  # the CPU program: a cold cache is filled on every core first
        prog.precompile(feeds)
    if net.ir.loss is not None:
        prog.step_grads(feeds, update_stats=False)
    prog.forward(feeds)


# Modules that add commands of their own: each has `register(sub)` (imported only to build the parser).
REGISTRARS = ("netdsl.runtime.cli", "netdsl.inspect_cli", "netdsl.decode_cli")


def register_all(sub: Any) -> None:
    import importlib

    for name in REGISTRARS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(sub)
    p = sub.add_parser("compile", help="compile a spec and warm the kernel cache")
    _common(p)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--emit", choices=["code", "plan", "ir"], help="print the generated step code, plan or IR")
    p.add_argument("-o", metavar="DIR", help="write step.py, plan.txt and ir.txt to DIR")
    p.add_argument("--profile", action="store_true", help="time each kernel of a step and print the table")
    p.set_defaults(func=cmd_compile)
