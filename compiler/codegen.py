"""Code generation: a Schedule → readable Python step code, written to a real file in the cache directory.

The generated functions call the jitted kernels in order on views of the planned arena; every call carries the
spec line it implements. Files are content-addressed (the code depends only on the IR and the plan), so a
warm cache re-imports without writing. Numba cannot cache `exec`'d code: that is why these are real files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .schedule import At, Buf, Call, Expr, Grad, Item, Loop, Param, Scalar, Schedule, StateIn, View


def cache_dir() -> Path:
    env = os.environ.get("NETDSL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netdsl"


@dataclass
class Slots:
    """Numbering of the views (buffer + shape) and parameters the generated code indexes."""

    views: list[tuple[Buf, tuple[Any, ...]]] = field(default_factory=list)
    view_index: dict[tuple[int, tuple[Any, ...]], int] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    param_index: dict[str, int] = field(default_factory=dict)

    def view(self, b: Buf, shape: tuple[Any, ...] | None = None) -> int:
        full = b.template() if shape is None else ((b.steps,) if b.steps else ()) + tuple(shape)
        key = (b.id, full)
        if key not in self.view_index:
            self.view_index[key] = len(self.views)
            self.views.append((b, full))
        return self.view_index[key]

    def param(self, name: str) -> int:
        if name not in self.param_index:
            self.param_index[name] = len(self.params)
            self.params.append(name)
        return self.param_index[name]


class Emitter:
    def __init__(self, slots: Slots, profile: bool = False, check: bool = False) -> None:
        self.slots = slots
        self.modules: set[str] = set()
        self.profile = profile  # wrap every call in a timer: PROF[i] accumulates seconds
        self.check = check  # after every call, stop at the first non-finite value it touched
        self.calls: list[Call] = []

    def arg(self, a: Any) -> str:
        if isinstance(a, Buf):
            return f"V[{self.slots.view(a)}]"
        if isinstance(a, View):
            return f"V[{self.slots.view(a.buf, a.shape)}]"
        if isinstance(a, At):
            inner = self.arg(a.of)
            if a.fixed is not None:
                return f"{inner}[{a.fixed}]"
            return f"{inner}[t{_signed(a.offset)}]"
        if isinstance(a, StateIn):
            return f"({self.arg(a.init)} if t == {a.first} else {self.arg(a.prev)}[t{_signed(a.offset)}])"
        if isinstance(a, Scalar):
            return f"float({self.arg(a.of)}.flat[0])"
        if isinstance(a, Param):
            return f"P[{self.slots.param(a.name)}]"
        if isinstance(a, Grad):
            return f"G[{self.slots.param(a.name)}]"
        if isinstance(a, Expr):
            return a.code
        if isinstance(a, float):
            return repr(a)
        if isinstance(a, (bool, int, str)) or a is None:
            return repr(a)
        raise TypeError(f"cannot emit argument {a!r}")

    def call(self, c: Call, indent: str) -> list[str]:
        module, fn = c.fn.split(".")
        self.modules.add(module)
        text = f"k_{module}.{fn}(" + ", ".join(self.arg(a) for a in c.args) + ")"
        if c.result is not None:
            text = f"{self.arg(c.result)}[...] = {text}"
        if self.check:
            i = len(self.calls)
            self.calls.append(c)
            arrays = [self.arg(a) for a in c.args + ([c.result] if c.result is not None else [])
                      if isinstance(a, (Buf, View, At, StateIn, Grad))]
            return [f"{indent}{text}{_tag(c)}", f"{indent}_finite({i}, {', '.join(arrays)})"]
        if not self.profile:
            return [f"{indent}{text}{_tag(c)}"]
        i = len(self.calls)
        self.calls.append(c)
        return [f"{indent}_t = _clock()", f"{indent}{text}{_tag(c)}", f"{indent}PROF[{i}] += _clock() - _t"]

    def items(self, items: list[Item], indent: str) -> list[str]:
        out: list[str] = []
        for it in items:
            if isinstance(it, Loop):
                rng = f"range({it.steps - 1}, -1, -1)" if it.reverse else f"range({it.steps})"
                tag = f"  # {_where(it.node)} unroll {it.node.name}" if it.node is not None else ""
                out.append(f"{indent}for t in {rng}:{tag}")
                out.extend(self.items(it.body, indent + "    ") or [indent + "    pass"])
            else:
                out.extend(self.call(it, indent))
        return out


def _signed(k: int) -> str:
    return "" if k == 0 else (f" + {k}" if k > 0 else f" - {-k}")


def _where(node: Any) -> str:
    if node is None or node.span is None:
        return ""
    return f"{node.span.file}:{node.span.line}"


def source_text(node: Any) -> str:
    """The spec text a node came from: its own span when on one line, else its first line."""
    sp = node.span
    if sp is None:
        return ""
    line = sp.source.line(sp.line)
    text = line[sp.col - 1 : sp.end_col - 1] if sp.end_line == sp.line else line[sp.col - 1 :]
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _tag(c: Call) -> str:
    if c.node is None:
        return f"  # {c.note}" if c.note else ""
    note = f" [{c.note}]" if c.note else ""
    return f"  # {_where(c.node)} {c.node.name}{note}: {source_text(c.node)}"


def generate(sched: Schedule, title: str, slots: Slots | None = None, profile: bool = False,
             device: str = "cpu", check: bool = False) -> tuple[str, Slots, list[Call]]:
    """Python source for `forward` and `backward`; with `profile`, each call is timed into PROF.

    The kernels come from `kernels/<device>/<family>.py`: every backend offers the same functions with the
    same signatures, so one schedule runs on any of them.
    """
    slots = slots or Slots()
    em = Emitter(slots, profile, check)
    split = sched.backward_start if sched.backward_start >= 0 else len(sched.items)
    fwd = em.items(sched.items[:split], "    ")
    bwd = em.items(sched.items[split:], "    ")
    head = [
        f"# netdsl generated step code: {title}",
        "# V: arena views for the current batch, P: parameters, G: their gradients (slots listed below).",
        "# Regenerated from the spec; do not edit.",
        "",
    ]
    head += ["import numpy as np", ""]
    if profile:
        head += ["from time import perf_counter as _clock", ""]
    if check:
        head += ["", "def _finite(i, *arrays):", "    for a in arrays:",
                 "        if a is not None and a.dtype.kind == 'f' and not np.isfinite(a).all():",
                 "            raise FloatingPointError(i)", ""]
    head += [f"from netdsl.compiler.kernels.{device} import {m} as k_{m}" for m in sorted(em.modules)]
    args = "V, P, G, n, train, update, seed, step"
    body = ["", "", f"def forward({args}):"] + (fwd or ["    pass"])
    body += ["", "", f"def backward({args}):"] + (bwd or ["    pass"])
    legend = ["", "", "# views:"] + [f"#   V[{i}] = {b.name} {list(shape)}" for i, (b, shape) in enumerate(slots.views)]
    legend += ["# parameters:"] + [f"#   P[{i}] = {name}" for i, name in enumerate(slots.params)]
    if profile:
        body += ["", "", f"PROF = [0.0] * {len(em.calls)}"]
    return "\n".join(head + body + legend) + "\n", slots, em.calls


def load_module(code: str) -> ModuleType:
    """Write (once) and import the generated code from the cache directory."""
    digest = hashlib.sha256(code.encode()).hexdigest()[:20]
    name = f"netdsl_step_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    d = cache_dir() / "steps"
    path = d / f"{name}.py"
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != code:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(code, encoding="utf-8")
            os.replace(tmp, path)
    except OSError:
        module = ModuleType(name)  # an unwritable cache: run it from memory (kernels are cached separately)
        exec(compile(code, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own generated code
        sys.modules[name] = module
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
