"""Graph views of a network: DOT (always), SVG/PNG through Graphviz, and a self-contained HTML page.

`build(net, …)` makes a `View`: nodes (one per IR node, with its spec line, parameters and MACs), edges (with
the shape of the value they carry) and clusters (one per block use, nested as the uses are; an unrolled
recurrence is a cluster of steps). Options add the backward graph (`grad`), the kernels each node lowers to
(`kernels`, from `netdsl.compiler`, imported only then) and unroll recurrences `unroll` steps deep.

Renderings fold clusters: `to_dot(view)` writes Graphviz DOT (stable node names and order: golden-tested);
`to_svg(view)` draws the graph itself (a layered layout computed here, no Graphviz needed) and `to_html(view)`
wraps that SVG in a page whose inline script redraws it when a cluster is opened or folded. The page needs no
network access. The layout is computed per cluster (a compound layout): each cluster's items are layered and
ordered once, in Python, and only coordinates depend on which clusters are open, so the script (a port of
`_Placer` below) recomputes just those. A link may choose the folding: `page.html#open=all`,
`#open=layer2.0,layer4.2`, `#fold=all`, or `#click=layer3.1` (clicks the block once drawn).

This module imports neither Numba nor the compiler at import time, so `netdsl graph` starts fast.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .ir import IR, Node, TensorType, Value
from .summary import node_macs

# ====================================================================== the view


@dataclass
class VNode:
    id: str
    title: str
    lines: list[str]
    kind: str  # input | output | op | const | unroll | stack | step_input | more | grad
    op: str
    path: tuple[str, ...]  # enclosing clusters, outermost first
    tip: str
    params: list[str] = field(default_factory=list)
    macs: int = 0
    order: int = 0
    is_int: bool = False
    bad: bool = False  # a gradient node whose op has no gradient rule
    ir: Node | None = None


@dataclass
class VEdge:
    src: str
    dst: str
    label: str
    kind: str = "data"  # data | state | grad | seed
    value: str = ""  # the source value (one shape label per value)


@dataclass
class VCluster:
    id: str
    title: str
    parent: str | None
    tip: str
    kind: str = "block"  # block | unroll | step
    folded: bool = True
    order: int = 0
    grad: bool = False  # the backward mirror of a forward cluster


class View:
    """What a graph rendering shows: nodes, edges and nested clusters (all of them; renderings fold)."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.title = f"{net.name} ({net.source})"
        self.nodes: dict[str, VNode] = {}
        self.edges: list[VEdge] = []
        self.clusters: dict[str, VCluster] = {}
        self.kernels: dict[str, list[str]] = {}

    def folded(self) -> set[str]:
        return {c.id for c in self.clusters.values() if c.folded}

    def members(self, cid: str) -> list[VNode]:
        return [n for n in self.nodes.values() if cid in n.path]

    def depth(self, cid: str) -> int:
        d, c = 0, self.clusters[cid]
        while c.parent is not None:
            d, c = d + 1, self.clusters[c.parent]
        return d


# ---------------------------------------------------------------------- formatting


def shape_text(t: TensorType) -> str:
    return t.spec()


def human(n: float) -> str:
    """1234 -> 1.2K, 128049152 -> 128.0M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        if len(v) > 4:
            return "[…]"
        if len(v) == 2 and v[0] == v[1] and not isinstance(v[0], (tuple, list)):
            return _val(v[0])
        return "×".join(_val(x) for x in v) if all(isinstance(x, int) for x in v) else "[" + ",".join(
            _val(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def attr_text(n: Node) -> str:
    """The settings that differ from the op's defaults: `out=6 kernel=5`."""
    from . import ops

    opdef = ops.get(n.op)
    items = []
    for k, v in n.attrs.items():
        if k.startswith("_") or v is None or isinstance(v, IR):
            continue
        if opdef is not None:
            a = opdef.attr(k)
            if a is None:
                continue
            d = a.default
            if d is not ops.REQUIRED:
                if isinstance(d, str) and d.startswith("="):
                    if v == n.attrs.get(d[1:]):
                        continue
                else:
                    with contextlib.suppress(Exception):  # a default that does not normalise: show the value
                        d = ops.check_attr(n.op, a, d) if d is not None else None
                    if d == v:
                        continue
        elif n.op == "input":
            continue
        items.append(f"{k}={_val(v)}")
    text = " ".join(items)
    return text if len(text) <= 48 else text[:45] + "…"


def spec_text(n: Node) -> str:
    """`name (op)`, `file:line  text of the line`, then the chain of block uses that led there."""
    if n.span is None:
        return f"{n.name} ({n.op})"
    line = n.span.source.line(n.span.line).strip()
    out = f"{n.name} ({n.op})\n{n.span.file}:{n.span.line}  {line}"
    for u in reversed(n.uses):
        out += f"\nin block {u.block}, used at {u.span} as {u.label}"
    return out


def _use_text(u: Any) -> str:
    line = u.span.source.line(u.span.line).strip()
    return f"{u.span.file}:{u.span.line}  {line}\n(block {u.block}, used as {u.label})"


def _params_line(net: Any, names: list[str], macs: int) -> str:
    specs = net.ir.params
    count = sum(specs[p].size for p in dict.fromkeys(names) if p in specs and not specs[p].state)
    parts = []
    if count:
        parts.append(f"{count:,} params")
    if macs:
        parts.append(f"{human(macs)} MACs")
    return " · ".join(parts)


# ---------------------------------------------------------------------- building


