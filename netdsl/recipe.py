"""Training recipes (`train Net { … }`, LANGUAGE.md §7): parsed, validated, and handed to the runtime as data.

The same call syntax serves the command line's `--data`, `--optimizer` and `--schedule` flags (`parse_call`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import ast
from .diagnostics import Collector, Diagnostic, Span, SpecError
from .ops import Ident


@dataclass(frozen=True)
class CallSpec:
    """`adamw(lr=1e-3)`: a name with positional and keyword arguments (compile-time values)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    span: Span | None = None

    def __str__(self) -> str:
        parts = [repr(a) if isinstance(a, str) else str(a) for a in self.args]
        parts += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"

    def __hash__(self) -> int:
        return hash(str(self))


# name -> (positional parameter names in order, required ones)
DATASETS: dict[str, tuple[list[str], set[str]]] = {
    "digits": (["size"], set()),
    "mnist": (["path", "split"], {"path"}),
    "cifar10": (["path", "split"], {"path"}),
    "npz": (["path", "x", "y"], {"path"}),
    "text": (["path", "seq"], {"path"}),
    "words": (["path", "window"], {"path"}),
    "sequences": (["task", "length", "vocab", "count"], {"task"}),
}
OPTIMIZERS: dict[str, tuple[list[str], set[str]]] = {
    "sgd": (["lr", "momentum", "nesterov", "weight_decay", "decay_min_rank"], set()),
    "adam": (["lr", "beta1", "beta2", "eps", "weight_decay", "decay_min_rank"], set()),
    "adamw": (["lr", "beta1", "beta2", "eps", "weight_decay", "decay_min_rank"], set()),
    "rmsprop": (["lr", "alpha", "eps", "momentum", "weight_decay", "decay_min_rank"], set()),
}
SCHEDULES: dict[str, tuple[list[str], set[str]]] = {
    "constant": ([], set()),
    "step": (["every", "gamma"], {"every"}),
    "multistep": (["milestones", "gamma"], {"milestones"}),
    "cosine": (["warmup", "min_lr", "steps"], set()),
    "plateau": (["factor", "patience", "min_lr"], set()),
}
AUGMENTS: dict[str, tuple[list[str], set[str]]] = {
    "crop": (["pad"], set()),
    "flip": ([], set()),
    "normalize": (["mean", "std"], {"mean", "std"}),
}
KEYS = {"data", "optimizer", "schedule", "batch", "epochs", "steps", "val", "augment", "seed", "clip", "every",
        "sampling"}
# how training batches are drawn: shuffled epochs (each example once per epoch), or each step independently at
# random (text: windows at uniformly random offsets of the stream, as nanoGPT's get_batch)
SAMPLINGS = ("shuffle", "random")


@dataclass
class Recipe:
    network: str
    data: CallSpec | None = None
    fields: list[str] = field(default_factory=list)  # `as (image, label)`
    optimizer: CallSpec | None = None
    schedule: CallSpec | None = None
    batch: int | None = None
    epochs: int | None = None
    steps: int | None = None
    val: float | str | None = None
    augment: list[CallSpec] = field(default_factory=list)
    seed: int | None = None
    clip: float | None = None
    every: int | None = None
    sampling: str | None = None
    span: Span | None = None


def literal(e: ast.Expr) -> Any:
    """A recipe value: numbers, strings, booleans, identifiers, lists, calls and simple arithmetic."""
    if isinstance(e, (ast.Num, ast.Str, ast.Bool)):
        return e.value
    if isinstance(e, ast.Name):
        return Ident(e.id)
    if isinstance(e, ast.ListExpr):
        return [literal(x) for x in e.items]
    if isinstance(e, ast.UnaryOp) and e.op == "-":
        v = literal(e.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    if isinstance(e, ast.BinOp):
        a, b = literal(e.left), literal(e.right)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            if e.op == "/" and b == 0:
                raise SpecError(Diagnostic(e.span, "division by zero in a recipe value"))
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0}[e.op]
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        return CallSpec(e.func.id, tuple(literal(a) for a in e.args), {k.name: literal(k.value) for k in e.kwargs},
                        e.span)
    raise SpecError(Diagnostic(e.span, "expected a value (a number, string, name, list or call) in the recipe"))


