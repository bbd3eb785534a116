"""`sampling random`: every training batch drawn on its own from (seed, step), as nanoGPT's get_batch draws text
windows at uniformly random offsets; the default `sampling shuffle` keeps shuffled epochs of stride-T windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime.config import Config, resolve
from netdsl.runtime.data import Batcher, bind, split
from netdsl.runtime.loaders import text

import netdsl
from netdsl import SpecError

LM = """
network LM(vocab=auto) {{
    input tokens: int[8]
    input targets: int[8]
    logits = tokens -> embedding(vocab, 4) -> dense(vocab)
    output logits
    loss cross_entropy(logits, targets)
}}
train LM {{
    data     text("t.txt", seq=8)
    {line}
    batch    4
    steps    3
}}
"""


def _bound(tmp_path: Path, n: int = 1000) -> object:
    p = tmp_path / "t.txt"
    rng = np.random.default_rng(0)
    p.write_text("".join(rng.choice(list("abcdefghij"), n)), encoding="utf-8")
    ds, _ = split(text(str(p), seq=8), 0.1)
    return bind(ds, netdsl.loads(LM.format(line=""), vocab=10))


def _starts(bound: object, feeds: dict[str, np.ndarray]) -> list[int]:
    """Where in the training stream each window of a batch starts (the random text has one match)."""
    stream = bound.ds.data.stream  # type: ignore[attr-defined]
    out = []
    for row in feeds["tokens"]:
        hits = [i for i in range(len(stream) - 8) if (stream[i:i + 8] == row).all()]
        assert len(hits) == 1
        out.append(hits[0])
    return out


def test_random_sampling_draws_windows_at_any_offset(tmp_path: Path) -> None:
    bound = _bound(tmp_path)
    b = Batcher(bound, 64, seed=5, sampling="random")
    starts = []
    for step in range(20):
        f = b.get(0, step % b.steps_per_epoch, step)
        assert f["tokens"].shape == (64, 8)
        assert (f["targets"][:, :-1] == f["tokens"][:, 1:]).all()  # targets: the same text one character on
        starts += _starts(bound, f)
    stream_len = len(bound.ds.data.stream)  # type: ignore[attr-defined]
    assert min(starts) >= 0 and max(starts) <= stream_len - 9
    # every residue mod 8 (shuffled epochs give one phase per epoch), spread over the whole stream
    assert len({s % 8 for s in starts[:64]}) == 8
    assert min(starts) < stream_len // 10 and max(starts) > stream_len * 9 // 10
    # drawn with replacement, independently per step: a pure function of (seed, step), not of the epoch
    again = Batcher(bound, 64, seed=5, sampling="random")
    assert (again.get(7, 0, 3)["tokens"] == b.get(0, 3, 3)["tokens"]).all()
    assert not (b.get(0, 0, 4)["tokens"] == b.get(0, 0, 3)["tokens"]).all()
    assert not (Batcher(bound, 64, seed=6, sampling="random").get(0, 3, 3)["tokens"] == b.get(0, 3, 3)["tokens"]).all()


def test_shuffled_epochs_stay_the_default(tmp_path: Path) -> None:
    bound = _bound(tmp_path)
    b = Batcher(bound, 64, seed=5)
    starts = _starts(bound, b.get(0, 0, 0))
    assert len({s % 8 for s in starts}) == 1  # one phase for the whole epoch, windows at stride 8


def test_the_recipe_line_and_the_flag(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("abcdefghij" * 50, encoding="utf-8")
    spec = tmp_path / "lm.net"
    spec.write_text(LM.format(line="sampling random"), encoding="utf-8")
    net = netdsl.load(spec, vocab=10)
    assert net.recipe.sampling == "random"
    assert resolve(net.recipe, None, {}).sampling == "random"
    assert resolve(net.recipe, None, {"sampling": "shuffle"}).sampling == "shuffle"
    cfg = resolve(net.recipe, None, {})
    assert Config.from_json(cfg.to_json()).sampling == "random"  # a resumed run keeps drawing the same way
    spec.write_text(LM.format(line="sampling randomly"), encoding="utf-8")
    with pytest.raises(SpecError) as e:
        netdsl.load(spec, vocab=10)
    first = str(e.value).split("\n")[0]
    assert first.startswith(f"{spec}:11:5: error: 'sampling' expects shuffle or random, found randomly")
    with pytest.raises(SpecError, match="sampling must be shuffle or random"):
        resolve(None, None, {"sampling": "uniform"})


def test_a_run_draws_at_random_and_resumes_the_same_way(tmp_path: Path) -> None:
    from netdsl.runtime import checkpoint as ckpt

    (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    spec = tmp_path / "lm.net"
    spec.write_text(LM.format(line="sampling random"), encoding="utf-8")
    straight = netdsl.train(str(spec), steps=4, every=2, out=tmp_path / "a", progress=False)
    netdsl.train(str(spec), steps=2, every=2, out=tmp_path / "b", progress=False)
    man, _, _ = ckpt.load(tmp_path / "b")
    assert man["config"]["sampling"] == "random"
    resumed = netdsl.train(str(spec), steps=4, every=2, out=tmp_path / "b", resume=True, progress=False)
    assert resumed[-1]["train_loss"] == pytest.approx(straight[-1]["train_loss"], rel=1e-6)
    shuffled = netdsl.train(str(spec), steps=4, every=2, out=tmp_path / "c", sampling="shuffle", progress=False)
    assert shuffled[-1]["train_loss"] != pytest.approx(straight[-1]["train_loss"], rel=1e-6)