class _Builder:
    def __init__(self, net: Any, unroll: int) -> None:
        self.net = net
        self.unroll = unroll
        self.view = View(net)
        self.order = 0

    def _id(self, want: str) -> str:
        if want not in self.view.nodes:
            return want
        k = 2
        while f"{want}#{k}" in self.view.nodes:
            k += 1
        return f"{want}#{k}"

    def node(self, want: str, **kw: Any) -> VNode:
        nid = self._id(want)
        kw.setdefault("path", ())
        v = VNode(nid, order=self.order, **kw)
        self.order += 1
        self.view.nodes[nid] = v
        return v

    def cluster(self, cid: str, title: str, parent: str | None, tip: str, kind: str) -> str:
        if cid not in self.view.clusters:
            self.view.clusters[cid] = VCluster(cid, title, parent, tip, kind, order=self.order)
        return cid

    def edge(self, src: tuple[str, TensorType, int], dst: str, kind: str = "data", label: str | None = None) -> None:
        sid, t, index = src
        self.view.edges.append(VEdge(sid, dst, shape_text(t) if label is None else label, kind, f"{sid}:{index}"))

    def path(self, n: Node, base: tuple[str, ...], skip: int, suffix: str) -> tuple[str, ...]:
        path = list(base)
        for u in n.uses[skip:]:
            cid = self.cluster(u.label + suffix, f"{u.label}{suffix}: {u.block}", path[-1] if path else None,
                               _use_text(u), "block")
            path.append(cid)
        return tuple(path)

    def run(self) -> View:
        ir = self.net.ir
        env: dict[Value, tuple[str, TensorType, int]] = {}
        self.graph(ir, env, (), 0, "", top=True)
        for name, v in ir.outputs.items():
            t = ir.type_of(v)
            out = self.node(f"output.{name}", title=name, lines=["output"], kind="output", op="output",
                            tip=f"output {name}: {shape_text(t)}")
            self.edge(env[v], out.id)
        if ir.loss is not None:
            loss = self.node("loss", title="loss", lines=["minimised"], kind="output", op="loss",
                             tip=spec_text(ir.node(ir.loss.node)))
            self.edge(env[ir.loss], loss.id)
        return self.view

    def graph(self, ir: IR, env: dict[Value, tuple[str, TensorType, int]], base: tuple[str, ...], skip: int,
              suffix: str, top: bool) -> None:
        for n in ir:
            if n.op == "input":
                if top:
                    t = n.outputs[0]
                    v = self.node(n.name, title=n.name, lines=[f"input {shape_text(t)}"], kind="input", op="input",
                                  tip=spec_text(n), is_int=t.is_int, ir=n)
                    env[Value(n.id)] = (v.id, t, 0)
                continue
            if n.op == "unroll" and n.body is not None and self.unroll > 0 and top:
                self.unrolled(n, env, base, skip, suffix)
                continue
            path = self.path(n, base, skip, suffix)
            macs = node_macs(ir, n)
            params = _all_params(n)
            if n.op == "const":
                kind, title, lines = "const", _val(n.attrs.get("value")), []
            elif n.op == "unroll":
                a = n.attrs
                kind, title = "unroll", f"{short_name(n)}: unroll {a.get('cell', '')}"
                lines = [f"over {a.get('steps')} steps" + (", reverse" if a.get("reverse") else "")]
            else:
                kind, title = "op", f"{short_name(n)}: {n.op}"
                at = attr_text(n)
                lines = [at] if at else []
            pl = _params_line(self.net, params, macs)
            if pl:
                lines.append(pl)
            v = self.node(n.name + suffix, title=title, lines=lines, kind=kind, op=n.op, path=path, tip=spec_text(n),
                          params=params, macs=macs, is_int=n.outputs[0].is_int, ir=n)
            for src in n.inputs:
                self.edge(env[src], v.id)
            for i, t in enumerate(n.outputs):
                env[Value(n.id, i)] = (v.id, t, i)

    def unrolled(self, n: Node, env: dict[Value, tuple[str, TensorType, int]], base: tuple[str, ...], skip: int,
                 suffix: str) -> None:
        a = n.attrs
        body = n.body
        assert body is not None
        path = self.path(n, base, skip, suffix)
        steps, reverse = a["steps"], a.get("reverse", False)
        shown = min(self.unroll, steps)
        ucid = self.cluster(f"{n.name}{suffix}/unroll", f"{n.name}{suffix}: unroll {a.get('cell', '')} over "
                            f"{steps} steps" + (", reverse" if reverse else "") +
                            (f" (first {shown} drawn)" if shown < steps else ""),
                            path[-1] if path else None, spec_text(n), "unroll")
        self.view.clusters[ucid].folded = False
        inputs = sorted((m for m in body if m.op == "input"), key=lambda m: m.attrs.get("index", 0))
        nstates = len(inputs) - 1
        seq = env[n.inputs[0]]
        prev: list[tuple[str, TensorType, int]] = []
        ys: list[tuple[str, TensorType, int]] = []
        for k in range(shown):
            t = steps - 1 - k if reverse else k
            sfx = f"{suffix}@{t}"
            scid = self.cluster(f"{n.name}{sfx}", f"step t={t}", ucid, spec_text(n), "step")
            self.view.clusters[scid].folded = False
            spath = path + (ucid, scid)
            benv: dict[Value, tuple[str, TensorType, int]] = {}
            x = inputs[0]
            xv = self.node(f"{x.name}{sfx}", title=f"{x.attrs.get('name', 'x')}[t={t}]", lines=[], kind="step_input",
                           op="input", path=spath, tip=spec_text(x), is_int=x.outputs[0].is_int, ir=x)
            self.edge(seq, xv.id, label=f"{shape_text(x.outputs[0])} at t={t}")
            benv[Value(x.id)] = (xv.id, x.outputs[0], 0)
            for i, m in enumerate(inputs[1:]):
                first = k == 0 and not a.get("init")
                sv = self.node(f"{m.name}{sfx}", title=f"{m.attrs.get('name', 's')} (t={t})",
                               lines=["zeros"] if first else [], kind="step_input", op="input", path=spath,
                               tip=spec_text(m), ir=m)
                if k == 0 and a.get("init"):
                    self.edge(env[n.inputs[1 + i]], sv.id, kind="state")
                elif k > 0:
                    self.edge(prev[i], sv.id, kind="state")
                benv[Value(m.id)] = (sv.id, m.outputs[0], 0)
            self.graph(body, benv, spath, len(n.uses) + 1, sfx, top=False)
            prev = [benv[body.outputs[f"state{i}"]] for i in range(nstates)]
            ys.append(benv[body.outputs["y"]])
        t0 = n.outputs[0]
        macs = node_macs(self.net.ir, n)
        params = _all_params(n)
        lines = [f"ys {shape_text(t0)}"] + [f"final {shape_text(t)}" for t in n.outputs[1:]]
        pl = _params_line(self.net, params, macs)
        if pl:
            lines.append(pl + " (all steps)")
        if shown < steps:
            more = self.node(f"{n.name}{suffix}/more", title=f"… {steps - shown} more steps", lines=[], kind="more",
                             op="more", path=path + (ucid,), tip=spec_text(n))
            for s in prev:
                self.edge(s, more.id, kind="state")
            prev = [(more.id, s[1], i) for i, s in enumerate(prev)]
        stack = self.node(n.name + suffix, title=f"{n.name}{suffix}: stack", lines=lines, kind="stack", op="unroll",
                          path=path + (ucid,), tip=spec_text(n), params=params, macs=0, ir=n)
        for y in ys:
            self.edge(y, stack.id)
        for s in prev:
            self.edge(s, stack.id, kind="state")
        for i, t in enumerate(n.outputs):
            env[Value(n.id, i)] = (stack.id, t, i)
        self.view.nodes[stack.id].macs = macs


def short_name(n: Node) -> str:
    """A node's name inside its cluster: `conv1x1` for `inception_3a.conv1x1` (the tooltip has the full name)."""
    if n.block and n.name.startswith(n.block + "."):
        return n.name[len(n.block) + 1:]
    return n.name


def _all_params(n: Node) -> list[str]:
    names = list(n.params.values())
    if n.body is not None:
        for m in n.body:
            names.extend(_all_params(m))
    return names


def build(net: Any, expand: bool = False, unroll: int = 0, grad: bool = False, fused: bool = False) -> View:
    """The view of a network. `fused` (and `grad`, for which ops have gradient rules) import the compiler."""
    view = _Builder(net, unroll).run()
    if grad:
        add_grad(view)
    if fused:
        add_kernels(view, grad)
    for c in view.clusters.values():
        if c.kind == "block":
            c.folded = not expand
    for c in list(view.clusters.values()):  # an unrolled recurrence is drawn open, with the blocks around it
        if c.kind in ("unroll", "step"):
            p = c.parent
            while p is not None:
                view.clusters[p].folded = False
                p = view.clusters[p].parent
    return view


# ---------------------------------------------------------------------- backward graph


def _gradient_ops() -> set[str] | None:
    try:
        from .compiler import rules
    except ImportError:
        return None
    return set(rules.BACKWARD) | {"unroll"}


def add_grad(view: View) -> None:
    """Per node on the loss path that depends on a trainable parameter, a gradient node; edges reversed."""
    net = view.net
    has = _gradient_ops()
    nodes = list(view.nodes.values())
    preds: dict[str, list[VEdge]] = {n.id: [] for n in nodes}
    for e in view.edges:
        preds[e.dst].append(e)
    req: dict[str, bool] = {}
    specs = net.ir.params
    for n in sorted(nodes, key=lambda n: n.order):
        own = any(p in specs and specs[p].trainable and not specs[p].state for p in n.params)
        req[n.id] = (n.kind not in ("input", "output") and not n.is_int and
                     (own or any(req.get(e.src, False) for e in preds[n.id])))
    loss = view.nodes.get("loss")
    if loss is None:
        return
    live: set[str] = set()
    stack = [e.src for e in preds["loss"]]
    while stack:
        x = stack.pop()
        if x in live:
            continue
        live.add(x)
        stack.extend(e.src for e in preds[x])
    graded = [n for n in nodes if n.id in live and req[n.id]]
    base = max((n.order for n in nodes), default=0) + 1
    gid = {}
    for k, n in enumerate(sorted(graded, key=lambda n: -n.order)):
        path = []
        for c in n.path:
            fc = view.clusters[c]
            mid = f"{c}/grad"
            if mid not in view.clusters:
                parent = f"{fc.parent}/grad" if fc.parent is not None else None
                view.clusters[mid] = VCluster(mid, f"∂ {fc.title}", parent, fc.tip, fc.kind, fc.folded,
                                              order=base + k, grad=True)
            path.append(mid)
        trainable = [p for p in dict.fromkeys(n.params) if p in specs and specs[p].trainable and not specs[p].state]
        if n.kind in ("stack",):
            lines = ["backprop through time"]
        elif n.kind == "step_input":
            lines = ["state gradient" if not n.title.endswith("]") else "input gradient"]
        else:
            lines = [f"{n.op} backward"]
        bad = has is not None and n.kind in ("op", "unroll") and n.op not in has
        if bad:
            lines = [f"no gradient rule for '{n.op}'"]
        if trainable:
            shown = ", ".join("∂" + p.rsplit(".", 1)[-1] for p in trainable[:4])
            lines.append(shown + (" …" if len(trainable) > 4 else ""))
        g = VNode(f"{n.id}/grad", f"∂ {n.title}", lines, "grad", n.op, tuple(path), n.tip, [], 0, base + k,
                  bad=bad, ir=n.ir)
        view.nodes[g.id] = g
        gid[n.id] = g.id
    for e in list(view.edges):
        if e.src in gid and e.dst in gid:
            view.edges.append(VEdge(gid[e.dst], gid[e.src], e.label, "grad", f"{gid[e.dst]}:{e.value}"))
    for e in preds["loss"]:
        if e.src in gid:
            view.edges.append(VEdge(e.src, gid[e.src], "1", "seed", f"{e.src}:seed"))


