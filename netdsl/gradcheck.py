"""`netdsl check --gradcheck SPEC`: a finite-difference check of every node's generated backward, in float64.

Each node is checked through its own parameters and through a *probe* on each of its float operands: a zero
tensor δ added to the operand (`x + δ`, one δ per operand, broadcast over the batch), itself a trainable
parameter, so the generated backward computes ∂loss/∂δ — the gradient the node passes to that operand,
summed over the batch — and two-sided differences of the train-mode loss in δ check it. Probes are inserted
into a copy of the IR and lowered with two temporary rules (`add_forward`/`add_backward` kernels); the
network's own IR, rules and kernels are untouched.

Each node's tensors (its parameters and the probes on its operands) are checked together along a random
direction d (a unit direction in each tensor, scaled by 1/√count): two forwards give
(L(p + eps·d) − L(p − eps·d)) / 2eps, compared with g·d. A deep network has hundreds of nodes, and one
direction per node costs two forwards where an entry-by-entry check costs two per entry of every tensor. Only
where that fails are the node's tensors checked one by one, each along its own random direction, and a tensor
that fails again entry by entry (a few two-sided differences, most where the generated gradient is not zero,
one anywhere), to name the entry that is wrong; so is a tensor where every direction tried crosses a kink.
The probes on a max-pool's operands start at small random values, not zero (`_break_ties`): over windows of
relu zeros the loss has a kink at the very point checked, in every direction, and the generated gradient is
one valid subgradient that no difference need match.

A node's check depends on the gradient arriving at its output, so a wrong backward makes every node upstream
fail as well. A failing node is *the culprit* when every check of its output's gradient (the probes on its
users' operands) passes; the others are reported as failing through it.

A difference that fails is tried again with steps ten and a hundred times smaller (fewer kinks crossed), and
passes if it passes at either. Otherwise it is skipped (another direction or entry is drawn) when the loss is
not smooth there: when its two one-sided differences disagree — by more than the discrepancy, or by more than
0.1 % (a relu or max-pool kink within ±eps) — or when, with a smaller step,
the discrepancy shrinks to under a third or the difference itself moves by more than a third of the
discrepancy (many kinks crossed: an early weight of a deep relu network moves thousands of units; in
ResNet-152 at batch 2 one weight's differences at steps 1e-5, 1e-6 and 1e-7 were 65.55, 67.07 and 66.79
around a gradient of 65.87). A wrong gradient at a smooth point keeps its discrepancy at every step.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .ir import IR, Node, ParamSpec, Value

PROBE_OP = "gradcheck_probe"
PROBE_PREFIX = "__gradcheck__."
RTOL = 1e-6
ATOL = 1e-9
EPS = 1e-5
KINK = 1e-3  # one-sided differences further apart than this (relative) straddle a kink
TIE_OPS = ("maxpool",)  # ops whose backward picks one of tied inputs
TIE_BREAK = 1e-3  # probes on their operands start at uniform(-1, 1) times this, not at zero


@dataclass
class Check:
    """One tensor checked: a parameter, or the probe on operand `operand` of a node."""

    tensor: str  # parameter name, or the probe's name
    what: str  # "weight", "input 0", …
    node: int  # IR node id
    worst: float = 0.0  # |fd − g| / (rtol·(|fd| + |g|) + atol); passes when ≤ 1
    detail: tuple[int, float, float] | None = None  # (flat index, fd, g) of the worst entry
    entries: int = 0
    skipped: int = 0
    reads: Value | None = None  # for a probe: the value it perturbs (the gradient of that value's producer)
    seen: set[int] = field(default_factory=set)
    shared: list[int] = field(default_factory=list)  # other nodes using the same parameter


@dataclass
class NodeResult:
    node: Node
    checks: list[Check] = field(default_factory=list)
    status: str = "ok"  # ok | FAIL (the culprit) | fails-through | unchecked
    through: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max((c.worst for c in self.checks), default=0.0)

    @property
    def worst_check(self) -> Check | None:
        return max(self.checks, key=lambda c: c.worst, default=None)


@dataclass
class Report:
    net: Any
    batch: int
    entries: int
    eps: float
    nodes: list[NodeResult]
    seconds: float = 0.0
    directions: int = 1

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.nodes if r.status == "FAIL"]

    @property
    def ok(self) -> bool:
        return not any(r.status in ("FAIL", "fails-through") for r in self.nodes)


# ====================================================================== probes


def _probe_fwd(ctx: Any, n: Node, ins: list[Any], out: Any) -> None:
    v = _view(ctx.shape_of(n.inputs[0]))
    ctx.emit("elementwise.add_forward", ctx.view(ins[0], v), ctx.param(n, "delta"), ctx.view(out, v))


def _probe_bwd(ctx: Any, n: Node, ins: list[Any], out: Any, gout: Any, gins: list[Any]) -> None:
    from .compiler.rules import _empty

    v = _view(ctx.shape_of(n.inputs[0]))
    gd = ctx.pgrad(n, "delta")
    ga, need_a = (ctx.view(gins[0], v), True) if gins[0] is not None else (_empty(ctx, len(v)), False)
    gb, need_b = (gd, True) if gd is not None else (_empty(ctx, len(v)), False)
    ctx.emit("elementwise.add_backward", ctx.view(gout, v), ctx.view(ins[0], v), ctx.param(n, "delta"), ga, gb,
             need_a, need_b)


def _view(t: Any) -> tuple[Any, ...]:
    return (("B",) if t.batched else (1,)) + tuple(t.shape)


@contextlib.contextmanager
def probe_rules() -> Iterator[None]:
    """The probe op's lowering rules, installed only while a probed program compiles and runs."""
    from .compiler import rules

    rules.FORWARD[PROBE_OP] = _probe_fwd
    rules.BACKWARD[PROBE_OP] = _probe_bwd
    try:
        yield
    finally:
        rules.FORWARD.pop(PROBE_OP, None)
        rules.BACKWARD.pop(PROBE_OP, None)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Thousands of small forward passes: threads cost more than they give (and the results do not change)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _on_loss_path(ir: IR) -> set[int]:
    if ir.loss is None:
        return set()
    live = {ir.loss.node}
    for n in reversed(list(ir)):
        if n.id in live:
            live.update(v.node for v in n.inputs)
    return live


