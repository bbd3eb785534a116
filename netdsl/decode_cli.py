"""`netdsl decode SPEC --checkpoint C [--data D] [--json]`: greedy decoding of a seq2seq model's checkpoint.

Registered through `REGISTRARS` in netdsl/commands.py; the runtime (and Numba) load only when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def _show(ids: list[int], tokens: list[str] | None) -> str:
    if tokens and all(0 <= i < len(tokens) for i in ids):
        return " ".join(tokens[i] for i in ids)
    return " ".join(map(str, ids))


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.2f}%"


def cmd_decode(args: argparse.Namespace) -> int:
    from netdsl.cli import UsageError, parse_set
    from netdsl.runtime.decode import decode_checkpoint

    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be at least 1, found {args.batch}")
    if args.show < 0:
        raise UsageError(f"--show must be at least 0, found {args.show}")
    r = decode_checkpoint(args.spec, args.checkpoint, data=args.data, network=args.network, batch=args.batch,
                          device=args.device, show=0 if args.json else args.show, allow_paths=args.allow_path,
                          **parse_set(args.set))
    if args.json:
        print(json.dumps({k: r[k] for k in ("token_accuracy", "sequence_accuracy", "examples")}))
        return 0
    print(f"{r['dataset']} ({r['split']}, {r['examples']:,} examples), checkpoint {r['checkpoint']} at step "
          f"{r['step']}: greedy decoding: token accuracy {_pct(r['token_accuracy'])}, sequence accuracy "
          f"{_pct(r['sequence_accuracy'])}")
    for s in r["samples"]:
        mark = "ok" if s["prediction"] == s["target"] else "  "
        print(f"  {mark} {_show(s['source'], r['tokens'])}  ->  {_show(s['prediction'], r['tokens'])}"
              + ("" if mark == "ok" else f"   (target {_show(s['target'], r['tokens'])})"))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("decode", help="greedy decoding of a sequence-to-sequence model: token and sequence accuracy")
    p.add_argument("spec", help="the .net file")
    p.add_argument("--set", action="append", metavar="K=V", help="override a network parameter")
    p.add_argument("--network", help="the network to use when the file holds several")
    p.add_argument("--allow-path", action="append", metavar="DIR", help="allow imports from this directory")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory (its latest)")
    p.add_argument("--data", help="decode this dataset (all of it) instead of the run's validation split")
    p.add_argument("--batch", type=int, help="batch size (default: the run's)")
    p.add_argument("--show", type=int, default=5, metavar="N", help="print N decoded examples (default 5)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"token_accuracy", "sequence_accuracy", "examples"}')
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=cmd_decode)
