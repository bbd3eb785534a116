"""`netdsl train`, `netdsl eval` and `netdsl sample` (registered by netdsl/commands.py's `register_all`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the .net file")
    p.add_argument("--set", action="append", metavar="K=V", help="override a network parameter")
    p.add_argument("--network", help="the network to use when the file holds several")
    p.add_argument("--allow-path", action="append", metavar="DIR", help="allow imports from this directory")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    from netdsl.cli import parse_set

    return parse_set(args.set)


def _default_out(spec: str, resume: bool = False) -> str:
    """runs/SPEC-NAME; a new run next to an earlier one's checkpoints gets the next free runs/SPEC-NAME-N
    (so running the same command twice starts a second run instead of failing), while --resume continues the
    latest of them."""
    from .checkpoint import checkpoints

    base = Path("runs") / Path(spec).stem
    taken = [base] + sorted((p for p in base.parent.glob(base.name + "-*") if p.name[len(base.name) + 1:].isdigit()),
                            key=lambda p: int(p.name[len(base.name) + 1:]))
    used = [d for d in taken if d.is_dir() and checkpoints(d)]
    if resume:
        return str(used[-1] if used else base)
    if not used:
        return str(base)
    n = 2
    while (base.parent / f"{base.name}-{n}").exists() and checkpoints(base.parent / f"{base.name}-{n}"):
        n += 1
    return str(base.parent / f"{base.name}-{n}")


def cmd_train(args: argparse.Namespace) -> int:
    from netdsl.cli import UsageError

    from .train import train

    for flag in ("epochs", "steps", "batch", "every"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise UsageError(f"--{flag} must be at least 1, found {v}")
    out = args.out or _default_out(args.spec, args.resume)
    try:
        train(args.spec, data=args.data, epochs=args.epochs, steps=args.steps, batch=args.batch,
              optimizer=args.optimizer, schedule=args.schedule, lr=args.lr, val=args.val, seed=args.seed, out=out,
              every=args.every, resume=args.resume, init_from=args.init_from, device=args.device,
              progress=not args.quiet, network=args.network, clip=args.clip, detect_anomaly=args.detect_anomaly,
              allow_paths=args.allow_path, sampling=args.sampling, **_params(args))
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    return 0


def _fmt(result: dict[str, Any]) -> str:
    parts = [f"loss {result['loss']:.4f}"]
    if result.get("accuracy") is not None and not math.isnan(result["accuracy"]):
        parts.append(f"accuracy {100 * result['accuracy']:.2f}%")
    if result.get("perplexity") is not None:
        parts.append(f"perplexity {result['perplexity']:.3f}")
    return ", ".join(parts)


def cmd_eval(args: argparse.Namespace) -> int:
    from .infer import evaluate_checkpoint

    r = evaluate_checkpoint(args.spec, args.checkpoint, data=args.data, network=args.network, batch=args.batch,
                            device=args.device, allow_paths=args.allow_path, **_params(args))
    if args.json:
        keys = ("loss", "accuracy", "perplexity", "examples")
        print(json.dumps({k: r[k] for k in keys if k in r}))
    else:
        print(f"{r['dataset']} ({r['split']}, {r['examples']:,} examples), checkpoint {r['checkpoint']} "
              f"at step {r['step']}: {_fmt(r)}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from netdsl.cli import UsageError

    from .infer import sample

    if args.length < 0:
        raise UsageError(f"--length must be at least 0, found {args.length}")
    if not args.temperature > 0:
        raise UsageError(f"--temperature must be positive, found {args.temperature}")
    text = sample(args.spec, args.checkpoint, prompt=args.prompt, length=args.length,
                  temperature=args.temperature, seed=args.seed, network=args.network, device=args.device,
                  allow_paths=args.allow_path, **_params(args))
    print(text)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a network with its recipe (flags override the recipe's lines)")
    _common(p)
    p.add_argument("--data", help="dataset expression, e.g. 'digits(size=32)', or a path (format recognised)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="number of epochs")
    length.add_argument("--steps", type=int, help="number of steps (instead of epochs)")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("--optimizer", help="e.g. 'adamw(lr=1e-3, weight_decay=0.1)'")
    p.add_argument("--schedule", help="e.g. 'cosine(warmup=100)'")
    p.add_argument("--lr", type=float, help="learning rate (overrides the optimizer's)")
    p.add_argument("--val", help="validation: a fraction (0.1), 0, or a file")
    p.add_argument("--seed", type=int, help="random seed (initialisation, shuffling, dropout)")
    p.add_argument("--clip", type=float, help="clip gradients to this global norm")
    p.add_argument("--sampling", choices=["shuffle", "random"],
                   help="shuffle: shuffled epochs; random: every batch drawn independently (text: random offsets)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/SPEC-NAME)")
    p.add_argument("--every", type=int, metavar="N", help="evaluate and checkpoint every N steps (default: each epoch)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--init-from", metavar="CKPT", help="start from a checkpoint's matching parameters")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--detect-anomaly", action="store_true",
                   help="check every op's output for NaN/inf on every step and name the first op that produced one "
                   "(slow: a checked replay of each step). Without it, a non-finite loss or gradient still stops "
                   "the run and names the op")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: loss, accuracy, perplexity")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory (its latest)")
    p.add_argument("--data", help="evaluate on this dataset (all of it) instead of the run's validation split")
    p.add_argument("--batch", type=int, help="batch size (default: the run's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="generate text from a character-level model")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory (its latest)")
    p.add_argument("--prompt", default="", help="text to start from")
    p.add_argument("--length", type=int, default=200, help="characters to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=cmd_sample)
