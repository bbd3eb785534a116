"""`netdsl summary`: per-layer table (name, op, output shape, params, MACs, activation bytes) and totals."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import ops
from .diagnostics import InternalError
from .ir import IR, Node, TensorType

HIDDEN_OPS = {"input", "const"}


@dataclass
class Row:
    name: str
    op: str
    block: str
    output_shape: list[int]
    params: int
    macs: int
    activation_bytes: int
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "block": self.block, "output_shape": self.output_shape,
                "params": self.params, "macs": self.macs, "activation_bytes": self.activation_bytes}


@dataclass
class Summary:
    network: str
    source: str
    batch: int
    inputs: dict[str, dict[str, Any]]
    rows: list[Row]
    totals: dict[str, int] = field(default_factory=dict)
    loss_rows: list[Row] = field(default_factory=list)  # layers that only compute the loss

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "inputs": self.inputs, "layers": [r.to_dict() for r in self.rows],
                "loss_layers": [r.to_dict() for r in self.loss_rows], "totals": dict(self.totals)}

    def to_json(self) -> str:
        """One layer per line: readable, and json's C encoder (which `indent` turns off) keeps a 10,000-layer
        summary fast."""
        d = self.to_dict()
        lines = ["{"]
        for i, key in enumerate(d):
            sep = "," if i < len(d) - 1 else ""
            value = d[key]
            if key in ("layers", "loss_layers") and value:
                rows = ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in value)
                lines.append(f' "{key}": [\n  {rows}\n ]{sep}')
            else:
                lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{sep}")
        lines.append("}")
        return "\n".join(lines)

    def __str__(self) -> str:
        head = ("name", "op", "output", "params", "MACs", "activations")
        table = [head] + [(r.name, r.op, _shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                           _bytes(r.activation_bytes)) for r in self.rows + self.loss_rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        right = {3, 4, 5}
        lines = [f"{self.network} ({self.source}), batch {self.batch}"]
        for k, (row) in enumerate(table):
            if k == len(self.rows) + 1 and self.loss_rows:
                lines.append("  ".join("-" * w for w in widths) + "  (loss)")
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        t = self.totals
        lines.append("")
        lines.append(f"params: {t['params']:,} ({t['trainable_params']:,} trainable)")
        lines.append(f"MACs per example: {t['macs']:,}")
        lines.append(f"activations at batch {self.batch}: {_bytes(t['activation_bytes'])}")
        lines.append(f"training step memory at batch {self.batch} (planned peak): {_bytes(t['train_memory_bytes'])}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _shape(s: list[int]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def itemsize(t: TensorType) -> int:
    return 8 if t.is_int else 4


def node_macs(ir: IR, n: Node) -> int:
    """MACs of one node per example; an unroll counts its cell's work once per step."""
    if n.body is not None:
        return n.attrs["steps"] * sum(node_macs(n.body, m) for m in n.body)
    opdef = ops.get(n.op)
    if opdef is None:
        return 0
    return opdef.count_macs(n.attrs, [ir.type_of(v) for v in n.inputs], n.outputs[0])


def node_flops(ir: IR, n: Node) -> int:
    if n.body is not None:
        return n.attrs["steps"] * sum(node_flops(n.body, m) for m in n.body)
    opdef = ops.get(n.op)
    if opdef is None:
        return 0
    return opdef.count_flops(n.attrs, [ir.type_of(v) for v in n.inputs], n.outputs[0])


def node_param_names(n: Node) -> list[str]:
    names = list(n.params.values())
    if n.body is not None:
        for m in n.body:
            names.extend(node_param_names(m))
    return names


def summarize(net: Any, batch: int = 1, depth: int | None = None, memory: bool = True) -> Summary:
    """The per-layer table and totals; `memory=False` skips planning a training step (for `netdsl check`)."""
    ir: IR = net.ir
    counted: set[str] = set()
    rows: list[Row] = []
    loss_rows: list[Row] = []
    folded: dict[str, Row] = {}
    # nodes that only serve the loss are listed apart, so `layers` ends with the network's output
    feeds_outputs = _reaching(ir, list(ir.outputs.values())) if ir.outputs else None
    for n in ir:
        if n.op in HIDDEN_OPS:
            continue
        own = 0
        for p in node_param_names(n):
            spec = ir.params[p]
            if p not in counted and not spec.state:
                counted.add(p)
                own += spec.size
        act = sum(t.size * itemsize(t) * (batch if t.batched else 1) for t in n.outputs)
        row = Row(n.name, n.op, n.block, list(n.outputs[0].shape), own, node_macs(ir, n), act,
                  n.span.line if n.span else 0)
        if depth is not None and len(n.uses) > depth:
            use = n.uses[depth]
            key = use.label
            if key in folded:
                f = folded[key]
                f.params += row.params
                f.macs += row.macs
                f.activation_bytes += row.activation_bytes
                f.output_shape = row.output_shape
                continue
            row = Row(key, use.block, n.uses[depth - 1].label if depth > 0 else "", row.output_shape, row.params,
                      row.macs, row.activation_bytes, use.span.line)
            folded[key] = row
        (rows if feeds_outputs is None or n.id in feeds_outputs else loss_rows).append(row)
    params = [p for p in ir.params.values() if not p.state]
    totals = {
        "params": sum(p.size for p in params),
        "trainable_params": sum(p.size for p in params if p.trainable),
        "macs": sum(node_macs(ir, n) for n in ir),
        "activation_bytes": sum(r.activation_bytes for r in rows + loss_rows),
        "train_memory_bytes": train_memory_bytes(net, batch) if memory else 0,
    }
    inputs = {}
    for name, nid in ir.inputs.items():
        t = ir.node(nid).outputs[0]
        inputs[name] = {"shape": list(t.shape), "dtype": "int64" if t.is_int else "float32"}
    return Summary(net.name, net.source, batch, inputs, rows, totals, loss_rows)


def _reaching(ir: IR, targets: list[Any]) -> set[int]:
    live = {v.node for v in targets}
    for n in reversed(list(ir)):
        if n.id in live:
            live.update(v.node for v in n.inputs)
    return live


def train_memory_bytes(net: Any, batch: int) -> int:
    """The planned peak of one training step (the compiler's buffer plan, which needs no Numba)."""
    try:
        from .compiler.plan import planned_peak_bytes
    except ImportError:  # the compiler's planner is not there yet: a conservative estimate
        return _estimate_memory(net, batch)
    try:
        return planned_peak_bytes(net, batch)
    except InternalError:  # the planner cannot lower some op yet (`netdsl compile` reports it): the estimate
        return _estimate_memory(net, batch)


def _estimate_memory(net: Any, batch: int) -> int:
    acts = sum(t.size * itemsize(t) for n in net.ir for t in n.outputs if t.batched)
    params = sum(p.size * 4 for p in net.ir.params.values())
    return 3 * params + 2 * acts * batch