# ---------------------------------------------------------------------- kernels (--fused)


def add_kernels(view: View, grad: bool) -> None:
    """The kernel calls each node lowers to (`lower(net, train=True)`), grouped by node, in program order."""
    from .compiler.lower import lower
    from .compiler.schedule import Loop, walk

    net = view.net
    sched = lower(net, train=True)
    by_obj: dict[int, list[str]] = {}
    for v in view.nodes.values():
        if v.ir is None or v.kind in ("input", "output", "grad"):
            continue
        by_obj.setdefault(id(v.ir), []).append(v.id)
    bodies: dict[int, str] = {}
    for v in view.nodes.values():  # a folded unroll takes its body's calls
        if v.kind == "unroll" and v.ir is not None and v.ir.body is not None:
            for m in v.ir.body:
                bodies[id(m)] = v.id
    stop = sched.backward_start if sched.backward_start >= 0 else len(sched.items)
    found: dict[str, list[tuple[str, str]]] = {}
    for k, item in enumerate(sched.items):
        back = k >= stop
        calls = walk([item]) if isinstance(item, Loop) else [item]
        for c in calls:
            if c.node is None:
                continue
            targets = by_obj.get(id(c.node)) or ([bodies[id(c.node)]] if id(c.node) in bodies else [])
            if not targets and isinstance(item, Loop) and item.node is not None:
                targets = by_obj.get(id(item.node), [])
            for t in targets:
                dest = f"{t}/grad" if back and grad and f"{t}/grad" in view.nodes else t
                found.setdefault(dest, []).append(("◂ " if back else "▸ ") + c.fn + (f" [{c.note}]" if c.note else ""))
    for nid, calls in found.items():
        lines: list[str] = []
        count: list[int] = []
        for c in calls:
            if lines and lines[-1] == c:
                count[-1] += 1
            else:
                lines.append(c)
                count.append(1)
        text = [c + (f" ×{k}" if k > 1 else "") for c, k in zip(lines, count, strict=True)]
        view.kernels[nid] = text
        view.nodes[nid].lines = view.nodes[nid].lines + text


# ====================================================================== folding


@dataclass
class Visible:
    """A view with its folded clusters drawn as single nodes."""

    nodes: dict[str, VNode]  # by "n:ID" or "c:CLUSTER" for a folded cluster
    edges: list[tuple[str, str, VEdge]]
    clusters: list[VCluster]  # the open ones


def rep(view: View, n: VNode, folded: set[str]) -> str:
    for c in n.path:
        if c in folded:
            return "c:" + c
    return "n:" + n.id


def cluster_node(view: View, cid: str, cache: dict[str, Any] | None = None) -> VNode:
    """A folded cluster as a node: its block, the shapes leaving it, its parameters and MACs."""
    c = view.clusters[cid]
    members = view.members(cid)
    ids = {m.id for m in members}
    params = [p for m in members for p in m.params]
    macs = sum(m.macs for m in members)
    outs: list[str] = []
    for e in view.edges:
        if e.src in ids and e.dst not in ids and e.label not in outs and e.kind != "seed":
            outs.append(e.label)
    lines = []
    if outs:
        lines.append(" ".join(outs[:2]) + (" …" if len(outs) > 2 else ""))
    pl = _params_line(view.net, params, macs)
    if pl:
        lines.append(pl)
    if view.kernels:
        k = sum(len(view.kernels.get(m.id, [])) for m in members)
        if k:
            lines.append(f"{k} kernel calls")
    if c.grad:
        lines = [f"{len(members)} gradient nodes"] + (lines[-1:] if view.kernels else [])
    bad = any(m.bad for m in members)
    return VNode(cid, "▸ " + c.title, lines, "grad" if c.grad else "block", "block",
                 tuple(p for p in _cluster_path(view, cid)[:-1]), c.tip + "\n(folded: " + f"{len(members)} nodes)",
                 params, macs, min((m.order for m in members), default=c.order), bad=bad)


def _cluster_path(view: View, cid: str) -> tuple[str, ...]:
    out = []
    c: str | None = cid
    while c is not None:
        out.append(c)
        c = view.clusters[c].parent
    return tuple(reversed(out))


def visible(view: View, folded: set[str] | None = None) -> Visible:
    folded = view.folded() if folded is None else folded
    # only the outermost folded cluster of a path counts
    nodes: dict[str, VNode] = {}
    reps: dict[str, str] = {}
    for n in sorted(view.nodes.values(), key=lambda n: n.order):
        r = rep(view, n, folded)
        reps[n.id] = r
        if r not in nodes:
            nodes[r] = n if r.startswith("n:") else cluster_node(view, r[2:])
    edges: list[tuple[str, str, VEdge]] = []
    seen: set[tuple[str, str, str]] = set()
    for e in view.edges:
        a, b = reps[e.src], reps[e.dst]
        if a == b:
            continue
        key = (a, b, e.value)
        if key in seen:
            continue
        seen.add(key)
        edges.append((a, b, e))
    hidden = {c for c in view.clusters if any(p in folded for p in _cluster_path(view, c))}
    opened = [c for c in view.clusters.values() if c.id not in hidden]
    return Visible(nodes, edges, opened)


# ====================================================================== DOT

FILL = {
    "conv": "#dbe8fb", "pool": "#dff3df", "norm": "#fbf3d5", "dense": "#eadff7", "activation": "#f2f2f2",
    "elementwise": "#f7e7dc", "shape": "#eeeeee", "loss": "#f9d9d9", "embed": "#dcf3f1", "attention": "#e4e8f8",
}
KIND_FILL = {"input": "#d8f0d8", "output": "#d8f0d8", "const": "#ffffff", "unroll": "#d6f0f6", "stack": "#d6f0f6",
             "step_input": "#eef8fa", "more": "#ffffff", "block": "#e8ecf4", "grad": "#fde7e7"}
CLUSTER_FILL = ["#f4f6fa", "#eaeef6", "#e0e6f1", "#d7deec"]
GRAD_CLUSTER_FILL = ["#fcf3f3", "#f8e8e8", "#f3dddd", "#efd3d3"]


