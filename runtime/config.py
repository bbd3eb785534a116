"""A run's configuration: the recipe's lines, overridden by arguments, with defaults; and loading the spec.

Precedence, highest first: explicit arguments (command-line flags), the checkpoint's configuration when
resuming, the spec's `train` recipe, and the defaults `adam(lr=0.001)`, batch 64, 10 epochs, val 0.1, seed 0.
`--epochs` and `--steps` replace each other: giving one drops the other from the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdsl import ast
from netdsl.diagnostics import Diagnostic, SpecError
from netdsl.recipe import AUGMENTS, OPTIMIZERS, SAMPLINGS, SCHEDULES, CallSpec, Recipe, parse_call

from .checkpoint import _dec, _enc
from .data import Dataset, parse_data

DEFAULTS: dict[str, Any] = {"optimizer": CallSpec("adam", (), {"lr": 0.001}), "batch": 64, "epochs": 10,
                            "val": 0.1, "seed": 0}


@dataclass
class Config:
    data: CallSpec | None = None
    fields: list[str] = field(default_factory=list)
    optimizer: CallSpec | None = None
    schedule: CallSpec | None = None
    batch: int = 64
    epochs: int | None = None
    steps: int | None = None
    val: float | str | None = 0.1
    augment: list[CallSpec] = field(default_factory=list)
    seed: int = 0
    clip: float | None = None
    every: int | None = None
    sampling: str = "shuffle"  # SAMPLINGS: shuffled epochs, or each batch drawn at random
    defaulted: list[str] = field(default_factory=list)  # settings that came from the defaults

    def to_json(self) -> dict[str, Any]:
        return {"data": call_json(self.data), "fields": self.fields, "optimizer": call_json(self.optimizer),
                "schedule": call_json(self.schedule), "batch": self.batch, "epochs": self.epochs,
                "steps": self.steps, "val": self.val, "augment": [call_json(a) for a in self.augment],
                "seed": self.seed, "clip": self.clip, "every": self.every, "sampling": self.sampling}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Config:
        return cls(call_from(d.get("data")), list(d.get("fields") or []), call_from(d.get("optimizer")),
                   call_from(d.get("schedule")), int(d.get("batch") or 64), d.get("epochs"), d.get("steps"),
                   d.get("val"), [c for c in (call_from(a) for a in d.get("augment") or []) if c is not None],
                   int(d.get("seed") or 0), d.get("clip"), d.get("every"), d.get("sampling") or "shuffle")


def call_json(c: CallSpec | None) -> dict[str, Any] | None:
    return None if c is None else {"name": c.name, "kwargs": {k: _enc(v) for k, v in c.kwargs.items()}}


def call_from(d: dict[str, Any] | None) -> CallSpec | None:
    return None if not d else CallSpec(d["name"], (), {k: _dec(v) for k, v in d["kwargs"].items()})


def show_call(c: CallSpec) -> str:
    """A call as it would be written in a recipe (strings in double quotes)."""
    def val(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)

    return f"{c.name}(" + ", ".join(f"{k}={val(v)}" for k, v in c.kwargs.items()) + ")"


def _as_call(v: Any, what: str, table: dict[str, tuple[list[str], set[str]]]) -> CallSpec:
    if isinstance(v, CallSpec):
        return v
    if not isinstance(v, str):
        raise SpecError(Diagnostic(None, f"{what}: expected a call such as {next(iter(table))}(…), found {v!r}"))
    return parse_call(v, what, table)


def _positive(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise SpecError(Diagnostic(None, f"{what} must be a positive whole number, found {v!r}"))
    return v


def parse_val(v: Any) -> float | str | None:
    """`0.1`, `0`, or a file (or dataset expression) for validation."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise SpecError(Diagnostic(None, f"val must be a fraction in [0, 1) or a file, found {v!r}"))
    return float(v)


