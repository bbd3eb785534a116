"""Using a checkpoint: `evaluate_checkpoint` (netdsl eval) and `sample` (netdsl sample)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import netdsl
from netdsl.diagnostics import Diagnostic, SpecError

from . import checkpoint as ckpt
from .config import Config, read_spec
from .data import Batcher
from .evaluate import evaluate, sample_text


def _check(man: dict[str, Any], path: Path, net: Any) -> None:
    why = ckpt.mismatch(man, net)
    if why:
        raise SpecError(Diagnostic(None, f"{path}: the checkpoint does not match {net.name} in {net.source}: {why}"))


def evaluate_checkpoint(spec: str | Path, checkpoint: str | Path, data: Any = None, network: str | None = None,
                        batch: int | None = None, device: str = "cpu", allow_paths: list[str] | None = None,
                        **params: Any) -> dict[str, Any]:
    """Loss (and accuracy or perplexity) of a checkpoint on `data` (all of it), or else on the run's
    validation split (or its training data when it held nothing out). `allow_paths`: directories the spec's
    imports may come from besides its own tree (`--allow-path`)."""
    from .train import load_params, prepare

    man, arrays, path = ckpt.load(checkpoint)
    base = Config.from_json(man.get("config", {}))
    args: dict[str, Any] = {"data": data, "batch": batch}
    if data is not None:
        args["val"] = 0
    s = prepare(spec, args, params, network, base, man.get("vocab"), ckpt.decode_values(man.get("values", {})),
                allow_paths=allow_paths)
    _check(man, path, s.net)
    part, bound = "validation", s.val
    if data is not None:
        part, bound = "data", s.train
    elif bound is None:
        part, bound = "training", s.train
    prog = netdsl.compile(s.net, batch=s.config.batch, device=device)
    load_params(prog, arrays)
    result = evaluate(prog, Batcher(bound, s.config.batch, 0, False, s.augment).eval_batches(), s.task)
    result.update({"split": part, "dataset": s.dataset.name, "checkpoint": str(path), "step": man.get("step")})
    return result


def vocabulary(man: dict[str, Any], path: Path) -> list[str]:
    tokens = man.get("vocab")
    if tokens is None and (path.parent / "vocab.json").is_file():
        try:
            tokens = json.loads((path.parent / "vocab.json").read_text(encoding="utf-8")).get("tokens")
        except (OSError, json.JSONDecodeError, AttributeError):
            tokens = None
    if not tokens:
        raise SpecError(Diagnostic(None, f"{path}: this checkpoint has no vocabulary (it was not trained on text)",
                                   "sample needs a character-level model trained with text(…)"))
    return list(tokens)


def sample(spec: str | Path, checkpoint: str | Path, prompt: str = "", length: int = 200, temperature: float = 1.0,
           seed: int = 0, network: str | None = None, device: str = "cpu", allow_paths: list[str] | None = None,
           **params: Any) -> str:
    """The prompt followed by `length` characters drawn from a character-level model's checkpoint (imports
    from `allow_paths` too, as `--allow-path`)."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise SpecError(Diagnostic(None, f"length must be a whole number ≥ 0, found {length!r}"))
    man, arrays, path = ckpt.load(checkpoint)
    tokens = vocabulary(man, path)
    info = read_spec(spec, network, allow_paths)
    preset = {k: v for k, v in ckpt.decode_values(man.get("values", {})).items() if k in info.params}
    preset.update(params)
    net = netdsl.load(info.path, network=info.network, allow_paths=allow_paths, **preset)
    _check(man, path, net)
    prog = netdsl.compile(net, batch=1, device=device)
    from .train import load_params

    load_params(prog, arrays)
    return sample_text(prog, net, tokens, prompt, length, temperature, seed)