def fill_of(n: VNode) -> str:
    if n.bad:
        return "#f4a4a4"
    if n.kind == "op":
        from . import ops

        opdef = ops.get(n.op)
        return FILL.get(opdef.family if opdef is not None else "", "#f2f2f2")
    return KIND_FILL.get(n.kind, "#f2f2f2")


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(view: View, folded: set[str] | None = None) -> str:
    vis = visible(view, folded)
    out = [f"digraph {_q(view.net.name)} {{",
           (f"  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=11, labelloc=t, label={_q(view.title)}, "
           "newrank=true];"),
           "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10, color=\"#7a869a\"];",
           "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#5c6370\", fontcolor=\"#5c6370\"];"]
    opened = {c.id: c for c in vis.clusters}
    children: dict[str | None, list[tuple[int, str, str]]] = {}
    for key, n in vis.nodes.items():
        parent = next((c for c in reversed(n.path) if c in opened), None)
        children.setdefault(parent, []).append((n.order, "n", key))
    for c in vis.clusters:
        members = [n for n in view.members(c.id)]
        order = min((m.order for m in members), default=c.order)
        children.setdefault(c.parent, []).append((order, "c", c.id))

    def did(key: str) -> str:
        return key[2:]

    def emit(parent: str | None, indent: str) -> None:
        for _, what, key in sorted(children.get(parent, [])):
            if what == "c":
                c = opened[key]
                fills = GRAD_CLUSTER_FILL if c.grad else CLUSTER_FILL
                out.append(f"{indent}subgraph {_q('cluster_' + key)} {{")
                out.append(f"{indent}  graph [label={_q(c.title)}, tooltip={_q(c.tip)}, style=\"rounded,filled\", "
                           f"fillcolor=\"{fills[min(view.depth(key), 3)]}\", color=\"#9aa5b8\"];")
                emit(key, indent + "  ")
                out.append(f"{indent}}}")
            else:
                n = vis.nodes[key]
                label = "\n".join([n.title] + n.lines)
                attrs = [f"label={_q(label)}", f"tooltip={_q(n.tip or n.title)}", f"fillcolor=\"{fill_of(n)}\""]
                if n.kind in ("input", "output"):
                    attrs.append("shape=ellipse")
                elif n.kind in ("const", "more"):
                    attrs.append("shape=plaintext")
                elif n.kind == "block":
                    attrs.append("peripheries=2")
                elif n.kind in ("step_input",):
                    attrs.append("shape=ellipse")
                if n.bad:
                    attrs.append("color=\"#c62828\", penwidth=2")
                out.append(f"{indent}{_q(did(key))} [{', '.join(attrs)}];")

    emit(None, "  ")
    for a, b, e in vis.edges:
        attrs = [f"label={_q(' ' + e.label)}"] if e.label else []
        if e.kind == "state":
            attrs.append("color=\"#1565c0\", fontcolor=\"#1565c0\", penwidth=1.6")
        elif e.kind == "grad":
            attrs.append("color=\"#c62828\", fontcolor=\"#c62828\", style=dashed")
        elif e.kind == "seed":
            attrs.append("color=\"#c62828\", style=dotted")
        out.append(f"  {_q(did(a))} -> {_q(did(b))}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    out.append("}")
    return "\n".join(out) + "\n"