def probed(net: Any) -> tuple[Any, dict[str, Check]]:
    """A copy of the network with a probe before every float operand on the loss path, and the checks."""
    from .net import Net

    old = net.ir
    live = _on_loss_path(old)
    ir = IR(params=dict(old.params))
    vmap: dict[Value, Value] = {}
    checks: dict[str, Check] = {}
    for n in old:
        inputs = []
        for k, v in enumerate(n.inputs):
            nv = vmap[v]
            t = old.type_of(v)
            if n.id in live and not t.is_int and t.rank <= 4:
                pname = f"{PROBE_PREFIX}{n.name or n.id}.{k}"
                ir.add_param(ParamSpec(pname, (1,) + tuple(t.shape), ("const", 0.0), trainable=True))
                pid = ir.add(PROBE_OP, [nv], {}, n.span, [t], params={"delta": pname}, name=f"{n.name}/probe{k}",
                             uses=n.uses, block=n.block)
                nv = Value(pid)
                what = f"input {k}" if len(n.inputs) > 1 else "input"
                checks[pname] = Check(pname, what, n.id, reads=v)
            inputs.append(nv)
        nid = ir.add(n.op, inputs, n.attrs, n.span, n.outputs, params=dict(n.params), name=n.name, uses=n.uses,
                     block=n.block, body=n.body)
        if n.op == "input":
            ir.inputs[n.attrs.get("name", n.name)] = nid
        for i in range(len(n.outputs)):
            vmap[Value(n.id, i)] = Value(nid, i)
    ir.outputs = {k: vmap[v] for k, v in old.outputs.items()}
    ir.loss = vmap[old.loss] if old.loss is not None else None
    for n in old:
        if n.id not in live:
            continue
        for role, p in _params(n):
            spec = old.params[p]
            if not spec.trainable or spec.state:
                continue
            if p not in checks:
                checks[p] = Check(p, role, n.id)
            elif n.id != checks[p].node and n.id not in checks[p].shared:
                checks[p].shared.append(n.id)  # a shared weight (let, tied embedding): checked for every user
    copy = Net(net.name, ir, net.values, net.recipe, net.source, net.text, net.span)
    return copy, checks


