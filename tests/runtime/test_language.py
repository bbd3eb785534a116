"""Word and character models end to end: CBOW on the lecture's sentence, a char-level LSTM, `netdsl sample`."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from netdsl.cli import main

CBOW = """
network CBOW(vocab=auto, dim=8, window=1) {
    input context: int[2 * window]
    input centre: int[]
    logits = context -> embed: embedding(vocab, dim) -> mean(axis=0) -> out: dense(vocab)
    output logits
    loss cross_entropy(logits, centre)
}
train CBOW {
    data      words("sentence.txt", window=1)
    val       0
    optimizer adam(lr=0.05)
    batch     6
    epochs    150
}
"""

CHAR_LSTM = """
network CharLSTM(vocab=auto, seq=16) {
    input tokens: int[seq]
    input targets: int[seq]
    logits = tokens -> embedding(vocab, 16) -> lstm(48) -> out: dense(vocab)
    output logits
    loss cross_entropy(logits, targets)
}
train CharLSTM {
    data      text("corpus.txt", seq=16)
    val       0.1
    optimizer adam(lr=0.01)
    clip      1.0
    batch     16
    steps     300
    every     100
}
"""

def test_cbow_predicts_every_centre_word(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The lecture's CBOW: mean of the context embeddings → dense → softmax over the 7 words.

    Two of the six contexts are the same bag of words — (say, and) → goodbye and (and, say) → i — so a
    mean-of-context model can only split its belief between goodbye and i there (argmax accuracy 5/6 at
    best); every centre word is still a top prediction of its context. Concatenating the context vectors
    (an order-aware variant) gets all six.
    """
    from netdsl.runtime.train import load_params

    import netdsl

    (tmp_path / "sentence.txt").write_text("You say goodbye and I say hello.", encoding="utf-8")
    spec = tmp_path / "cbow.net"
    spec.write_text(CBOW, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "-q"]) == 0, capsys.readouterr().err
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab == {"kind": "words", "tokens": ["you", "say", "goodbye", "and", "i", "hello", "."]}
    capsys.readouterr()
    assert main(["eval", str(spec), "--checkpoint", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 6 and result["accuracy"] == pytest.approx(5 / 6), result

    from netdsl.runtime import checkpoint

    _, arrays, _ = checkpoint.load(run)
    net = netdsl.load(spec, vocab=7)
    prog = netdsl.compile(net, batch=6)
    load_params(prog, arrays)
    context = np.array([[0, 2], [1, 3], [2, 4], [3, 1], [4, 5], [1, 6]])
    centre = np.array([1, 2, 3, 4, 1, 5])
    logits = prog.forward({"context": context, "centre": centre})["logits"].astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    top = probs.max(axis=1)
    assert (probs[np.arange(6), centre] >= top - 0.05).all(), probs.round(3)
    assert (probs[[0, 2, 4, 5], centre[[0, 2, 4, 5]]] > 0.9).all() and (probs[[1, 3], [2, 2]] > 0.4).all()

    ordered = tmp_path / "cbow_concat.net"
    ordered.write_text(CBOW.replace("mean(axis=0)", "flatten"), encoding="utf-8")
    assert main(["train", str(ordered), "--out", str(tmp_path / "run2"), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", str(ordered), "--checkpoint", str(tmp_path / "run2"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0


def corpus(n: int = 6000, seed: int = 0) -> str:
    """Structured text: a few phrases in random order, so characters follow each other predictably."""
    rng = np.random.default_rng(seed)
    phrases = ["the cat sat on the mat. ", "a dog ran to the park. ", "we eat bread and jam. ",
               "birds sing at dawn. "]
    out = []
    while sum(map(len, out)) < n:
        out.append(phrases[int(rng.integers(len(phrases)))])
    return "".join(out)[:n]


def unigram_loss(train: str, val: str) -> float:
    counts = Counter(train)
    total = sum(counts.values())
    return -sum(math.log(counts[c] / total) for c in val) / len(val)


def test_char_lstm_beats_the_unigram_model_and_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = corpus()
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    spec = tmp_path / "char.net"
    spec.write_text(CHAR_LSTM, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "-q"]) == 0, capsys.readouterr().err
    cut = len(text) - round(len(text) * 0.1)
    baseline = unigram_loss(text[:cut], text[cut:])
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_loss"] < baseline, (last, baseline)
    assert last["val_perplexity"] == pytest.approx(math.exp(last["val_loss"]))
    capsys.readouterr()
    assert main(["sample", str(spec), "--checkpoint", str(run), "--prompt", "the ", "--length", "40",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    generated = out[len("the "):].rstrip("\n")
    assert out.startswith("the ") and len(generated) == 40 and set(generated) <= set(text)