def graphviz(dot: str, fmt: str) -> bytes:
    """Run Graphviz's `dot`; raises FileNotFoundError when it is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        raise FileNotFoundError("dot")
    r = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=300, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace").strip() or f"dot exited with {r.returncode}")
    return r.stdout


# ====================================================================== layout (compound, layered)

# Geometry shared with the page's script (keep the two in step).
G = {"charw": 6.3, "titlew": 6.9, "lineh": 14, "padx": 9, "pady": 6, "hgap": 18, "vgap": 30, "dummyw": 6,
     "header": 20, "cpad": 10, "margin": 16, "top": 8}


def node_size(title: str, lines: list[str]) -> tuple[float, float]:
    w = max([len(title) * G["titlew"]] + [len(x) * G["charw"] for x in lines]) + 2 * G["padx"]
    h = (1 + len(lines)) * G["lineh"] + 2 * G["pady"]
    return round(max(w, 40.0), 1), float(h)


def structure(view: View) -> dict[str, Any]:
    """The part of the layout that does not depend on folding: per level (root "" or a cluster), its items
    (nodes, child clusters, dummies for long edges) in layers and in order, and each edge's route.

    An edge is routed at the level of the innermost cluster holding both ends (through dummies when it spans
    layers), and inside each cluster it leaves (down to the cluster's bottom) or enters (from its top)."""
    levels: dict[str, list[str]] = {"": []}
    order: dict[str, int] = {}
    for c in view.clusters.values():
        levels.setdefault(c.id, [])
    for n in sorted(view.nodes.values(), key=lambda n: n.order):
        levels[n.path[-1] if n.path else ""].append("n:" + n.id)
        order["n:" + n.id] = n.order
    for c in view.clusters.values():
        members = view.members(c.id)
        order["c:" + c.id] = min((m.order for m in members), default=c.order)
        levels[c.parent or ""].append("c:" + c.id)
    for members_of in levels.values():
        members_of.sort(key=lambda i: order[i])

    def item(n: VNode, level: str) -> str:
        p = n.path
        if level == "":
            return "c:" + p[0] if p else "n:" + n.id
        i = p.index(level)
        return "c:" + p[i + 1] if i + 1 < len(p) else "n:" + n.id

    ledges: dict[str, list[tuple[str, str]]] = {k: [] for k in levels}
    entries: dict[str, list[str]] = {k: [] for k in levels}
    exits: dict[str, list[str]] = {k: [] for k in levels}
    eroutes: list[list[list[str]]] = []
    for e in view.edges:
        ns, nd = view.nodes[e.src], view.nodes[e.dst]
        pa, pb = ns.path, nd.path
        common = 0
        while common < min(len(pa), len(pb)) and pa[common] == pb[common]:
            common += 1
        lvl = pa[common - 1] if common else ""
        route: list[list[str]] = []
        for lk in reversed(pa[common:]):  # clusters the edge leaves, innermost first
            it = item(ns, lk)
            if it not in exits[lk]:
                exits[lk].append(it)
            route.append([lk, f"out|{it}"])
        a, b = item(ns, lvl), item(nd, lvl)
        if a != b and (a, b) not in ledges[lvl]:
            ledges[lvl].append((a, b))
        route.append([lvl, f"{a}|{b}"])
        for lk in pb[common:]:  # clusters it enters, outermost first
            it = item(nd, lk)
            if it not in entries[lk]:
                entries[lk].append(it)
            route.append([lk, f"in|{it}"])
        eroutes.append(route)
    out: dict[str, Any] = {}
    for lvl, items in levels.items():
        out[lvl] = _layer_level(lvl, items, ledges[lvl], entries[lvl], exits[lvl], order)
    return {"levels": out, "routes": eroutes}


def _layer_level(lvl: str, items: list[str], edges: list[tuple[str, str]], entries: list[str], exits: list[str],
                 order: dict[str, int]) -> dict[str, Any]:
    succ: dict[str, list[str]] = {i: [] for i in items}
    pred: dict[str, list[str]] = {i: [] for i in items}
    indeg = {i: 0 for i in items}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
        indeg[b] += 1
    layer: dict[str, int] = {i: 0 for i in items}
    ready = sorted((i for i in items if indeg[i] == 0), key=lambda i: order[i])
    done: set[str] = set()
    while len(done) < len(items):
        if not ready:  # a cycle (should not happen): take the earliest remaining item
            ready = [min((i for i in items if i not in done), key=lambda i: order[i])]
        x = ready.pop(0)
        if x in done:
            continue
        done.add(x)
        for y in succ[x]:
            if y in done:
                continue
            layer[y] = max(layer[y], layer[x] + 1)
            indeg[y] -= 1
            if indeg[y] == 0:
                ready.append(y)
                ready.sort(key=lambda i: order[i])
    for i in items:  # a source nothing enters sits just above its first user (an input used only by the loss)
        if not pred[i] and succ[i] and i not in entries:
            layer[i] = max(layer[i], min(layer[y] for y in succ[i]) - 1)
    nl = max(layer.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(nl)]
    for i in items:
        layers[layer[i]].append(i)
    segs: list[tuple[str, str]] = []
    routes: dict[str, list[str]] = {}
    pos_hint: dict[str, float] = dict(order)
    count = [0]

    def chain(key: str, lo: int, hi: int, hint: float) -> list[str]:
        out = []
        for k in range(lo, hi):
            d = f"d:{lvl}:{count[0]}"
            count[0] += 1
            layers[k].append(d)
            pos_hint[d] = hint
            out.append(d)
        routes[key] = out
        return out

    for a, b in edges:
        la, lb = layer[a], layer[b]
        if lb <= la:
            continue
        ds = chain(f"{a}|{b}", la + 1, lb, order[a])
        path = [a] + ds + [b]
        segs.extend(itertools.pairwise(path))
    for t in entries:
        ds = chain(f"in|{t}", 0, layer[t], order[t] - 0.5)
        path = ds + [t]
        segs.extend(itertools.pairwise(path))
    for src in exits:
        ds = chain(f"out|{src}", layer[src] + 1, nl, order[src] + 0.5)
        path = [src] + ds
        segs.extend(itertools.pairwise(path))
    for L in layers:
        L.sort(key=lambda i: pos_hint[i])
    layers = _order(layers, segs)
    return {"layers": layers, "segs": [list(s) for s in segs], "routes": routes}


def _crossings(layers: list[list[str]], segs: list[tuple[str, str]]) -> int:
    pos = {x: (k, i) for k, L in enumerate(layers) for i, x in enumerate(L)}
    by: dict[int, list[tuple[int, int]]] = {}
    for a, b in segs:
        ka, ia = pos[a]
        _, ib = pos[b]
        by.setdefault(ka, []).append((ia, ib))
    total = 0
    for pairs in by.values():
        for i in range(len(pairs)):
            for j in range(i + 1, len(pairs)):
                (a1, b1), (a2, b2) = pairs[i], pairs[j]
                if (a1 - a2) * (b1 - b2) < 0:
                    total += 1
    return total


def _order(layers: list[list[str]], segs: list[tuple[str, str]]) -> list[list[str]]:
    """Barycenter sweeps, keeping the order with the fewest crossings."""
    if len(layers) < 2 or not segs or sum(len(L) for L in layers) > 4000:
        return layers
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in segs:
        succs.setdefault(a, []).append(b)
        preds.setdefault(b, []).append(a)
    best = [list(L) for L in layers]
    best_c = _crossings(best, segs)
    cur = [list(L) for L in layers]
    for sweep in range(6):
        down = sweep % 2 == 0
        rng = range(1, len(cur)) if down else range(len(cur) - 2, -1, -1)
        for k in rng:
            ref = cur[k - 1] if down else cur[k + 1]
            where = {x: i for i, x in enumerate(ref)}
            nb = preds if down else succs
            cur_pos = {x: i for i, x in enumerate(cur[k])}

            def key(x: str, where: dict[str, int] = where, nb: dict[str, list[str]] = nb,
                    cur_pos: dict[str, int] = cur_pos) -> tuple[float, int]:
                ps = [where[p] for p in nb.get(x, []) if p in where]
                return (sum(ps) / len(ps) if ps else cur_pos[x], cur_pos[x])

            cur[k].sort(key=key)
        c = _crossings(cur, segs)
        if c < best_c:
            best, best_c = [list(L) for L in cur], c
    return best


class _Placer:
    """Coordinates for one folding: sizes bottom-up, positions within each level. Ported to the page's script."""

    def __init__(self, data: dict[str, Any], folded: set[str]) -> None:
        self.d = data
        self.folded = folded
        self.memo: dict[str, dict[str, Any]] = {}

    def size(self, it: str) -> tuple[float, float]:
        if it.startswith("n:"):
            n = self.d["nodes"][it[2:]]
            return n["w"], n["h"]
        if it.startswith("d:"):
            return G["dummyw"], 0.0
        cid = it[2:]
        c = self.d["clusters"][cid]
        if cid in self.folded:
            return c["fw"], c["fh"]
        lay = self.level(cid)
        w = max(lay["w"] + 2 * G["cpad"], len(c["title"]) * G["titlew"] + 30)
        return w, lay["h"] + G["header"] + 2 * G["cpad"]

    def level(self, lvl: str) -> dict[str, Any]:
        if lvl in self.memo:
            return self.memo[lvl]
        L = self.d["levels"][lvl]
        layers = L["layers"]
        size = {it: self.size(it) for layer in layers for it in layer}
        preds: dict[str, list[str]] = {}
        succs: dict[str, list[str]] = {}
        for a, b in L["segs"]:
            succs.setdefault(a, []).append(b)
            preds.setdefault(b, []).append(a)
        ys, band = {}, []
        top = 0.0
        for layer in layers:
            lh = max([size[it][1] for it in layer] + [0.0])
            if lh == 0:
                lh = 10.0
            for it in layer:
                ys[it] = top
            band.append((top, lh))
            top += lh + G["vgap"]
        h = max(0.0, top - G["vgap"])
        xs: dict[str, float] = {}  # left edges
        for layer in layers:
            total = sum(size[it][0] for it in layer) + G["hgap"] * (len(layer) - 1)
            x = -total / 2
            for it in layer:
                xs[it] = x
                x += size[it][0] + G["hgap"]
        for sweep in range(4):
            down = sweep % 2 == 0
            idx = list(range(1, len(layers))) if down else list(range(len(layers) - 2, -1, -1))
            nb = preds if down else succs
            for k in idx:
                layer = layers[k]
                want = []
                for it in layer:
                    ns = nb.get(it, [])
                    if ns:
                        c = sum(xs[p] + size[p][0] / 2 for p in ns) / len(ns)
                    else:
                        c = xs[it] + size[it][0] / 2
                    want.append(c)
                right = -math.inf
                got = []
                for it, c in zip(layer, want, strict=True):
                    left = max(c - size[it][0] / 2, right + G["hgap"])
                    got.append(left)
                    right = left + size[it][0]
                shift = sum(c - (g + size[it][0] / 2) for it, c, g in zip(layer, want, got, strict=True)) / len(layer)
                for it, g in zip(layer, got, strict=True):
                    xs[it] = g + shift
        minx = min((xs[it] for it in xs), default=0.0)
        maxx = max((xs[it] + size[it][0] for it in xs), default=0.0)
        pos = {it: (xs[it] - minx, ys[it]) for it in xs}
        out = {"w": maxx - minx, "h": h, "pos": pos, "size": size, "band": band,
               "layer": {it: k for k, layer in enumerate(layers) for it in layer}}
        self.memo[lvl] = out
        return out

    def absolute(self) -> tuple[dict[str, tuple[float, float, float, float]], dict[str, tuple[float, float]], float,
                                float]:
        """Boxes (x, y, w, h) of every drawn item, content origins of open levels, and the total size."""
        boxes: dict[str, tuple[float, float, float, float]] = {}
        origins: dict[str, tuple[float, float]] = {}

        def walk(lvl: str, ox: float, oy: float) -> None:
            origins[lvl] = (ox, oy)
            lay = self.level(lvl)
            for it, (x, y) in lay["pos"].items():
                w, h = lay["size"][it]
                boxes[it] = (ox + x, oy + y, w, h)
                if it.startswith("c:") and it[2:] not in self.folded:
                    inner = self.level(it[2:])
                    walk(it[2:], ox + x + (w - inner["w"]) / 2, oy + y + G["header"] + G["cpad"])

        root = self.level("")
        walk("", G["margin"], G["margin"] + G["top"])
        return boxes, origins, root["w"] + 2 * G["margin"], root["h"] + 2 * G["margin"] + G["top"]


def layout_data(view: View) -> dict[str, Any]:
    """Everything the page's script needs to redraw the graph for any folding (JSON-ready)."""
    st = structure(view)
    nodes = {}
    for n in view.nodes.values():
        w, h = node_size(n.title, n.lines)
        nodes[n.id] = {"title": n.title, "lines": n.lines, "w": w, "h": h, "kind": n.kind, "tip": n.tip,
                       "fill": fill_of(n), "bad": n.bad, "path": list(n.path)}
    clusters = {}
    for c in view.clusters.values():
        cn = cluster_node(view, c.id)
        fw, fh = node_size(cn.title, cn.lines)
        fills = GRAD_CLUSTER_FILL if c.grad else CLUSTER_FILL
        clusters[c.id] = {"title": c.title, "tip": c.tip, "kind": c.kind, "parent": c.parent, "fw": fw, "fh": fh,
                          "flines": cn.lines, "ftitle": cn.title, "fill": fills[min(view.depth(c.id), 3)],
                          "ffill": fill_of(cn), "bad": cn.bad}
    edges = []
    for e, route in zip(view.edges, st["routes"], strict=True):
        edges.append({"s": e.src, "d": e.dst, "label": e.label, "kind": e.kind, "value": e.value, "route": route})
    return {"title": view.title, "nodes": nodes, "clusters": clusters, "levels": st["levels"], "edges": edges,
            "folded": sorted(view.folded()), "geometry": G}


# ====================================================================== SVG (drawn here, and by the page)


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


EDGE_STYLE = {"data": ("#6b7280", ""), "state": ("#1565c0", ""), "grad": ("#c62828", "5,3"),
              "seed": ("#c62828", "2,3")}


def to_svg(view: View, folded: set[str] | None = None, data: dict[str, Any] | None = None) -> str:
    data = data or layout_data(view)
    folded = set(data["folded"]) if folded is None else folded
    return render_svg(data, folded)


def render_svg(d: dict[str, Any], folded: set[str]) -> str:
    """The same drawing as the page's `render` (keep the two in step)."""
    pl = _Placer(d, folded)
    boxes, origins, W, H = pl.absolute()

    def rep_of(nid: str) -> str:
        for c in d["nodes"][nid]["path"]:
            if c in folded:
                return "c:" + c
        return "n:" + nid

    out = [(f'<svg class="netdsl-graph" width="{W:.0f}" height="{H:.0f}" '
           f'viewBox="0 0 {W:.0f} {H:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="11">'),
           _defs(),
           f'<text x="{G["margin"]}" y="{G["margin"]}" font-weight="bold" font-size="12">{_esc(d["title"])}</text>']
    # open clusters, outermost first
    opened = [it for it in boxes if it.startswith("c:") and it[2:] not in folded]
    opened.sort(key=lambda it: _depth(d, it[2:]))
    for it in opened:
        c = d["clusters"][it[2:]]
        x, y, w, h = boxes[it]
        out.append(f'<g class="cluster" data-toggle="{_esc(it[2:])}"><title>{_esc(c["tip"])}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="7" fill="{c["fill"]}" '
                   f'stroke="#9aa5b8"/><text x="{x + 8:.1f}" y="{y + 14:.1f}" font-weight="bold" '
                   f'style="cursor:pointer">▾ {_esc(c["title"])}</text></g>')
    labels: dict[tuple[str, str], tuple[float, float, str, str]] = {}
    seen: set[tuple[str, str, str]] = set()
    for e in d["edges"]:
        a, b = rep_of(e["s"]), rep_of(e["d"])
        if a == b or (a, b, e["value"]) in seen:
            continue
        seen.add((a, b, e["value"]))
        pts = _edge_points(d, pl, boxes, origins, e, a, b)
        color, dash = EDGE_STYLE.get(e["kind"], EDGE_STYLE["data"])
        marker = "arrow-red" if e["kind"] in ("grad", "seed") else "arrow-blue" if e["kind"] == "state" else "arrow"
        tip = f'{_short(d, a)} → {_short(d, b)}: {e["label"]}'
        out.append(f'<path d="{_path_d(pts)}" fill="none" stroke="{color}" stroke-width="1.2"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + f' marker-end="url(#{marker})">'
                   f'<title>{_esc(tip)}</title></path>')
        if e["label"] and (a, e["value"]) not in labels:
            labels[(a, e["value"])] = (pts[0][0] + 4, pts[0][1] + 11, e["label"], color)
    for it, (x, y, w, h) in boxes.items():
        if it.startswith("d:") or (it.startswith("c:") and it[2:] not in folded):
            continue
        if it.startswith("n:"):
            n = d["nodes"][it[2:]]
            title, lines, fill, tip, kind, bad, tog = n["title"], n["lines"], n["fill"], n["tip"], n["kind"], n["bad"], ""
        else:
            c = d["clusters"][it[2:]]
            title, lines, fill, tip, kind, bad = c["ftitle"], c["flines"], c["ffill"], c["tip"], "block", c["bad"]
            tog = f' data-toggle="{_esc(it[2:])}" style="cursor:pointer"'
        out.append(_node_svg(x, y, w, h, title, lines, fill, tip, kind, bad, tog))
    for x, y, text, color in labels.values():
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="9" fill="{color}">{_esc(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _depth(d: dict[str, Any], cid: str) -> int:
    k, c = 0, d["clusters"][cid]
    while c["parent"] is not None:
        k, c = k + 1, d["clusters"][c["parent"]]
    return k


def _short(d: dict[str, Any], it: str) -> str:
    if it.startswith("n:"):
        return d["nodes"][it[2:]]["title"]
    return it[2:]


def _node_svg(x: float, y: float, w: float, h: float, title: str, lines: list[str], fill: str, tip: str, kind: str,
              bad: bool, tog: str) -> str:
    stroke = "#c62828" if bad else "#7a869a"
    sw = 2 if bad else 1
    rx = h / 2 if kind in ("input", "output", "step_input") else 5
    shape = f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{min(rx, 14):.1f}" fill="{fill}" ' \
            f'stroke="{stroke}" stroke-width="{sw}"' + (' stroke-dasharray="3,2"' if kind in ("const", "more") else "") + "/>"
    if kind == "block":
        shape += f'<rect x="{x + 2.5:.1f}" y="{y + 2.5:.1f}" width="{w - 5:.1f}" height="{h - 5:.1f}" rx="4" ' \
                 f'fill="none" stroke="{stroke}" stroke-width="0.6"/>'
    cx = x + w / 2
    ty = y + G["pady"] + 11
    parts = [f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="middle" font-weight="bold">{_esc(title)}</text>']
    for k, line in enumerate(lines):
        parts.append(f'<text x="{cx:.1f}" y="{ty + (k + 1) * G["lineh"]:.1f}" text-anchor="middle" '
                     f'fill="#333">{_esc(line)}</text>')
    return f'<g class="node"{tog}><title>{_esc(tip or title)}</title>{shape}{"".join(parts)}</g>'


def _edge_points(d: dict[str, Any], pl: _Placer, boxes: dict[str, tuple[float, float, float, float]],
                 origins: dict[str, tuple[float, float]], e: dict[str, Any], a: str, b: str) -> list[tuple[float, float]]:
    xa, ya, wa, ha = boxes[a]
    xb, yb, wb, _ = boxes[b]
    pts = [(xa + wa / 2, ya + ha)]
    for lvl, key in e["route"]:
        if lvl not in origins:
            continue
        lay = pl.level(lvl)
        ox, oy = origins[lvl]
        for dm in d["levels"][lvl]["routes"].get(key, []):
            x, _ = lay["pos"][dm]
            top, lh = lay["band"][lay["layer"][dm]]
            px = ox + x + G["dummyw"] / 2
            pts.append((px, oy + top))
            pts.append((px, oy + top + lh))
    pts.append((xb + wb / 2, yb))
    return pts


def _path_d(pts: list[tuple[float, float]]) -> str:
    out = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        dy = max(abs(y1 - y0) / 2, 8)
        out += f" C{x0:.1f},{y0 + dy:.1f} {x1:.1f},{y1 - dy:.1f} {x1:.1f},{y1:.1f}"
    return out


# ====================================================================== HTML page

_SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("netdsl-data").textContent);
  var G = D.geometry;
  var folded = {};
  D.folded.forEach(function (c) { folded[c] = true; });
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function f1(x) { return (Math.round(x * 10) / 10).toFixed(1); }
  function depth(cid) { var k = 0, c = D.clusters[cid]; while (c.parent !== null) { k++; c = D.clusters[c.parent]; } return k; }

  function Placer() { this.memo = {}; }
  Placer.prototype.size = function (it) {
    if (it.slice(0, 2) === "n:") { var n = D.nodes[it.slice(2)]; return [n.w, n.h]; }
    if (it.slice(0, 2) === "d:") { return [G.dummyw, 0]; }
    var cid = it.slice(2), c = D.clusters[cid];
    if (folded[cid]) { return [c.fw, c.fh]; }
    var lay = this.level(cid);
    return [Math.max(lay.w + 2 * G.cpad, c.title.length * G.titlew + 30), lay.h + G.header + 2 * G.cpad];
  };
  Placer.prototype.level = function (lvl) {
    if (this.memo.hasOwnProperty(lvl)) { return this.memo[lvl]; }
    var L = D.levels[lvl], layers = L.layers, self = this;
    var size = {}, preds = {}, succs = {}, ys = {}, band = [], xs = {}, layerOf = {};
    layers.forEach(function (layer, k) { layer.forEach(function (it) { size[it] = self.size(it); layerOf[it] = k; }); });
    L.segs.forEach(function (s) {
      (succs[s[0]] = succs[s[0]] || []).push(s[1]);
      (preds[s[1]] = preds[s[1]] || []).push(s[0]);
    });
    var top = 0;
    layers.forEach(function (layer) {
      var lh = 0;
      layer.forEach(function (it) { lh = Math.max(lh, size[it][1]); });
      if (lh === 0) { lh = 10; }
      layer.forEach(function (it) { ys[it] = top; });
      band.push([top, lh]);
      top += lh + G.vgap;
    });
    var h = Math.max(0, top - G.vgap);
    layers.forEach(function (layer) {
      var total = G.hgap * (layer.length - 1);
      layer.forEach(function (it) { total += size[it][0]; });
      var x = -total / 2;
      layer.forEach(function (it) { xs[it] = x; x += size[it][0] + G.hgap; });
    });
    for (var sweep = 0; sweep < 4; sweep++) {
      var down = sweep % 2 === 0, idx = [], k;
      if (down) { for (k = 1; k < layers.length; k++) { idx.push(k); } }
      else { for (k = layers.length - 2; k >= 0; k--) { idx.push(k); } }
      var nb = down ? preds : succs;
      idx.forEach(function (k) {
        var layer = layers[k], want = [], got = [], right = -Infinity, shift = 0;
        layer.forEach(function (it) {
          var ns = nb[it] || [], c;
          if (ns.length) { c = 0; ns.forEach(function (p) { c += xs[p] + size[p][0] / 2; }); c /= ns.length; }
          else { c = xs[it] + size[it][0] / 2; }
          want.push(c);
        });
        layer.forEach(function (it, i) {
          var left = Math.max(want[i] - size[it][0] / 2, right + G.hgap);
          got.push(left); right = left + size[it][0];
        });
        layer.forEach(function (it, i) { shift += want[i] - (got[i] + size[it][0] / 2); });
        shift /= layer.length;
        layer.forEach(function (it, i) { xs[it] = got[i] + shift; });
      });
    }
    var minx = Infinity, maxx = -Infinity, any = false;
    Object.keys(xs).forEach(function (it) { any = true; minx = Math.min(minx, xs[it]); maxx = Math.max(maxx, xs[it] + size[it][0]); });
    if (!any) { minx = 0; maxx = 0; }
    var pos = {};
    Object.keys(xs).forEach(function (it) { pos[it] = [xs[it] - minx, ys[it]]; });
    var out = {w: maxx - minx, h: h, pos: pos, size: size, band: band, layer: layerOf};
    this.memo[lvl] = out;
    return out;
  };
  Placer.prototype.absolute = function () {
    var boxes = {}, origins = {}, self = this;
    function walk(lvl, ox, oy) {
      origins[lvl] = [ox, oy];
      var lay = self.level(lvl);
      Object.keys(lay.pos).forEach(function (it) {
        var x = lay.pos[it][0], y = lay.pos[it][1], w = lay.size[it][0], h = lay.size[it][1];
        boxes[it] = [ox + x, oy + y, w, h];
        if (it.slice(0, 2) === "c:" && !folded[it.slice(2)]) {
          var inner = self.level(it.slice(2));
          walk(it.slice(2), ox + x + (w - inner.w) / 2, oy + y + G.header + G.cpad);
        }
      });
    }
    var root = this.level("");
    walk("", G.margin, G.margin + G.top);
    return {boxes: boxes, origins: origins, W: root.w + 2 * G.margin, H: root.h + 2 * G.margin + G.top};
  };

  var STYLE = {data: ["#6b7280", ""], state: ["#1565c0", ""], grad: ["#c62828", "5,3"], seed: ["#c62828", "2,3"]};
  function repOf(nid) {
    var p = D.nodes[nid].path;
    for (var i = 0; i < p.length; i++) { if (folded[p[i]]) { return "c:" + p[i]; } }
    return "n:" + nid;
  }
  function shortName(it) { return it.slice(0, 2) === "n:" ? D.nodes[it.slice(2)].title : it.slice(2); }
  function pathD(pts) {
    var s = "M" + f1(pts[0][0]) + "," + f1(pts[0][1]);
    for (var i = 0; i + 1 < pts.length; i++) {
      var x0 = pts[i][0], y0 = pts[i][1], x1 = pts[i + 1][0], y1 = pts[i + 1][1];
      var dy = Math.max(Math.abs(y1 - y0) / 2, 8);
      s += " C" + f1(x0) + "," + f1(y0 + dy) + " " + f1(x1) + "," + f1(y1 - dy) + " " + f1(x1) + "," + f1(y1);
    }
    return s;
  }
  function nodeSvg(x, y, w, h, title, lines, fill, tip, kind, bad, tog) {
    var stroke = bad ? "#c62828" : "#7a869a", sw = bad ? 2 : 1;
    var rx = (kind === "input" || kind === "output" || kind === "step_input") ? h / 2 : 5;
    var s = '<rect x="' + f1(x) + '" y="' + f1(y) + '" width="' + f1(w) + '" height="' + f1(h) + '" rx="' +
      f1(Math.min(rx, 14)) + '" fill="' + fill + '" stroke="' + stroke + '" stroke-width="' + sw + '"' +
      ((kind === "const" || kind === "more") ? ' stroke-dasharray="3,2"' : "") + "/>";
    if (kind === "block") {
      s += '<rect x="' + f1(x + 2.5) + '" y="' + f1(y + 2.5) + '" width="' + f1(w - 5) + '" height="' + f1(h - 5) +
        '" rx="4" fill="none" stroke="' + stroke + '" stroke-width="0.6"/>';
    }
    var cx = x + w / 2, ty = y + G.pady + 11;
    s += '<text x="' + f1(cx) + '" y="' + f1(ty) + '" text-anchor="middle" font-weight="bold">' + esc(title) + "</text>";
    lines.forEach(function (line, k) {
      s += '<text x="' + f1(cx) + '" y="' + f1(ty + (k + 1) * G.lineh) + '" text-anchor="middle" fill="#333">' + esc(line) + "</text>";
    });
    return '<g class="node"' + tog + "><title>" + esc(tip || title) + "</title>" + s + "</g>";
  }
  function render() {
    var pl = new Placer(), A = pl.absolute(), boxes = A.boxes, origins = A.origins;
    var out = ['<svg class="netdsl-graph" width="' + Math.round(A.W) +
      '" height="' + Math.round(A.H) + '" viewBox="0 0 ' + Math.round(A.W) + " " + Math.round(A.H) +
      '" font-family="Helvetica, Arial, sans-serif" font-size="11">'];
    out.push(D.defs);
    out.push('<text x="' + G.margin + '" y="' + G.margin + '" font-weight="bold" font-size="12">' + esc(D.title) + "</text>");
    var opened = Object.keys(boxes).filter(function (it) { return it.slice(0, 2) === "c:" && !folded[it.slice(2)]; });
    opened.sort(function (a, b) { return depth(a.slice(2)) - depth(b.slice(2)); });
    opened.forEach(function (it) {
      var c = D.clusters[it.slice(2)], b = boxes[it];
      out.push('<g class="cluster" data-toggle="' + esc(it.slice(2)) + '"><title>' + esc(c.tip) + "</title>" +
        '<rect x="' + f1(b[0]) + '" y="' + f1(b[1]) + '" width="' + f1(b[2]) + '" height="' + f1(b[3]) +
        '" rx="7" fill="' + c.fill + '" stroke="#9aa5b8"/><text x="' + f1(b[0] + 8) + '" y="' + f1(b[1] + 14) +
        '" font-weight="bold" style="cursor:pointer">\u25be ' + esc(c.title) + "</text></g>");
    });
    var labels = {}, labelOrder = [], seen = {};
    D.edges.forEach(function (e) {
      var a = repOf(e.s), b = repOf(e.d), key = a + "\u0000" + b + "\u0000" + e.value;
      if (a === b || seen[key]) { return; }
      seen[key] = true;
      var ba = boxes[a], bb = boxes[b], pts = [[ba[0] + ba[2] / 2, ba[1] + ba[3]]];
      e.route.forEach(function (r) {
        if (!origins.hasOwnProperty(r[0])) { return; }
        var lay = pl.level(r[0]), o = origins[r[0]];
        (D.levels[r[0]].routes[r[1]] || []).forEach(function (dm) {
          var band = lay.band[lay.layer[dm]], px = o[0] + lay.pos[dm][0] + G.dummyw / 2;
          pts.push([px, o[1] + band[0]]);
          pts.push([px, o[1] + band[0] + band[1]]);
        });
      });
      pts.push([bb[0] + bb[2] / 2, bb[1]]);
      var st = STYLE[e.kind] || STYLE.data;
      var marker = (e.kind === "grad" || e.kind === "seed") ? "arrow-red" : (e.kind === "state" ? "arrow-blue" : "arrow");
      out.push('<path d="' + pathD(pts) + '" fill="none" stroke="' + st[0] + '" stroke-width="1.2"' +
        (st[1] ? ' stroke-dasharray="' + st[1] + '"' : "") + ' marker-end="url(#' + marker + ')"><title>' +
        esc(shortName(a) + " \u2192 " + shortName(b) + ": " + e.label) + "</title></path>");
      var lk = a + "\u0000" + e.value;
      if (e.label && !labels.hasOwnProperty(lk)) { labels[lk] = [pts[0][0] + 4, pts[0][1] + 11, e.label, st[0]]; labelOrder.push(lk); }
    });
    Object.keys(boxes).forEach(function (it) {
      var b = boxes[it], kind2 = it.slice(0, 2);
      if (kind2 === "d:" || (kind2 === "c:" && !folded[it.slice(2)])) { return; }
      if (kind2 === "n:") {
        var n = D.nodes[it.slice(2)];
        out.push(nodeSvg(b[0], b[1], b[2], b[3], n.title, n.lines, n.fill, n.tip, n.kind, n.bad, ""));
      } else {
        var c = D.clusters[it.slice(2)];
        out.push(nodeSvg(b[0], b[1], b[2], b[3], c.ftitle, c.flines, c.ffill, c.tip + "\n(click to open)", "block", c.bad,
          ' data-toggle="' + esc(it.slice(2)) + '" style="cursor:pointer"'));
      }
    });
    labelOrder.forEach(function (k) {
      var l = labels[k];
      out.push('<text x="' + f1(l[0]) + '" y="' + f1(l[1]) + '" font-size="9" fill="' + l[3] + '">' + esc(l[2]) + "</text>");
    });
    out.push("</svg>");
    document.getElementById("netdsl-graph").innerHTML = out.join("\n");
    var openCount = Object.keys(D.clusters).filter(function (c) { return !folded[c]; }).length;
    document.getElementById("netdsl-status").textContent =
      Object.keys(D.clusters).length + " clusters, " + openCount + " open";
  }
  // #open=all, #open=NAME,NAME (block labels), #fold=all: the folding to start from (links, tests)
  var hash = decodeURIComponent((window.location.hash || "").slice(1));
  if (hash.indexOf("open=") === 0) {
    hash.slice(5).split(",").forEach(function (c) {
      if (c === "all") { folded = {}; } else { delete folded[c]; }
    });
  } else if (hash === "fold=all") {
    Object.keys(D.clusters).forEach(function (c) { folded[c] = true; });
  }
  document.getElementById("netdsl-graph").addEventListener("click", function (ev) {
    var el = ev.target;
    while (el && el !== this) {
      if (el.getAttribute && el.getAttribute("data-toggle") !== null) {
        var c = el.getAttribute("data-toggle");
        if (folded[c]) { delete folded[c]; } else { folded[c] = true; }
        render();
        return;
      }
      el = el.parentNode;
    }
  });
  document.getElementById("netdsl-open").addEventListener("click", function () { folded = {}; render(); });
  document.getElementById("netdsl-fold").addEventListener("click", function () {
    folded = {};
    Object.keys(D.clusters).forEach(function (c) { if (D.clusters[c].kind === "block") { folded[c] = true; } });
    render();
  });
  render();
  // #click=NAME,NAME: click those blocks once drawn, as a user would (tests the handler end to end)
  if (hash.indexOf("click=") === 0) {
    hash.slice(6).split(",").forEach(function (c) {
      var el = document.querySelector('#netdsl-graph [data-toggle="' + c.replace(/"/g, "") + '"] text');
      if (el) { el.dispatchEvent(new MouseEvent("click", {bubbles: true})); }
    });
  }
})();
"""

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; background: #fff; color: #222; }
header { padding: 10px 16px; border-bottom: 1px solid #ddd; background: #f7f8fa; position: sticky; top: 0; z-index: 1; }
header h1 { font-size: 16px; margin: 0 0 4px 0; }
header .facts { font-size: 12px; color: #555; }
header button { font-size: 12px; margin-right: 6px; }
#netdsl-status { font-size: 11px; color: #777; margin-left: 8px; }
#netdsl-graph { padding: 8px; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: 4px; border: 1px solid #aaa; border-radius: 3px; font-size: 11px; }
g.node:hover rect { stroke: #111; }
g.cluster > text:hover { text-decoration: underline; }
"""


def _defs() -> str:
    return ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker>'
            '<marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c62828"/></marker>'
            '<marker id="arrow-blue" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1565c0"/></marker></defs>')


def to_html(view: View) -> str:
    """A self-contained page: the graph drawn as inline SVG, clusters opened and folded by an inline script."""
    data = layout_data(view)
    svg = render_svg(data, set(data["folded"]))
    data["defs"] = _defs()
    net = view.net
    specs = [p for p in net.ir.params.values() if not p.state]
    total_params = sum(p.size for p in specs)
    total_macs = sum(node_macs(net.ir, n) for n in net.ir)
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    legend = "".join(f'<span style="background:{c}">{k}</span>' for k, c in
                     [("conv", FILL["conv"]), ("pool", FILL["pool"]), ("norm", FILL["norm"]), ("dense", FILL["dense"]),
                      ("activation", FILL["activation"]), ("elementwise", FILL["elementwise"]),
                      ("loss", FILL["loss"]), ("block", KIND_FILL["block"]), ("gradient", KIND_FILL["grad"])])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_esc(net.name)} — netdsl graph</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_esc(net.name)} <small style="font-weight:normal;color:#666">{_esc(net.source)}</small></h1>