def _params(n: Node) -> list[tuple[str, str]]:
    out = list(n.params.items())
    if n.body is not None:
        for m in n.body:
            out.extend((f"{m.name}.{r}" if m.name else r, p) for r, p in _params(m))
    return out


# ====================================================================== the check


def feeds(net: Any, batch: int, seed: int = 0) -> dict[str, Any]:
    """Random float64 inputs ~ N(0, 1); integer inputs in range of the logits or vocabulary they meet."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ir = net.ir
    ranges: dict[int, int] = {}
    for n in ir:
        if n.op == "cross_entropy" and len(n.inputs) > 1:
            ranges[n.inputs[1].node] = ir.type_of(n.inputs[0]).shape[-1]
        if n.op in ("embedding",) and "vocab" in n.attrs:
            ranges[n.inputs[0].node] = n.attrs["vocab"]
    out = {}
    for name, nid in ir.inputs.items():
        t = ir.node(nid).outputs[0]
        if t.is_int:
            out[name] = rng.integers(0, ranges.get(nid, 2), size=(batch,) + t.shape).astype(np.int64)
        else:
            out[name] = rng.standard_normal((batch,) + t.shape)
    return out


def gradcheck(net: Any, batch: int = 2, entries: int = 3, eps: float = EPS, seed: int = 0, fuse: bool = True,
              progress: Any = None, directions: int = 1) -> Report:
    """Check every node's backward (see the module's docstring). Raises SpecError when the spec has no loss.

    Each node's tensors are checked together along `directions` random directions (two forwards each); where
    that fails, tensor by tensor; a tensor whose own check fails at a smooth point, or where every direction
    tried crosses a kink, entry by entry (up to `entries` entries, two forwards each), naming the entry."""
    import numpy as np

    import netdsl

    from .diagnostics import Diagnostic, SpecError

    if net.ir.loss is None:
        raise SpecError(Diagnostic(None, f"network {net.name} declares no loss: there is no gradient to check"))
    t0 = time.perf_counter()
    copy, checks = probed(net)
    x = feeds(net, batch, seed)
    rng = np.random.default_rng(seed)
    with probe_rules(), _one_thread():
        prog = netdsl.compile(copy, batch=batch, dtype="float64", fuse=fuse)
        _break_ties(prog, net, checks, seed)
        _, grads = prog.loss_and_grads(x, seed=0, update_stats=False)
        base = prog.loss(x, train=True)
        groups: dict[int, list[Check]] = {}  # a node's tensors: its parameters and the probes on its operands
        for c in checks.values():
            groups.setdefault(c.node, []).append(c)
        done = 0
        for group in groups.values():
            if progress is not None:
                progress(done, len(checks), group[0])
            done += len(group)
            flat = [(prog.params[c.tensor].reshape(-1), grads[c.tensor].reshape(-1)) for c in group]
            if len(group) > 1 and _directions(prog, x, base, group, flat, eps, rng, directions):
                continue
            for c, (p, g) in zip(group, flat, strict=True):
                if _directions(prog, x, base, [c], [(p, g)], eps, rng, directions):
                    continue
                _entries(prog, x, base, c, p, g, eps, rng, entries)
    results = _attribute(net, checks)
    return Report(net, batch, entries, eps, results, time.perf_counter() - t0, directions)


def _break_ties(prog: Any, net: Any, checks: dict[str, Check], seed: int) -> None:
    """Start the probes on max-pool operands at small random values: a window of relu zeros ties exactly, the
    loss then has a kink at the very point checked in every direction that moves it, and the backward's choice
    of one tied input is a valid subgradient no difference matches (GoogLeNet at 64x64 has 7,040 such windows
    of 16,384 in one stage). Offset by TIE_BREAK, no two inputs tie, and every step of the check stays on one
    side of each window's kinks but a few (which the kink test sees)."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)  # its own stream: the directions drawn stay those of an untied net
    for c in checks.values():
        if c.reads is not None and net.ir.node(c.node).op in TIE_OPS:
            p = prog.params[c.tensor]
            p[...] = TIE_BREAK * rng.uniform(-1.0, 1.0, p.shape)


