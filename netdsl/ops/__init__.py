"""The op table: for every built-in layer, its attributes with defaults, shape rule, parameters, MACs and FLOPs.

A new op is one `OpDef` row in `netdsl/ops/table.py`, one kernel pair per backend and one line in the op tests.
Shape rules raise `ShapeError(message, hint)`; the message is a predicate phrase ("expects an image [C, H, W],
found [10]") that the elaborator prefixes with the layer (`conv 'c1' `) and positions at the layer's span.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ir import TensorType


class ShapeError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class AttrError(Exception):
    def __init__(self, attr: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.attr = attr
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Ident:
    """A bare identifier used as an attribute value (`pad=same`)."""

    name: str

    def __str__(self) -> str:
        return self.name


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Attr:
    name: str
    kind: str  # int | nonneg | float | prob | bool | pair | pad | axis | ints | weights | std | stds | layer | any
    default: Any = REQUIRED
    doc: str = ""


@dataclass(frozen=True)
class ParamDecl:
    role: str  # "weight", "bias", "running_mean", "q.weight", ...
    shape: tuple[int, ...]
    init: tuple[str, Any]
    trainable: bool = True
    state: bool = False


@dataclass(frozen=True)
class OpDef:
    name: str
    family: str  # kernel family: conv, pool, norm, dense, activation, elementwise, shape, loss, embed, attention
    attrs: tuple[Attr, ...]
    shape: Callable[[dict[str, Any], list[TensorType]], TensorType]
    inputs: tuple[int, int | None] = (1, 1)  # min, max (None: any number)
    params: Callable[[dict[str, Any], list[TensorType]], list[ParamDecl]] = field(default=lambda a, t: [])
    macs: Callable[[dict[str, Any], list[TensorType], TensorType], int] = field(default=lambda a, t, o: 0)
    # pointwise/normalisation work per example, counted in FLOPs but not in MACs
    extra_flops: Callable[[dict[str, Any], list[TensorType], TensorType], int] = field(
        default=lambda a, t, o: o.size
    )
    # runs after defaults: resolves settings that depend on others (pad=same -> numbers); may raise AttrError
    finalize: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda a: a)
    combinator: bool = False  # `x -> concat(y)`: the chained value is the first input, arguments more inputs
    train_mode: bool = False  # behaves differently in training (dropout, batchnorm)
    doc: str = ""

    @property
    def required(self) -> list[str]:
        return [a.name for a in self.attrs if a.default is REQUIRED]

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)

    def normalize(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Validate settings (already bound to names), fill defaults; raises AttrError."""
        out: dict[str, Any] = {}
        for a in self.attrs:
            if a.name in settings and settings[a.name] is not None:
                out[a.name] = check_attr(self.name, a, settings[a.name])
            elif a.default is REQUIRED:
                raise AttrError(a.name, f"needs the setting '{a.name}'")
            elif a.default is None or (isinstance(a.default, str) and a.default.startswith("=")):
                out[a.name] = a.default
            else:  # defaults are written as a user would write them, and normalised alike
                out[a.name] = check_attr(self.name, a, a.default)
        for a in self.attrs:  # defaults that follow another setting (a pool's stride is its size)
            if isinstance(a.default, str) and a.default.startswith("=") and a.name not in settings:
                out[a.name] = out[a.default[1:]]
        return self.finalize(out)

    def infer(self, attrs: dict[str, Any], in_types: list[TensorType]) -> TensorType:
        return self.shape(attrs, in_types)

    def param_decls(self, attrs: dict[str, Any], in_types: list[TensorType]) -> list[ParamDecl]:
        return self.params(attrs, in_types)

    def param_shapes(self, attrs: dict[str, Any], in_types: list[TensorType]) -> dict[str, tuple[int, ...]]:
        return {p.role: p.shape for p in self.params(attrs, in_types)}

    def count_macs(self, attrs: dict[str, Any], in_types: list[TensorType], out: TensorType) -> int:
        return int(self.macs(attrs, in_types, out))

    def count_flops(self, attrs: dict[str, Any], in_types: list[TensorType], out: TensorType) -> int:
        return 2 * self.count_macs(attrs, in_types, out) + int(self.extra_flops(attrs, in_types, out))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _describe(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_describe(x) for x in v) + "]"
    if isinstance(v, (int, float, Ident)):
        return str(v)
    return getattr(v, "describe", lambda: type(v).__name__)()


def check_attr(op: str, a: Attr, v: Any) -> Any:
    """Check one attribute value against its kind and return it normalised."""

    def bad(expected: str, hint: str | None = None) -> AttrError:
        return AttrError(a.name, f"setting '{a.name}' expects {expected}, found {_describe(v)}", hint)

    k = a.kind
    if k == "any":
        return v
    if k == "int":
        if not _is_int(v) or v < 1:
            raise bad("a positive whole number")
        return v
    if k == "nonneg":
        if not _is_int(v) or v < 0:
            raise bad("a whole number ≥ 0")
        return v
    if k == "axis":
        if not _is_int(v):
            raise bad("an axis number")
        return v
    if k == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad("a number")
        return float(v)
    if k == "prob":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise bad("a probability in [0, 1)")
        return float(v)
    if k == "bool":
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if k == "pair":
        if _is_int(v) and v >= 1:
            return (v, v)
        if isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v):
            return (v[0], v[1])
        raise bad("a positive whole number or a pair [h, w]")
    if k == "pad":
        if isinstance(v, Ident) and v.name == "same":
            return "same"
        if _is_int(v) and v >= 0:
            return (v, v)
        if isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v):
            return (v[0], v[1])
        raise bad("same, a whole number ≥ 0 or a pair [h, w]")
    if k == "ints":
        if isinstance(v, list) and all(_is_int(x) for x in v):
            return tuple(v)
        raise bad("a list of whole numbers")
    if k == "weights":
        if v is None:
            return None
        if isinstance(v, list) and _numeric_tensor(v):
            return v
        raise bad("a nested list of numbers (a (kh, kw) kernel or (out, in/groups, kh, kw) weights)")
    if k in ("std", "stds"):  # an initialiser's standard deviation: N(0, std) weights, zero biases
        if v is None:
            return None
        if _std(v):
            return float(v)
        if k == "stds" and isinstance(v, list) and len(v) == 2 and all(_std(x) for x in v):
            return (float(v[0]), float(v[1]))
        if k == "stds":
            raise bad("a standard deviation ≥ 0, or a pair [inputs, out] (q/k/v, then the output projection)")
        raise bad("a standard deviation (a number ≥ 0)")
    if k == "layer":
        return v
    raise AssertionError(f"unknown attribute kind {k}")


def _std(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _numeric_tensor(v: Any) -> bool:
    """A rectangular nested list of numbers."""
    if not isinstance(v, list) or not v:
        return False
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return True
    if all(isinstance(x, list) for x in v):
        return len({len(x) for x in v}) == 1 and all(_numeric_tensor(x) for x in v) and _shape_of(v) is not None
    return False


def _shape_of(v: Any) -> tuple[int, ...] | None:
    if not isinstance(v, list):
        return ()
    inner = {_shape_of(x) for x in v}
    if len(inner) != 1:
        return None
    (s,) = inner
    return None if s is None else (len(v),) + s


def nested_shape(v: Any) -> tuple[int, ...]:
    s = _shape_of(v)
    return () if s is None else s


from .table import OPS


def get(name: str) -> OpDef | None:
    return OPS.get(name)


def names() -> list[str]:
    return sorted(OPS)
