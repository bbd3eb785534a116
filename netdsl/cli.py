"""The `netdsl` command line. Every failure exits 1 with diagnostics, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from .diagnostics import InternalError, SpecError


class UsageError(Exception):
    """A bad flag value: reported like a spec error, exit 1."""


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`--set k=v`: int, float, bool or string."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set expects name=value, found '{item}'")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise UsageError(f"--set: '{k}' is not a parameter name")
        out[k] = _value(v.strip())
    return out


def _value(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    if v.isidentifier():
        from .ops import Ident

        return Ident(v)
    return v


def _load(args: argparse.Namespace) -> Any:
    from .net import load

    return load(args.spec, network=args.network, allow_paths=getattr(args, "allow_path", None), **parse_set(args.set))


def cmd_check(args: argparse.Namespace) -> int:
    net = _load(args)
    if getattr(args, "gradcheck", False):  # imports the compiler (Numba) only then
        from .gradcheck import cmd_gradcheck

        return cmd_gradcheck(args, net)
    s = net.summary(memory=False)
    print(f"{args.spec}: ok — {len(s.rows) + len(s.loss_rows)} layers, {s.totals['params']:,} params, {s.totals['macs']:,} MACs")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    net = _load(args)
    if args.batch < 1:
        raise UsageError(f"--batch must be at least 1, found {args.batch}")
    s = net.summary(batch=args.batch, depth=args.depth)
    print(s.to_json() if args.json else s)
    return 0


def cmd_ir(args: argparse.Namespace) -> int:
    net = _load(args)
    print(net.ir.pretty())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the .net file")
    p.add_argument("--set", action="append", metavar="K=V", help="override a network parameter")
    p.add_argument("--network", help="the network to use when the file holds several")
    p.add_argument("--allow-path", action="append", metavar="DIR", help="allow imports from this directory")


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "check": ("parse, elaborate and shape-check a spec", cmd_check),
    "summary": ("per-layer table of shapes, parameters and MACs", cmd_summary),
    "ir": ("print the IR, one line per node", cmd_ir),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description="netdsl: neural network specs, checked and compiled")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        _common(p)
        if name == "check":
            p.add_argument("--gradcheck", action="store_true",
                           help="finite-difference check of every node's generated backward (float64)")
            p.add_argument("--batch", type=int, default=2, help="batch size of the gradient check")
            p.add_argument("--directions", type=int, default=1,
                           help="random directions checked per node (gradient check)")
            p.add_argument("--entries", type=int, default=3,
                           help="entries checked one by one in a tensor whose own directional check fails")
        if name == "summary":
            p.add_argument("--json", action="store_true", help="print the summary as JSON")
            p.add_argument("--batch", type=int, default=1, help="batch size for memory figures")
            p.add_argument("--depth", type=int, default=None, help="fold block internals below this depth")
    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Commands that live with the compiler and runtime register themselves here (imported lazily)."""
    out = []
    try:
        from .commands import register_all
    except ImportError:
        return out
    out.append(register_all)
    return out


class _Parser(argparse.ArgumentParser):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse prints its own usage message
        return 0 if exc.code == 0 else 1
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    func = getattr(args, "func", None) or COMMANDS[args.command][1]
    try:
        return func(args)
    except SpecError as err:
        print(err, file=sys.stderr)
        return 1
    except UsageError as err:
        print(f"netdsl {args.command}: error: {err}", file=sys.stderr)
        return 1
    except InternalError as err:
        print(err, file=sys.stderr)
        if os.environ.get("NETDSL_DEBUG"):
            traceback.print_exc()
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - never a bare traceback: a bug report
        print(f"internal error: {type(exc).__name__}: {exc} (this is a bug in netdsl; please report it; "
              "set NETDSL_DEBUG=1 for the traceback)", file=sys.stderr)
        if os.environ.get("NETDSL_DEBUG"):
            traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
