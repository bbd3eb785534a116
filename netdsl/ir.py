"""The IR: a thin class over a networkx MultiDiGraph that owns all access to it.

A node is one op instance (`Node`): op name, attributes, ordered inputs, output types, the parameters it uses
(by role → global parameter name, so sharing is two nodes naming the same parameter), its name (label path or
generated), and its span plus the chain of block uses it came through. Shapes are per example: the batch axis
is implicit. An `unroll` node holds its cell's body as a nested `IR` (`Node.body`), executed once per step.

Nothing outside this module touches the networkx graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .diagnostics import InternalError, Span, UseSite


@dataclass(frozen=True)
class TensorType:
    """A per-example tensor type. `batched=False` for values without a batch axis (constants, losses)."""

    shape: tuple[int, ...]
    dtype: str = "float32"  # "float32" (any float, the compile dtype) or "int64"
    batched: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_int(self) -> bool:
        return self.dtype == "int64"

    def __str__(self) -> str:
        prefix = "i64" if self.is_int else "f32"
        return f"{prefix}[{','.join(map(str, self.shape))}]" + ("" if self.batched else "!")

    def spec(self) -> str:
        """As written in a spec: `[16, 5, 5]` or `int[64]`."""
        return ("int" if self.is_int else "") + "[" + ", ".join(map(str, self.shape)) + "]"


@dataclass(frozen=True)
class Value:
    """Output `index` of node `node`."""

    node: int
    index: int = 0


@dataclass
class ParamSpec:
    """A parameter (or state such as batchnorm's running statistics) in the network's registry.

    init: ("uniform", bound) | ("normal", std) | ("const", c) | ("fixed", nested list values)
    """

    name: str
    shape: tuple[int, ...]
    init: tuple[str, Any]
    trainable: bool = True
    state: bool = False  # running statistics: saved and loaded, not trained, not counted as params
    span: Span | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Node:
    id: int
    op: str
    attrs: dict[str, Any]
    inputs: list[Value]
    outputs: list[TensorType]
    params: dict[str, str] = field(default_factory=dict)  # role ("weight") -> registry name ("c1.weight")
    name: str = ""
    span: Span | None = None
    uses: tuple[UseSite, ...] = ()
    block: str = ""  # the block-use path it sits in ("layer3.1"), for folding in summaries and graphs
    body: IR | None = None  # unroll: the cell's body, run once per time step

    @property
    def type(self) -> TensorType:
        return self.outputs[0]

    def where(self) -> str:
        if self.span is None:
            return ""
        text = self.span.source.line(self.span.line).strip()
        return f"{self.span.file}:{self.span.line} {text}" if text else str(self.span)


class IR:
    """A dataflow graph of `Node`s plus the network's interface (inputs, outputs, loss, parameters)."""

    def __init__(self, params: dict[str, ParamSpec] | None = None) -> None:
        self._g = nx.MultiDiGraph()
        self._nodes: dict[int, Node] = {}  # the graph's nodes by id, in creation order: a fast path for lookups
        self._next = 0
        self.inputs: dict[str, int] = {}  # input name -> node id (op "input")
        self.outputs: dict[str, Value] = {}
        self.loss: Value | None = None
        # shared by nested bodies so that a cell's parameters live in the network's one registry
        self.params: dict[str, ParamSpec] = params if params is not None else {}

    # ------------------------------------------------------------------ building
    def add(
        self,
        op: str,
        inputs: list[Value],
        attrs: dict[str, Any],
        span: Span | None,
        outputs: list[TensorType],
        **fields: Any,
    ) -> int:
        nid = self._next
        self._next += 1
        node = Node(nid, op, dict(attrs), list(inputs), list(outputs), span=span, **fields)
        self._g.add_node(nid, node=node)
        self._nodes[nid] = node
        for operand, v in enumerate(inputs):
            if v.node not in self._g:
                raise InternalError(f"input %{v.node} of new node {op} is not in the graph", span)
            self._g.add_edge(v.node, nid, key=operand, out=v.index)
        return nid

    def add_param(self, spec: ParamSpec) -> None:
        self.params[spec.name] = spec

    # ------------------------------------------------------------------ reading
    def node(self, nid: int) -> Node:
        return self._nodes[nid]

    def type_of(self, v: Value) -> TensorType:
        return self.node(v.node).outputs[v.index]

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def __iter__(self):
        return iter(list(self._nodes.values()))

    def toposort(self) -> list[int]:
        """Node ids in a topological order, ties broken by creation order (so source order).

        `add` only draws edges from existing nodes to the new, larger id, and nothing else rewires the graph, so
        creation order is that order: networkx's lexicographical sort gives the same list at ~50x the cost, which
        loading a 10,000-layer network paid on every pass over the IR."""
        return list(self._nodes)

    def users(self, nid: int) -> list[tuple[int, int, int]]:
        """(user node, operand index, output index of nid) for every use of nid's outputs."""
        return sorted((dst, key, data["out"]) for _, dst, key, data in self._g.out_edges(nid, keys=True, data=True))

    def remove(self, nid: int) -> None:
        if self.users(nid):
            raise InternalError(f"removing %{nid} which still has users")
        self._g.remove_node(nid)
        del self._nodes[nid]

    def nodes_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self if n.name}

    # ------------------------------------------------------------------ printing
    def pretty(self, indent: str = "") -> str:
        lines: list[str] = []
        from . import ops

        for n in self:
            outs = ", ".join(str(t) for t in n.outputs)
            opdef = ops.get(n.op)
            defaults = opdef.normalize({}) if opdef is not None and not opdef.required else {}
            if opdef is not None and opdef.required:
                defaults = {a.name: ops.check_attr(n.op, a, a.default) for a in opdef.attrs
                            if a.default is not ops.REQUIRED and a.default is not None
                            and not (isinstance(a.default, str) and a.default.startswith("="))}
            attrs = ",".join(f"{k}={_fmt(v)}" for k, v in n.attrs.items()
                             if not k.startswith("_") and (k not in defaults or defaults[k] != v) and v is not None)
            args = " ".join(f"%{v.node}" + (f".{v.index}" if v.index else "") for v in n.inputs)
            text = f"{indent}%{n.id}: {outs} = {n.op}" + (f"[{attrs}]" if attrs else "") + (f" {args}" if args else "")
            where = f"{n.span.file}:{n.span.line}" if n.span is not None else ""
            text = f"{text:<64}  # {where} {n.name}".rstrip()
            lines.append(text)
            if n.body is not None:
                lines.append(n.body.pretty(indent + "    "))
        if not indent:
            for name, v in self.outputs.items():
                lines.append(f"output {name} = %{v.node}" + (f".{v.index}" if v.index else ""))
            if self.loss is not None:
                lines.append(f"loss = %{self.loss.node}")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        if len(v) > 6:
            return "[…]"
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, IR):
        return "<body>"
    return str(v)