<div class="facts">{total_params:,} parameters · {total_macs:,} MACs per example · {len(net.ir)} IR nodes ·
hover a node for its spec line; click a block to open or fold it.</div>
<div style="margin-top:6px"><button id="netdsl-open" type="button">Open all</button><button id="netdsl-fold"
type="button">Fold all blocks</button><span class="legend">{legend}</span><span id="netdsl-status"></span></div>
</header>
<div id="netdsl-graph">{svg}</div>
<script type="application/json" id="netdsl-data">{payload}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def svg_fragment(view: View) -> str:
    """The page's SVG part (for notebooks): the drawing with the view's folding, in a scrolling box."""
    return f'<div style="max-height:800px;overflow:auto">{to_svg(view)}</div>'


def program_html(prog: Any) -> str:
    """A compiled `Program` in a notebook: the layer table with its figures, and the generated step code."""
    net = prog.net
    train = net.ir.loss is not None
    s = net.summary(batch=prog.batch)
    rows = []
    for r in s.rows:
        rows.append(f"<tr><td>{_esc(r.name)}</td><td>{_esc(r.op)}</td><td>{_esc(str(r.output_shape))}</td>"
                    f"<td style='text-align:right'>{r.params:,}</td><td style='text-align:right'>{r.macs:,}</td></tr>")
    try:
        code = prog.code(train=train)
        peak = f"{prog.peak_bytes(train=train) / 2**20:.1f} MiB"
    except Exception as exc:  # noqa: BLE001 - show what failed instead of no output at all
        code, peak = f"# the step code could not be generated: {type(exc).__name__}: {exc}", "?"
    t = s.totals
    return (f"<div class='netdsl-program'><b>Program {_esc(net.name)}</b> ({_esc(net.source)}): batch ≤ "
            f"{prog.batch}, {prog.dtype}, {prog.device}; {t['params']:,} params, {t['macs']:,} MACs per example, "
            f"planned peak {peak} per {'training' if train else 'forward'} step"
            "<table style='font-size:12px'><tr><th>layer</th><th>op</th><th>output</th><th>params</th>"
            f"<th>MACs</th></tr>{''.join(rows)}</table>"
            f"<details><summary>generated step code ({len(code.splitlines())} lines)</summary>"
            f"<pre style='font-size:11px'>{_esc(code)}</pre></details></div>")
