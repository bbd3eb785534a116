"""`netdsl diff A.net B.net`: what changed between two networks, and which parameters of A load into B.

Layers are matched by name (label paths: `layer3.1.conv2`). A layer of B whose block use does not exist in A at
all is reported with its block (`+ layer3.2 Basic`), not layer by layer; likewise for removals. A layer present
in both is "changed" when its op, settings, output shapes or parameter shapes differ, or when it now reads from
a layer that already existed (rewiring; reading from an added layer is a consequence of the addition and not
listed). `loadable` is the pure function fine-tuning uses: which parameters of a checkpoint load into a network
(same name and same shape), and why the others do not.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ir import IR, Node


@dataclass
class Group:
    """Layers added (or removed) together: a whole block use, or a single layer."""

    name: str
    kind: str  # the block name, or the op of a single layer
    layers: list[str]
    params: int
    shape: str
    where: str


@dataclass
class Change:
    name: str
    what: list[str]
    params_a: int
    params_b: int
    where: str
    shape_only: bool = False  # only its output shape changed (a consequence of a change upstream)


@dataclass
class Diff:
    a: str
    b: str
    added: list[Group] = field(default_factory=list)
    removed: list[Group] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    params_a: int = 0
    params_b: int = 0

    @property
    def params_delta(self) -> int:
        return self.params_b - self.params_a

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "params": {"a": self.params_a, "b": self.params_b,
                                                     "delta": self.params_delta},
                "added": [g.__dict__ for g in self.added], "removed": [g.__dict__ for g in self.removed],
                "changed": [c.__dict__ for c in self.changed]}


# ---------------------------------------------------------------------- the comparison


def _layers(ir: IR, out: dict[str, tuple[IR, Node]] | None = None) -> dict[str, tuple[IR, Node]]:
    out = {} if out is None else out
    for n in ir:
        if n.op == "const":
            continue
        if n.op == "input" and ir is not None and n.name in out:
            continue
        out.setdefault(n.name, (ir, n))
        if n.body is not None:
            _layers(n.body, out)
    return out


def _own_params(ir: IR, n: Node) -> dict[str, tuple[int, ...]]:
    return {role: ir.params[p].shape for role, p in n.params.items()}


def _count(ir: IR, names: list[str], seen: set[str] | None = None) -> int:
    seen = set() if seen is None else seen
    total = 0
    for p in names:
        spec = ir.params.get(p)
        if spec is None or spec.state or p in seen:
            continue
        seen.add(p)
        total += spec.size
    return total


def _where(n: Node) -> str:
    return f"{n.span.file}:{n.span.line}" if n.span is not None else ""


def _attrs(n: Node) -> dict[str, Any]:
    return {k: v for k, v in n.attrs.items() if not k.startswith("_") and not isinstance(v, IR)}


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _shapes(n: Node) -> str:
    return ", ".join(t.spec() for t in n.outputs)


def _groups(mine: dict[str, tuple[IR, Node]], names: list[str], other_uses: set[str]) -> list[Group]:
    """Added (or removed) layers, grouped by the outermost block use the other network does not have."""
    groups: dict[str, Group] = {}
    seen: set[str] = set()
    for name in names:
        ir, n = mine[name]
        use = next((u for u in n.uses if u.label not in other_uses), None)
        params = list(n.params.values())
        if n.body is not None:
            params += [p for m in n.body for p in m.params.values()]
        if use is None:
            groups[name] = Group(name, n.op, [name], _count(ir, params, seen), _shapes(n), _where(n))
            continue
        g = groups.get("use:" + use.label)
        if g is None:
            g = groups["use:" + use.label] = Group(use.label, use.block, [], 0, "",
                                                   f"{use.span.file}:{use.span.line}")
        g.layers.append(name)
        g.params += _count(ir, params, seen)
        g.shape = _shapes(n)  # the last layer's (the block's output, for a block returning one value)
    return list(groups.values())


def diff(a: Any, b: Any) -> Diff:
    """Compare two loaded networks (`Net`s)."""
    la, lb = _layers(a.ir), _layers(b.ir)
    uses_a = {u.label for _, n in la.values() for u in n.uses}
    uses_b = {u.label for _, n in lb.values() for u in n.uses}
    d = Diff(f"{a.name} ({a.source})", f"{b.name} ({b.source})")
    d.params_a = sum(p.size for p in a.ir.params.values() if not p.state)
    d.params_b = sum(p.size for p in b.ir.params.values() if not p.state)
    d.added = _groups(lb, [k for k in lb if k not in la], uses_a)
    d.removed = _groups(la, [k for k in la if k not in lb], uses_b)
    for name, (ib, nb) in lb.items():
        if name not in la:
            continue
        ia, na = la[name]
        what: list[str] = []
        if na.op != nb.op:
            what.append(f"op {na.op} → {nb.op}")
        else:
            aa, ab = _attrs(na), _attrs(nb)
            for k in list(dict.fromkeys(list(aa) + list(ab))):
                if aa.get(k) != ab.get(k):
                    what.append(f"{k} {_fmt(aa.get(k, '-'))} → {_fmt(ab.get(k, '-'))}")
        if [t for t in na.outputs] != [t for t in nb.outputs]:
            what.append(f"output {_shapes(na)} → {_shapes(nb)}")
        pa, pb = _own_params(ia, na), _own_params(ib, nb)
        for role in list(dict.fromkeys(list(pa) + list(pb))):
            if pa.get(role) != pb.get(role):
                sa = list(pa[role]) if role in pa else "none"
                sb = list(pb[role]) if role in pb else "none"
                what.append(f"{role} {sa} → {sb}".replace("'", ""))
        src_a = [ia.node(v.node).name for v in na.inputs]
        src_b = [ib.node(v.node).name for v in nb.inputs]
        if src_a != src_b and all(s in la for s in src_b):
            what.append(f"inputs {', '.join(src_a)} → {', '.join(src_b)}")
        if what:
            shape_only = all(w.startswith("output ") for w in what)
            d.changed.append(Change(name, what, _count(ia, list(na.params.values())),
                                    _count(ib, list(nb.params.values())), _where(nb), shape_only))
    return d


def _signed(n: int) -> str:
    return f"+{n:,}" if n >= 0 else f"−{-n:,}"


def format_diff(d: Diff, a: Any = None, b: Any = None) -> str:
    lines = [f"diff {d.a} → {d.b}"]

    def groups(title: str, sign: str, gs: list[Group], mult: int) -> None:
        nb = sum(1 for g in gs if len(g.layers) > 1 or g.kind[:1].isupper())
        lines.append(f"{title}: {len(gs)}" + (f" ({nb} blocks, {sum(len(g.layers) for g in gs)} layers)" if nb else ""))
        if not gs:
            return
        w = max(len(g.name) for g in gs)
        k = max(len(g.kind) for g in gs)
        s = max(len(g.shape) for g in gs)
        for g in gs:
            extra = f"{len(g.layers)} layers" if len(g.layers) > 1 else ""
            lines.append(f"  {sign} {g.name:<{w}}  {g.kind:<{k}}  {g.shape:<{s}}  {_signed(mult * g.params):>12} params"
                         f"  {extra:<10} {g.where}".rstrip())

    groups("added", "+", d.added, 1)
    groups("removed", "-", d.removed, -1)
    for title, items in (("changed", [c for c in d.changed if not c.shape_only]),
                         ("shapes changed (settings unchanged)", [c for c in d.changed if c.shape_only])):
        if not items and title.startswith("shapes"):
            continue
        lines.append(f"{title}: {len(items)}")
        for c in items:
            delta = c.params_b - c.params_a
            p = f"; params {c.params_a:,} → {c.params_b:,} ({_signed(delta)})" if delta else ""
            lines.append(f"  ~ {c.name}: {'; '.join(c.what)}{p}  {c.where}")
    lines.append(f"parameters: {d.params_a:,} → {d.params_b:,} ({_signed(d.params_delta)})")
    return "\n".join(lines)


# ---------------------------------------------------------------------- loading parameters (fine-tuning)


def loadable(params_a: dict[str, Any], net_b: Any) -> tuple[list[str], dict[str, str]]:
    """Which parameters of A (name → shape, e.g. from a checkpoint) load into network B.

    Returns (loaded, skipped): `loaded` lists B's parameter names (running statistics included) whose name and
    shape match in A, in B's order; `skipped` maps every other name to the reason — a parameter of B missing
    from A or shaped differently (it keeps its initial value), or a parameter of A that B does not have.
    """
    loaded: list[str] = []
    skipped: dict[str, str] = {}
    for name, spec in net_b.ir.params.items():
        if name not in params_a:
            skipped[name] = "not in the checkpoint: keeps its initial value"
            continue
        have = tuple(int(x) for x in params_a[name])
        if have != tuple(spec.shape):
            skipped[name] = (f"shape {list(have)} in the checkpoint, {list(spec.shape)} in {net_b.name}: keeps its "
                             "initial value")
            continue
        loaded.append(name)
    for name in params_a:
        if name not in net_b.ir.params:
            skipped[name] = f"not in {net_b.name}: ignored"
    return loaded, skipped


def checkpoint_shapes(where: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], str]:
    """Parameter name → shape of a checkpoint (a manifest, its .npz, a run directory, or a plain .npz of arrays
    by name), read from the manifest or the arrays' headers without loading the values."""
    from .diagnostics import Diagnostic, SpecError

    p = Path(where).expanduser()
    manifest: dict[str, Any] | None = None
    try:
        from .runtime import checkpoint as ck

        mpath = ck.locate(p)
        import json

        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        npz = mpath.parent / str(manifest.get("arrays", ""))
        shown = str(mpath)
    except ImportError:
        npz, shown = p, str(p)
    except SpecError:
        if p.suffix != ".npz" or not p.is_file():
            raise
        npz, shown = p, str(p)
    except (OSError, ValueError) as exc:
        raise SpecError(Diagnostic(None, f"{where}: cannot read the checkpoint: {exc}")) from None
    if manifest and isinstance(manifest.get("param_shapes"), dict):
        return {k: tuple(v) for k, v in manifest["param_shapes"].items()}, shown
    try:
        heads = _npz_shapes(npz)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SpecError(Diagnostic(None, f"{npz}: cannot read the checkpoint's arrays: {exc}")) from None
    if any(k.startswith("param/") for k in heads):
        return {k[len("param/"):]: s for k, s in heads.items() if k.startswith("param/")}, shown
    return heads, shown


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    import numpy as np

    out: dict[str, tuple[int, ...]] = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(f)
            out[info.filename[:-4]] = tuple(shape)
    return out
