"""Inspection commands: `netdsl graph` and `netdsl diff` (`netdsl check --gradcheck` dispatches to gradcheck.py).

Imported for every `netdsl` command (to build the parser), so it imports nothing heavy at module level: the
graph, diff and compiler modules are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

GRAPH_FORMATS = (".dot", ".gv", ".svg", ".png", ".html", ".htm")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="K=V", help="override a network parameter")
    p.add_argument("--network", help="the network to use when the file holds several")
    p.add_argument("--allow-path", action="append", metavar="DIR", help="allow imports from this directory")


def cmd_graph(args: argparse.Namespace) -> int:
    from .cli import UsageError, _load

    if args.unroll < 0:
        raise UsageError(f"--unroll must be at least 0, found {args.unroll}")
    out = Path(args.o) if args.o else None
    suffix = out.suffix.lower() if out is not None else ".dot"
    if suffix not in GRAPH_FORMATS:
        raise UsageError(f"-o {args.o}: unknown format '{suffix or '(none)'}'; write .dot, .svg, .png or .html")
    net = _load(args)
    from . import graph

    view = graph.build(net, expand=args.expand, unroll=args.unroll, grad=args.grad, fused=args.fused)
    if suffix in (".html", ".htm"):
        data = graph.to_html(view).encode("utf-8")
    elif suffix in (".svg", ".png"):
        try:
            data = graph.graphviz(graph.to_dot(view), suffix[1:])
        except FileNotFoundError:
            raise UsageError(f"writing {suffix} needs Graphviz's `dot` program, which is not installed: install the "
                             "package graphviz (apt-get install graphviz), or write .dot or .html instead") from None
        except (RuntimeError, OSError) as exc:
            raise UsageError(f"Graphviz's dot failed: {exc}") from None
    else:
        data = graph.to_dot(view).encode("utf-8")
    if out is None:
        sys.stdout.write(data.decode("utf-8"))
        return 0
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc}") from None
    vis = graph.visible(view)
    print(f"{args.spec}: wrote {out} ({len(vis.nodes)} nodes, {len(vis.edges)} edges, "
          f"{sum(1 for c in view.clusters.values() if c.folded)} of {len(view.clusters)} clusters folded; "
          f"{len(data):,} bytes)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .cli import parse_set
    from .diff import checkpoint_shapes, diff, format_diff, loadable
    from .net import load

    both = parse_set(args.set)
    a = load(args.a, network=args.network, allow_paths=args.allow_path, **{**both, **parse_set(args.set_a)})
    b = load(args.b, network=args.network, allow_paths=args.allow_path, **{**both, **parse_set(args.set_b)})
    d = diff(a, b)
    print(format_diff(d, a, b))
    if args.checkpoint:
        shapes, where = checkpoint_shapes(args.checkpoint)
        head = f"checkpoint {where} ({a.name})"
    else:
        shapes, where = {k: p.shape for k, p in a.ir.params.items()}, ""
        head = f"parameters of {a.name}"
    loaded, skipped = loadable(shapes, b)
    print()
    print(f"{head} that load into {b.name} (same name and shape): {len(loaded)} of {len(b.ir.params)} tensors, "
          f"{sum(b.ir.params[k].size for k in loaded):,} values")
    _print_skipped(skipped, [g.name for g in d.added] + [g.name for g in d.removed])
    return 0


def _print_skipped(skipped: dict[str, str], groups: list[str]) -> None:
    """Shape mismatches one by one; parameters only one side has, grouped by the block they belong to."""
    bunches: dict[tuple[str, str], list[str]] = {}
    for name, why in skipped.items():
        if why.startswith("shape"):
            print(f"  skipped {name}: {why}")
            continue
        owner = max((g for g in groups if name.startswith(g + ".")), key=len, default=name)
        bunches.setdefault((why, owner), []).append(name)
    for (why, owner), names in bunches.items():
        if len(names) == 1 and names[0] == owner:
            print(f"  skipped {owner}: {why}")
        else:
            print(f"  skipped {owner}.* ({len(names)} tensors): {why}")


def register(sub: Any) -> None:
    p = sub.add_parser("graph", help="render the graph: DOT, SVG, PNG or a self-contained HTML page")
    p.add_argument("spec", help="the .net file")
    _common(p)
    p.add_argument("-o", metavar="FILE", help="FILE.dot, .svg, .png (through Graphviz) or .html; DOT on stdout "
                   "without it")
    p.add_argument("--expand", action="store_true", help="open every block (they are folded otherwise)")
    p.add_argument("--unroll", type=int, default=0, metavar="N", help="draw recurrences unrolled N steps")
    p.add_argument("--grad", action="store_true", help="add the backward graph")
    p.add_argument("--fused", action="store_true", help="show the kernels each node lowers to")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("diff", help="compare two specs: layers, shapes, parameters; what loads from A into B")
    p.add_argument("a", metavar="A.net")
    p.add_argument("b", metavar="B.net")
    _common(p)
    p.add_argument("--set-a", action="append", metavar="K=V", help="override a parameter of A only")
    p.add_argument("--set-b", action="append", metavar="K=V", help="override a parameter of B only")
    p.add_argument("--checkpoint", metavar="CKPT", help="a checkpoint of A (file or run directory): which of its "
                   "parameters load into B")
    p.set_defaults(func=cmd_diff)