def verify(ir: IR) -> None:
    """Re-derive every shape from the op table and check the graph is well formed (run after every pass)."""
    from . import ops

    seen: set[int] = set()
    for n in ir:
        for v in n.inputs:
            if v.node not in seen:
                raise InternalError(f"%{n.id} uses %{v.node} before it is defined", n.span)
            if v.index >= len(ir.node(v.node).outputs):
                raise InternalError(f"%{n.id} uses missing output {v.index} of %{v.node}", n.span)
        seen.add(n.id)
        for role, pname in n.params.items():
            if pname not in ir.params:
                raise InternalError(f"%{n.id} parameter {role} -> {pname} is not registered", n.span)
        if n.op in ("input", "const", "unroll", "step_input"):
            continue
        opdef = ops.get(n.op)
        if opdef is None:
            raise InternalError(f"%{n.id} has unknown op {n.op}", n.span)
        in_types = [ir.type_of(v) for v in n.inputs]
        out = opdef.infer(n.attrs, in_types)
        if out != n.outputs[0]:
            raise InternalError(f"%{n.id} {n.op}: stored type {n.outputs[0]} but rule gives {out}", n.span)
        for role, shape in opdef.param_shapes(n.attrs, in_types).items():
            if role in n.params and ir.params[n.params[role]].shape != shape:
                raise InternalError(f"%{n.id} {n.op}: parameter {role} has the wrong shape", n.span)
    for v in list(ir.outputs.values()) + ([ir.loss] if ir.loss else []):
        if v.node not in seen:
            raise InternalError(f"output refers to missing node %{v.node}")
