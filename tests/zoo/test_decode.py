"""Greedy decoding (runtime/decode.py) on a stand-in program: it feeds back its own predictions, one position
at a time, from the start token alone (never the target: that would be teacher forcing)."""

from __future__ import annotations

import numpy as np
from netdsl.runtime.decode import greedy


class Causal:
    """Logits whose argmax at position t is (tgt_in[t] + 1) mod V: a causal decoder that counts up."""

    def __init__(self, vocab: int = 6) -> None:
        self.vocab = vocab
        self.calls = 0

    def forward(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        dec = feeds["tgt_in"]
        return {"logits": np.eye(self.vocab, dtype=np.float32)[(dec + 1) % self.vocab]}


def test_greedy_feeds_back_its_own_predictions():
    prog = Causal()
    tgt = np.array([[5, 5, 5, 5], [1, 2, 3, 4]])
    feeds = {"src": np.zeros((2, 4), np.int64), "tgt_in": np.array([[0, 5, 5, 5], [0, 1, 2, 3]]), "tgt": tgt}
    pred = greedy(prog, feeds, "logits", "tgt", "tgt_in")
    # from the start token 0: 1, then 2 (fed 1), 3, 4, whatever the teacher-forced input said
    assert pred.tolist() == [[1, 2, 3, 4], [1, 2, 3, 4]]
    assert prog.calls == 4  # one pass per target position
    assert feeds["tgt_in"].tolist() == [[0, 5, 5, 5], [0, 1, 2, 3]]  # the caller's arrays are left alone


def test_greedy_keeps_the_data_start_token():
    prog = Causal()
    feeds = {"tgt_in": np.array([[2, 0, 0]]), "tgt": np.zeros((1, 3), np.int64)}
    assert greedy(prog, feeds, "logits", "tgt", "tgt_in").tolist() == [[3, 4, 5]]


def test_without_a_decoder_input_one_pass():
    class Plain:
        def forward(self, feeds):
            return {"logits": np.eye(4, dtype=np.float32)[feeds["src"]]}

    feeds = {"src": np.array([[3, 1, 2]]), "tgt": np.zeros((1, 3), np.int64)}
    assert greedy(Plain(), feeds, "logits", "tgt", None).tolist() == [[3, 1, 2]]