def _directions(prog: Any, x: dict[str, Any], base: float, cs: list[Check], flat: list[tuple[Any, Any]],
                eps: float, rng: Any, want: int) -> bool:
    """Two-sided differences along random directions d over the tensors `flat` ((values, gradient) pairs, all
    moved at once, a unit direction in each scaled by 1/√count): (L(p + eps·d) − L(p − eps·d)) / 2eps against
    g·d. True when `want` directions passed; False when one failed at a smooth point (a wrong gradient, to be
    pinned down tensor by tensor, then entry by entry) or when every direction tried crossed a kink."""
    import numpy as np

    passed = tried = 0
    while passed < want and tried < 2 * want + 1:
        tried += 1
        ds = []
        for p, _ in flat:
            d = rng.standard_normal(p.size)
            ds.append(d / (np.linalg.norm(d) * math.sqrt(len(flat))))
        gd = sum(float(g @ d) for (_, g), d in zip(flat, ds, strict=True))
        got = _difference(prog, x, base, [(p, d) for (p, _), d in zip(flat, ds, strict=True)], gd, eps)
        if got is None:
            cs[0].skipped += 1
            continue
        ratio, fd = got
        if ratio > 1 and len(cs) > 1:
            return False  # which of the tensors is wrong: each is checked on its own
        for c in cs:
            c.entries += 1
            if ratio >= c.worst:
                c.worst, c.detail = ratio, (-1, fd, gd)
        if ratio > 1:
            return False
        passed += 1
    return passed >= want


def _difference(prog: Any, x: dict[str, Any], base: float, moves: list[tuple[Any, Any]], gd: float,
                eps: float) -> tuple[float, float] | None:
    """(err/tol, fd) of the two-sided difference moving each tensor p along its d, or None where the loss is
    not smooth.

    A difference that fails at eps is tried again with steps ten and a hundred times smaller, which cross
    fewer kinks: it passes if it passes at either. It is not smooth when the one-sided differences at eps
    disagree (a relu or max-pool kink) or, at a smaller step, the discrepancy shrinks to under a third or the
    difference moves by more than a third of it (many kinks crossed); otherwise the gradient is wrong: its discrepancy stays at every step."""
    import numpy as np

    olds = [p.copy() for p, _ in moves]
    try:
        up, down = _shifted(prog, x, moves, olds, (eps, -eps))
        fd = (up - down) / (2 * eps)
        err = abs(fd - gd)
        tol = RTOL * (abs(fd) + abs(gd)) + ATOL
        if err <= tol:
            return err / tol, fd
        fwd, bwd = (up - base) / eps, (base - down) / eps
        kink = abs(fwd - bwd)
        noise = 4 * float(np.spacing(abs(base))) / eps  # the loss's rounding, seen through one-sided differences
        rough = kink >= err or kink > KINK * (abs(fwd) + abs(bwd)) + noise
        for h in (eps / 10, eps / 100):
            up2, down2 = _shifted(prog, x, moves, olds, (h, -h))
            fd2 = (up2 - down2) / (2 * h)
            err2 = abs(fd2 - gd)
            tol2 = RTOL * (abs(fd2) + abs(gd)) + ATOL
            if err2 <= tol2:
                return err2 / tol2, fd2
            # many kinks crossed: the discrepancy shrinks with the step, or the estimates themselves move by
            # more than a third of it (a wrong gradient at a smooth point keeps both estimate and discrepancy)
            rough = rough or err2 < err / 3 or abs(fd2 - fd) > err / 3
        return None if rough else (err / tol, fd)
    finally:
        for (p, _), old in zip(moves, olds, strict=True):
            p[...] = old


def _shifted(prog: Any, x: dict[str, Any], moves: list[tuple[Any, Any]], olds: list[Any],
             steps: tuple[float, ...]) -> list[float]:
    out = []
    for h in steps:
        for (p, d), old in zip(moves, olds, strict=True):
            p[...] = old + h * d
        out.append(prog.loss(x, train=True))
    for (p, _), old in zip(moves, olds, strict=True):
        p[...] = old
    return out