def check_call(v: Any, table: dict[str, tuple[list[str], set[str]]], what: str, span: Span) -> CallSpec:
    if isinstance(v, Ident):
        v = CallSpec(v.name, (), {}, span)
    if not isinstance(v, CallSpec):
        raise SpecError(Diagnostic(span, f"expected {what}, found {v!r}", "known: " + ", ".join(sorted(table))))
    if v.name not in table:
        import difflib

        close = difflib.get_close_matches(v.name, list(table), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(sorted(table))
        raise SpecError(Diagnostic(v.span or span, f"unknown {what} '{v.name}'", hint))
    params, required = table[v.name]
    if len(v.args) > len(params):
        raise SpecError(Diagnostic(v.span or span, f"{v.name} takes at most {len(params)} positional arguments"))
    named = dict(zip(params, v.args, strict=False))
    for k, val in v.kwargs.items():
        if k not in params:
            hint = ("its arguments: " + ", ".join(params)) if params else f"{v.name} takes no arguments"
            raise SpecError(Diagnostic(v.span or span, f"{v.name} has no argument '{k}'", hint))
        named[k] = val
    missing = required - set(named)
    if missing:
        raise SpecError(Diagnostic(v.span or span, f"{v.name} needs the argument '{min(missing)}'"))
    return CallSpec(v.name, (), named, v.span or span)


def _positive_int(v: Any, key: str, span: Span) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise SpecError(Diagnostic(span, f"'{key}' expects a positive whole number, found {v!r}"))
    return v


def build_recipe(t: ast.Train) -> Recipe:
    r = Recipe(t.network, span=t.span)
    errors = Collector()
    seen: dict[str, Span] = {}
    for entry in t.entries:
        span = entry.span or t.span
        try:
            if entry.key not in KEYS:
                import difflib

                close = difflib.get_close_matches(entry.key, sorted(KEYS), n=1)
                raise SpecError(Diagnostic(span, f"unknown recipe line '{entry.key}'",
                                           f"did you mean '{close[0]}'?" if close else "lines: " + ", ".join(sorted(KEYS))))
            if entry.key in seen:
                raise SpecError(Diagnostic(span, f"'{entry.key}' is given twice in the recipe"))
            seen[entry.key] = span
            vals = [literal(v) for v in entry.values]
            if entry.key != "augment" and len(vals) != 1:
                raise SpecError(Diagnostic(span, f"'{entry.key}' takes one value, found {len(vals)}"))
            if entry.names and entry.key != "data":
                raise SpecError(Diagnostic(span, "'as (…)' belongs to the data line"))
            _set(r, entry.key, vals, entry, span)
        except SpecError as err:
            errors.add(err)
    errors.raise_if_any()
    return r


def _set(r: Recipe, key: str, vals: list[Any], entry: ast.TrainEntry, span: Span) -> None:
    v = vals[0] if vals else None
    if key == "data":
        r.data = check_call(v, DATASETS, "dataset", span)
        r.fields = list(entry.names)
    elif key == "optimizer":
        r.optimizer = check_call(v, OPTIMIZERS, "optimizer", span)
    elif key == "schedule":
        r.schedule = check_call(v, SCHEDULES, "schedule", span)
    elif key == "augment":
        r.augment = [check_call(a, AUGMENTS, "augmentation", span) for a in vals]
    elif key in ("batch", "epochs", "steps", "every"):
        setattr(r, key, _positive_int(v, key, span))
    elif key == "seed":
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SpecError(Diagnostic(span, f"'seed' expects a whole number ≥ 0, found {v!r}"))
        r.seed = v
    elif key == "clip":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise SpecError(Diagnostic(span, f"'clip' expects a positive number (the gradient norm), found {v!r}"))
        r.clip = float(v)
    elif key == "sampling":
        if not isinstance(v, Ident) or v.name not in SAMPLINGS:
            raise SpecError(Diagnostic(span, f"'sampling' expects {' or '.join(SAMPLINGS)}, found {v}",
                                       "shuffle: shuffled epochs; random: every batch drawn independently"))
        r.sampling = v.name
    elif key == "val":
        if isinstance(v, str):
            r.val = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1:
            r.val = float(v)
        else:
            raise SpecError(Diagnostic(span, f"'val' expects a fraction in [0, 1) or a file name, found {v!r}"))


def recipe_for(files: Any, network: str) -> Recipe | None:
    """Validate every recipe of the root file; return the one for `network`, if any."""
    errors = Collector()
    nets = {n.name for m in files.modules for n in m.networks}
    found: Recipe | None = None
    root = files.modules[-1]
    for t in root.trains:
        try:
            if t.network not in nets:
                raise SpecError(Diagnostic(t.span, f"recipe for unknown network '{t.network}'",
                                           "networks: " + ", ".join(sorted(nets)) if nets else None))
            r = build_recipe(t)
            if t.network == network:
                if found is not None:
                    raise SpecError(Diagnostic(t.span, f"network {network} has two recipes"))
                found = r
        except SpecError as err:
            errors.add(err)
    errors.raise_if_any()
    return found


def parse_call(text: str, what: str, table: dict[str, tuple[list[str], set[str]]]) -> CallSpec:
    """Parse a command-line value like `adamw(lr=1e-3)` with the spec grammar's expression syntax."""
    from .parser import parse

    unreadable = SpecError(Diagnostic(None, f"cannot read the {what} '{text}'",
                                      "write it on one line as in a recipe, e.g. adamw(lr=1e-3)"))
    if "\n" in text or "\r" in text:  # one value, never more recipe text
        raise unreadable
    src = f"train _ {{\n    x {text}\n}}\n"
    try:
        mod = parse(src, f"<{what}>")
    except SpecError:
        raise unreadable from None
    entries = [e for t in mod.trains for e in t.entries]
    if len(entries) != 1 or len(entries[0].values) != 1 or entries[0].names:
        raise unreadable
    try:
        return check_call(literal(entries[0].values[0]), table, what, entries[0].span)
    except SpecError as err:  # positions in the wrapped text mean nothing to the user: name the flag's value
        d = err.diagnostics[0]
        raise SpecError(Diagnostic(None, f"{what} '{text}': {d.message}", d.hint)) from None
