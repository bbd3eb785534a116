"""Evaluation metrics and character sampling against stand-in programs (no compilation needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from netdsl.runtime.evaluate import evaluate, sample_text, task_of

import netdsl
from netdsl import SpecError

LM = """
network LM(vocab=4, seq=3) {
    input tokens: int[seq]
    input targets: int[seq]
    logits = tokens -> embedding(vocab, 5) -> lstm(6) -> dense(vocab)
    output logits
    loss cross_entropy(logits, targets)
}
"""
CLF = """
network C {
    input x: [2]
    input y: int[]
    logits = x -> dense(3)
    output logits
    loss cross_entropy(logits, y, smoothing=0.1)
}
"""


class NextToken:
    """Stands in for a compiled program: predicts token (t + 1) mod V after token t, and records its feeds."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab
        self.seen: list[np.ndarray] = []

    def forward(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = feeds["tokens"]
        self.seen.append(t.copy())
        logits = np.full(t.shape + (self.vocab,), -20.0)
        np.put_along_axis(logits, ((t + 1) % self.vocab)[..., None], 20.0, axis=-1)
        return {"logits": logits}


def test_tasks() -> None:
    lm = task_of(netdsl.loads(LM))
    assert (lm.output, lm.label, lm.kind, lm.exact) == ("logits", "targets", "language", True)
    clf = task_of(netdsl.loads(CLF))
    assert (clf.kind, clf.exact) == ("classifier", False)  # smoothing: the loss comes from the program


def test_language_model_loss_accuracy_perplexity() -> None:
    net = netdsl.loads(LM)
    prog = NextToken(4)
    tokens = np.array([[0, 1, 2], [3, 0, 1]])
    targets = np.array([[1, 2, 3], [0, 1, 0]])  # the last target is wrong for a +1 model
    r = evaluate(prog, [{"tokens": tokens, "targets": targets}], task_of(net))
    assert r["examples"] == 2 and r["accuracy"] == pytest.approx(5 / 6)
    assert r["loss"] == pytest.approx(40 / 6, rel=1e-6)  # one miss costs 40 nats (logit gap 40)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))


def test_classifier_with_a_non_plain_loss_asks_the_program() -> None:
    class Prog:
        def loss(self, feeds: dict[str, np.ndarray]) -> float:
            return 0.5 if len(feeds["y"]) == 2 else 2.0

        def forward(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"logits": np.eye(3)[feeds["y"]]}

    batches = [{"x": np.zeros((2, 2)), "y": np.array([0, 1])}, {"x": np.zeros((1, 2)), "y": np.array([2])}]
    r = evaluate(Prog(), batches, task_of(netdsl.loads(CLF)))
    assert r["loss"] == pytest.approx((0.5 * 2 + 2.0) / 3) and r["accuracy"] == 1.0 and "perplexity" not in r


def test_sampling_feeds_the_last_window_and_reads_the_right_step() -> None:
    net = netdsl.loads(LM)
    prog = NextToken(4)
    out = sample_text(prog, net, ["a", "b", "c", "d"], "ab", 6, temperature=0.5, seed=0)
    assert out == "ab" + "cdabcd"
    assert prog.seen[0].tolist() == [[0, 1, 0]]  # the prompt, padded on the right (a causal model ignores it)
    assert prog.seen[-1].tolist() == [[0, 1, 2]]  # the last three characters: "abc" of "abcdabc"


def test_sampling_errors() -> None:
    net = netdsl.loads(LM)
    with pytest.raises(SpecError) as e:
        sample_text(NextToken(4), net, ["a", "b", "c", "d"], "abz", 3, 1.0, 0)
    assert "outside the model's vocabulary: 'z'" in str(e.value)
    with pytest.raises(SpecError) as e:
        sample_text(NextToken(4), net, ["a", "b", "c"], "ab", 3, 1.0, 0)
    assert "predicts 4 tokens but its vocabulary has 3" in str(e.value)
    with pytest.raises(SpecError) as e:
        sample_text(NextToken(3), netdsl.loads(CLF), ["a", "b", "c"], "ab", 3, 1.0, 0)
    assert "is not a character-level language model" in str(e.value)