def resolve(recipe: Recipe | None, base: Config | None, args: dict[str, Any]) -> Config:
    """Merge: arguments over the checkpoint's config (`base`) or the recipe, then the defaults."""
    c = Config()
    if base is not None:
        c = Config(**{k: getattr(base, k) for k in base.__dataclass_fields__ if k != "defaulted"})
    elif recipe is not None:
        c = Config(recipe.data, list(recipe.fields), recipe.optimizer, recipe.schedule, recipe.batch or 0,
                   recipe.epochs, recipe.steps, recipe.val, list(recipe.augment), recipe.seed or 0, recipe.clip,
                   recipe.every, recipe.sampling or "shuffle")
        if recipe.seed is None:
            c.seed = -1
    else:
        c = Config(batch=0, val=None, seed=-1)
    a = {k: v for k, v in args.items() if v is not None}
    if "data" in a:
        c.data = parse_data(a["data"])
        c.fields = []
    if "optimizer" in a:
        c.optimizer = _as_call(a["optimizer"], "optimizer", OPTIMIZERS)
    if "schedule" in a:
        c.schedule = _as_call(a["schedule"], "schedule", SCHEDULES)
    if "augment" in a:
        augs = a["augment"] if isinstance(a["augment"], list) else [a["augment"]]
        c.augment = [_as_call(x, "augmentation", AUGMENTS) for x in augs]
    if "epochs" in a and "steps" in a:
        raise SpecError(Diagnostic(None, "give epochs or steps, not both"))
    if "epochs" in a:
        c.epochs, c.steps = _positive(a["epochs"], "epochs"), None
    if "steps" in a:
        c.steps, c.epochs = _positive(a["steps"], "steps"), None
    if "batch" in a:
        c.batch = _positive(a["batch"], "batch")
    if "every" in a:
        c.every = _positive(a["every"], "every")
    if "val" in a:
        c.val = parse_val(a["val"])
    if "seed" in a:
        if not isinstance(a["seed"], int) or isinstance(a["seed"], bool) or a["seed"] < 0:
            raise SpecError(Diagnostic(None, f"seed must be a whole number ≥ 0, found {a['seed']!r}"))
        c.seed = a["seed"]
    if "clip" in a:
        if isinstance(a["clip"], bool) or not isinstance(a["clip"], (int, float)) or a["clip"] <= 0:
            raise SpecError(Diagnostic(None, f"clip must be a positive number, found {a['clip']!r}"))
        c.clip = float(a["clip"])
    if "sampling" in a:
        if a["sampling"] not in SAMPLINGS:
            raise SpecError(Diagnostic(None, f"sampling must be {' or '.join(SAMPLINGS)}, found {a['sampling']!r}"))
        c.sampling = a["sampling"]
    if "lr" in a:
        lr = a["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            raise SpecError(Diagnostic(None, f"lr must be a positive number, found {lr!r}"))
        opt = c.optimizer or DEFAULTS["optimizer"]
        c.optimizer = CallSpec(opt.name, (), {**opt.kwargs, "lr": float(lr)}, opt.span)
    # defaults
    if c.optimizer is None:
        c.optimizer = DEFAULTS["optimizer"]
        c.defaulted.append(show_call(c.optimizer))
    if not c.batch:
        c.batch = DEFAULTS["batch"]
        c.defaulted.append(f"batch {c.batch}")
    if c.epochs is None and c.steps is None:
        c.epochs = DEFAULTS["epochs"]
        c.defaulted.append(f"{c.epochs} epochs")
    if c.val is None and base is None:
        c.val = DEFAULTS["val"]
        c.defaulted.append(f"val {c.val}")
    if c.seed < 0:
        c.seed = DEFAULTS["seed"]
    return c


# ----------------------------------------------------------------------------- the spec


@dataclass
class SpecInfo:
    """A spec file read far enough to know its network, recipe and `auto` parameters (before the data)."""

    path: Path
    network: str
    recipe: Recipe | None
    autos: list[str]
    params: list[str]  # the network's parameter names


def read_spec(path: str | Path, network: str | None = None, allow_paths: list[str] | None = None) -> SpecInfo:
    from netdsl.net import _pick, read_files
    from netdsl.recipe import recipe_for

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(Diagnostic(None, f"{path}: no such file")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Diagnostic(None, f"{path}: cannot read the spec: {exc}")) from None
    files = read_files(text, str(path), p.parent, [Path(a) for a in allow_paths or []])
    net_ast = _pick(files, network)
    autos = [q.name for q in net_ast.params if isinstance(q.default, ast.Name) and q.default.id == "auto"]
    return SpecInfo(p, net_ast.name, recipe_for(files, net_ast.name), autos, [q.name for q in net_ast.params])


def auto_values(info: SpecInfo, ds: Dataset | None, given: dict[str, Any]) -> dict[str, Any]:
    """Values for the spec's `auto` parameters from the dataset (`vocab`, `classes`)."""
    out: dict[str, Any] = {}
    for name in info.autos:
        if name in given:
            continue
        if name not in ("vocab", "classes"):
            raise SpecError(Diagnostic(None, f"{info.path}: network parameter '{name}' is auto, but only vocab and "
                                       "classes take their values from a dataset", f"set it: --set {name}=N"))
        value = getattr(ds, name, None) if ds is not None else None
        if value is None and ds is not None:
            value = ds.vocab if name == "classes" else ds.classes
        if value is None:
            what = ds.name if ds is not None else "no dataset"
            raise SpecError(Diagnostic(None, f"{info.path}: network parameter '{name}' is auto, and {what} does "
                                       f"not tell its {name}", f"set it: --set {name}=N"))
        out[name] = value
    return out