def _entries(prog: Any, x: dict[str, Any], base: float, c: Check, p: Any, g: Any, eps: float, rng: Any,
             entries: int) -> None:
    """Two-sided differences entry by entry: most where the generated gradient is not zero (a max-pool or relu
    zeroes many, and a check there says little), one anywhere (a gradient wrongly left at zero). Up to twice
    `entries` entries are tried per pool (up to eight times as many while none has counted), entries where
    the loss is not smooth being skipped."""
    import numpy as np

    nonzero = np.flatnonzero(g)
    want_nz = min(entries - 1 if entries > 1 else entries, nonzero.size)
    counted = 0
    for pool, want in ((rng.permutation(nonzero), want_nz), (rng.permutation(p.size), entries)):
        tried = 0
        for i in pool:
            # where every entry so far crossed kinks, keep drawing (up to 8x): a tensor of a deep relu network
            # (ResNet-152's first blocks) has smooth entries, but fewer of them
            limit = 8 * entries if counted == 0 else 2 * entries
            if counted >= want or tried >= limit:
                break
            if i in c.seen:
                continue
            tried += 1
            c.seen.add(int(i))
            counted += _entry(prog, x, base, c, p, g, int(i), eps)


def _entry(prog: Any, x: dict[str, Any], base: float, c: Check, p: Any, g: Any, i: int, eps: float) -> int:
    """One entry's two-sided difference; 1 when it counts, 0 when skipped (the loss is not smooth there)."""
    got = _difference(prog, x, base, [(p, _unit(p.size, i))], float(g[i]), eps)
    if got is None:
        c.skipped += 1
        return 0
    ratio, fd = got
    c.entries += 1
    if ratio >= c.worst or (c.detail is not None and c.detail[0] < 0 and ratio > 1):
        c.worst, c.detail = max(ratio, c.worst), (i, fd, float(g[i]))
    return 1


def _unit(n: int, i: int) -> Any:
    import numpy as np

    d = np.zeros(n)
    d[i] = 1.0
    return d


def _attribute(net: Any, checks: dict[str, Check]) -> list[NodeResult]:
    ir = net.ir
    by_node: dict[int, NodeResult] = {n.id: NodeResult(n) for n in ir if n.op not in ("input",)}
    for c in checks.values():
        for nid in [c.node, *c.shared]:
            by_node[nid].checks.append(c)
    # a node's output gradient is checked by the probes on its users' operands
    out_checks: dict[int, list[Check]] = {}
    for c in checks.values():
        if c.reads is not None:
            out_checks.setdefault(c.reads.node, []).append(c)
    for r in by_node.values():
        if not any(c.entries for c in r.checks):  # nothing, or only entries where the loss is not smooth
            r.status = "unchecked"
        elif r.worst > 1:
            r.status = "fails-through" if any(c.worst > 1 for c in out_checks.get(r.node.id, [])) else "FAIL"
    culprits = [r.node.name for r in by_node.values() if r.status == "FAIL"]
    for r in by_node.values():
        if r.status == "fails-through":
            r.through = _downstream_culprits(ir, r.node.id, by_node)
            if not r.through:
                r.through = culprits
    return [by_node[n.id] for n in ir if n.id in by_node]


def _downstream_culprits(ir: IR, nid: int, by_node: dict[int, NodeResult]) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    stack = [nid]
    while stack:
        x = stack.pop()
        for user, _, _ in ir.users(x):
            if user in seen:
                continue
            seen.add(user)
            r = by_node.get(user)
            if r is not None and r.status == "FAIL":
                out.append(r.node.name)
            stack.append(user)
    return sorted(set(out))


# ====================================================================== report


def _spec(n: Node) -> str:
    """The spec line of a node; for one written in the prelude (lstm, gru, rnn), the line that used it."""
    sp = n.span
    if sp is not None and sp.file.startswith("<"):
        sp = next((u.span for u in n.uses if not u.span.file.startswith("<")), sp)
    if sp is None:
        return ""
    return f"{sp.file}:{sp.line}  {sp.source.line(sp.line).strip()}"


