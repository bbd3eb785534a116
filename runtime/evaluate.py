"""Evaluation (loss, accuracy for classifiers, perplexity for language models) and character sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError


@dataclass
class Task:
    """What the network predicts: the logits output and the label input of its cross-entropy, if any."""

    output: str | None = None  # the output holding the logits
    label: str | None = None  # the input holding the labels
    kind: str = "other"  # "classifier" ([classes] logits), "language" ([T, V] logits, int[T] labels), "other"
    ignore: int = -1
    exact: bool = False  # the loss is exactly cross_entropy(output, label) without smoothing

    @property
    def has_accuracy(self) -> bool:
        return self.kind in ("classifier", "language")


def task_of(net: Any) -> Task:
    ir = net.ir
    inputs = {nid: name for name, nid in ir.inputs.items()}
    outputs = {(v.node, v.index): name for name, v in ir.outputs.items()}
    for n in ir:
        if n.op != "cross_entropy" or n.inputs[1].node not in inputs:
            continue
        out = outputs.get((n.inputs[0].node, n.inputs[0].index))
        if out is None:
            continue
        logits = ir.type_of(n.inputs[0])
        kind = "classifier" if logits.rank == 1 else "language" if logits.rank == 2 else "other"
        exact = (ir.loss is not None and ir.loss.node == n.id and not n.attrs.get("smoothing"))
        return Task(out, inputs[n.inputs[1].node], kind, int(n.attrs.get("ignore", -1)), exact)
    return Task()


def _nll(logits: np.ndarray, labels: np.ndarray, ignore: int) -> tuple[float, int, int]:
    """(summed negative log-likelihood, counted labels, correct argmaxes) over a batch, in float64."""
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    y = labels.reshape(-1)
    keep = y != ignore
    z, y = z[keep], y[keep]
    if len(y) == 0:
        return 0.0, 0, 0
    zmax = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
    nll = float((lse - z[np.arange(len(y)), y]).sum())
    correct = int((z.argmax(axis=1) == y).sum())
    return nll, len(y), correct


def correct_count(logits: np.ndarray, labels: np.ndarray, ignore: int) -> tuple[int, int]:
    """(correct argmaxes, counted labels) for train-batch accuracy."""
    y = labels.reshape(-1)
    pred = logits.reshape(-1, logits.shape[-1]).argmax(axis=1)
    keep = y != ignore
    return int((pred[keep] == y[keep]).sum()), int(keep.sum())


def evaluate(prog: Any, batches: Any, task: Task) -> dict[str, Any]:
    """Loss over every example (eval mode), plus accuracy (classifiers, token accuracy for sequences) and
    perplexity (language models)."""
    total_loss = 0.0
    weight = 0
    correct = 0
    counted = 0
    examples = 0
    for feeds in batches:
        n = len(next(iter(feeds.values())))
        examples += n
        if task.exact:
            logits = prog.forward(feeds)[task.output]
            nll, k, c = _nll(logits, feeds[task.label], task.ignore)
            total_loss += nll
            weight += k
            correct += c
            counted += k
            continue
        total_loss += prog.loss(feeds) * n
        weight += n
        if task.has_accuracy:
            logits = prog.forward(feeds)[task.output]
            c, k = correct_count(logits, feeds[task.label], task.ignore)
            correct += c
            counted += k
    out: dict[str, Any] = {"loss": total_loss / weight if weight else float("nan"), "examples": examples}
    if task.has_accuracy:
        out["accuracy"] = correct / counted if counted else float("nan")
    if task.kind == "language":
        out["perplexity"] = math.exp(min(out["loss"], 700.0))
    return out


# ----------------------------------------------------------------------------- sampling


def sample_text(prog: Any, net: Any, tokens: list[str], prompt: str, length: int, temperature: float,
                seed: int) -> str:
    """`length` characters drawn after `prompt` from a character-level model (fed its last T characters)."""
    task = task_of(net)
    if task.kind != "language":
        raise SpecError(Diagnostic(None, f"network {net.name} is not a character-level language model "
                                   "(it needs int[T] tokens in and [T, V] logits out)"))
    types = {name: net.ir.node(nid).outputs[0] for name, nid in net.ir.inputs.items()}
    token_input = next((n for n, t in types.items() if n != task.label and t.is_int and t.rank == 1), None)
    if token_input is None:
        raise SpecError(Diagnostic(None, f"network {net.name} has no int[T] token input to feed"))
    seq = types[token_input].shape[0]
    vocab = net.ir.type_of(net.ir.outputs[task.output]).shape[-1]
    if vocab != len(tokens):
        raise SpecError(Diagnostic(None, f"the model predicts {vocab} tokens but its vocabulary has {len(tokens)}"))
    index = {c: i for i, c in enumerate(tokens)}
    unknown = sorted({c for c in prompt if c not in index})
    if unknown:
        raise SpecError(Diagnostic(None, "the prompt has characters outside the model's vocabulary: "
                                   + ", ".join(repr(c) for c in unknown[:8])))
    if temperature <= 0 or not math.isfinite(temperature):
        raise SpecError(Diagnostic(None, f"temperature must be positive, found {temperature}"))
    rng = np.random.default_rng(seed)
    ids = [index[c] for c in prompt]
    if not ids:
        ids = [index["\n"]] if "\n" in index else [int(rng.integers(len(tokens)))]
        prompt_len = 0
    else:
        prompt_len = len(ids)
    feeds = {n: np.zeros((1,) + t.shape, dtype=np.int64 if t.is_int else np.float32) for n, t in types.items()}
    start = len(ids)
    for _ in range(length):
        window = ids[-seq:]
        feeds[token_input][0, :] = 0
        feeds[token_input][0, : len(window)] = window
        logits = prog.forward(feeds)[task.output][0, len(window) - 1].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        ids.append(int(rng.choice(len(p), p=p)))
    head = prompt if prompt_len else ""
    return head + "".join(tokens[i] for i in ids[start:])
