"""Greedy decoding for sequence-to-sequence models (`netdsl decode`).

A seq2seq spec trained with teacher forcing reads the target shifted right behind a start token
(`sequences(…)` gives the fields `src, tgt_in, tgt`). At test time there is no target to shift: greedy
decoding starts from the start token alone and feeds back the model's own argmax, one position at a time.
netdsl networks have fixed shapes, so the decoder input keeps its full length `T`; since the decoder is causal
(a recurrent decoder, or masked self-attention: position t reads `tgt_in[0..t]` only), the positions after the
prefix cannot change the prediction at t, and decoding re-runs the whole network once per target position:

    dec = [start, 0, 0, …]
    for t in 0 … T-1:   y[t] = argmax(net(src, dec)[t]);   dec[t+1] = y[t]

That is T forward passes instead of T cell steps: simple, exact for causal decoders, and fine at these sizes.
A network fed the target without a shifted copy (two inputs: source and labels) is decoded in one pass.

    result = decode_checkpoint("specs/seq2seq_attention.net", "runs/seq2seq_attention")
    result["token_accuracy"], result["sequence_accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import netdsl
from netdsl.diagnostics import Diagnostic, SpecError

from . import checkpoint as ckpt
from .config import Config
from .data import Batcher, Bound
from .evaluate import Task, task_of

DECODER_FIELD = "tgt_in"  # the dataset field holding the shifted target (teacher forcing)


def decoder_input(bound: Bound, net: Any, task: Task) -> str | None:
    """The network input fed the shifted target: the one bound to the `tgt_in` field, or else an input named so."""
    if DECODER_FIELD in bound.ds.fields:
        name = bound.inputs[bound.ds.fields.index(DECODER_FIELD)]
        if name is not None:
            return name
    return DECODER_FIELD if DECODER_FIELD in net.ir.inputs else None


def greedy(prog: Any, feeds: dict[str, np.ndarray], output: str, label: str, dec: str | None) -> np.ndarray:
    """Greedy predictions `[batch, T]` for one batch. The decoder input's first column (the start token, as
    the data gives it) is kept; every later position is filled with the prediction for the position before."""
    if dec is None:
        return prog.forward(feeds)[output].argmax(axis=-1)
    shifted = feeds[dec]
    steps = shifted.shape[1]
    if feeds[label].shape[1] != steps:
        raise SpecError(Diagnostic(None, f"decode: the decoder input '{dec}' has {steps} positions but the "
                                   f"labels '{label}' have {feeds[label].shape[1]}"))
    cur = np.zeros_like(shifted)
    cur[:, 0] = shifted[:, 0]
    pred = np.zeros(feeds[label].shape, dtype=np.int64)
    run = dict(feeds)
    for t in range(steps):
        run[dec] = cur
        logits = prog.forward(run)[output]
        pred[:, t] = logits[:, t].argmax(axis=-1)
        if t + 1 < steps:
            cur = cur.copy()
            cur[:, t + 1] = pred[:, t]
    return pred


def decode_bound(prog: Any, net: Any, bound: Bound, batch: int, show: int = 0) -> dict[str, Any]:
    """Token and whole-sequence accuracy of greedy decoding over every example of `bound`, in order."""
    task = task_of(net)
    if task.output is None or task.label is None or task.kind != "language":
        raise SpecError(Diagnostic(None, f"network {net.name} is not a sequence-to-sequence model: decode needs a "
                                   "[T, V] logits output trained with cross_entropy against int[T] labels"))
    dec = decoder_input(bound, net, task)
    correct = counted = seq_ok = n_seq = 0
    samples: list[dict[str, list[int]]] = []
    for feeds in Batcher(bound, batch, 0, shuffle=False).eval_batches():
        pred = greedy(prog, feeds, task.output, task.label, dec)
        y = feeds[task.label]
        keep = y != task.ignore
        hit = (pred == y) | ~keep
        correct += int(((pred == y) & keep).sum())
        counted += int(keep.sum())
        seq_ok += int(hit.all(axis=1).sum())
        n_seq += len(y)
        for i in range(min(len(y), show - len(samples))):
            src = [v for k, v in feeds.items() if k not in (task.label, dec)]
            samples.append({"source": src[0][i].tolist() if src else [], "prediction": pred[i].tolist(),
                            "target": y[i].tolist()})
    return {"token_accuracy": correct / counted if counted else float("nan"),
            "sequence_accuracy": seq_ok / n_seq if n_seq else float("nan"), "examples": n_seq,
            "decoder_input": dec, "samples": samples}


def decode_checkpoint(spec: str | Path, checkpoint: str | Path, data: Any = None, network: str | None = None,
                      batch: int | None = None, device: str = "cpu", show: int = 0,
                      allow_paths: list[str] | None = None, **params: Any) -> dict[str, Any]:
    """Greedy-decode a checkpoint on `data` (all of it), or else on the run's validation split (or its training
    data when it held nothing out): `token_accuracy`, `sequence_accuracy`, `examples`, and `show` samples."""
    from .infer import _check
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
    result = decode_bound(prog, s.net, bound, s.config.batch, show)
    result.update({"split": part, "dataset": s.dataset.name, "checkpoint": str(path), "step": man.get("step"),
                   "tokens": s.dataset.tokens})
    return result