def format_report(rep: Report) -> str:
    net = rep.net
    lines = [(f"gradcheck {net.name} ({net.source}): float64, batch {rep.batch}, two-sided differences with eps "
             f"{rep.eps:g} along {rep.directions} random direction(s) per node (its tensors moved together; where "
             f"that fails, tensor by tensor, then up to {rep.entries} entries one by one); a difference passes "
             f"when |fd − g| ≤ {RTOL:g}·(|fd| + |g|) + {ATOL:g}")]
    rows = [r for r in rep.nodes if r.status != "unchecked"]
    w = max([len(r.node.name) + len(r.node.op) + 3 for r in rows] + [4])
    lines.append(f"  {'':<4} {'err/tol':>8} {'|fd − g|':>9}  {'node':<{w}}  {'checked':<26}  spec")
    for r in rows:
        c = r.worst_check
        absdiff = abs(c.detail[1] - c.detail[2]) if c is not None and c.detail else 0.0
        mark = {"ok": "ok", "FAIL": "FAIL", "fails-through": "fail"}[r.status]
        what = ", ".join(dict.fromkeys(ch.what for ch in r.checks))
        what = what if len(what) <= 26 else what[:25] + "…"
        name = f"{r.node.name} ({r.node.op})"
        lines.append(f"  {mark:<4} {r.worst:8.3g} {absdiff:9.2e}  {name:<{w}}  {what:<26}  {_spec(r.node)}")
    unchecked = [r.node.name for r in rep.nodes if r.status == "unchecked" and r.node.op != "const" and not r.checks]
    if unchecked:
        lines.append(f"  not checked (no float operand or parameter on the loss path): {', '.join(unchecked[:12])}"
                     + (" …" if len(unchecked) > 12 else ""))
    rough = [r.node.name for r in rep.nodes if r.status == "unchecked" and r.checks]
    if rough:
        lines.append(f"  not checked (the loss is not smooth at any entry tried): {', '.join(rough[:12])}"
                     + (" …" if len(rough) > 12 else ""))
    n_entries = sum(c.entries for r in rep.nodes for c in r.checks)
    n_skipped = sum(c.skipped for r in rep.nodes for c in r.checks)
    skipped = f", {n_skipped} skipped where the loss is not smooth" if n_skipped else ""
    if rep.ok:
        worst = max((r.worst for r in rows), default=0.0)
        lines.append(f"gradcheck: ok — {len(rows)} nodes, {n_entries} entries{skipped}; worst err/tol {worst:.3g} "
                     f"({rep.seconds:.1f} s)")
    else:
        for r in rep.failed:
            c = r.worst_check
            assert c is not None and c.detail is not None
            i, fd, g = c.detail
            tensor = c.what if c.tensor.startswith(PROBE_PREFIX) else c.tensor
            others = [x.node.name for x in rep.nodes if x.status == "fails-through" and r.node.name in x.through]
            where = f"entry {i}" if i >= 0 else "along a random direction"
            lines.append(f"gradcheck: FAILED at node {r.node.name} ({r.node.op}): its backward is wrong — {tensor} "
                         f"{where}: finite difference {fd:.10g}, generated gradient {g:.10g} (err/tol "
                         f"{r.worst:.3g})")
            lines.append(f"  {_spec(r.node)}")
            for u in reversed(r.node.uses):
                lines.append(f"  in block {u.block}, used at {u.span} as {u.label}")
            if others:
                lines.append(f"  {len(others)} node(s) upstream fail through it: {', '.join(others[:8])}"
                             + (" …" if len(others) > 8 else ""))
        lines.append(f"gradcheck: {len(rep.failed)} failing node(s), {n_entries} entries{skipped} "
                     f"({rep.seconds:.1f} s)")
    return "\n".join(lines)


def cmd_gradcheck(args: Any, net: Any) -> int:
    """`netdsl check --gradcheck`: exit 1 and name the failing node when a check fails."""
    from .cli import UsageError

    batch = getattr(args, "batch", 2)
    entries = getattr(args, "entries", 3)
    directions = getattr(args, "directions", 1)
    if directions < 1:
        raise UsageError(f"--directions must be at least 1, found {directions}")
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, found {batch}")
    if entries < 1:
        raise UsageError(f"--entries must be at least 1, found {entries}")
    tty = sys.stderr.isatty()

    def progress(k: int, total: int, c: Check) -> None:
        if tty:
            print(f"\r  checking {k + 1}/{total}: {c.tensor[:60]:<60}", end="", file=sys.stderr, flush=True)

    if net.ir.loss is None:
        print(f"{args.spec}: gradcheck: nothing to check — network {net.name} declares no loss, so no backward "
              "is generated")
        return 0
    rep = gradcheck(net, batch=batch, entries=entries, directions=directions, progress=progress)
    if tty:
        print("\r" + " " * 80 + "\r", end="", file=sys.stderr, flush=True)
    print(format_report(rep))
    return 0 if rep.ok else 1


def worst_ratio(rep: Report) -> float:
    return max((r.worst for r in rep.nodes), default=math.nan)
