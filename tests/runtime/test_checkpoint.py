"""Checkpoints: atomic writes, checksum and truncation refusal, no unpickling, spec mismatch messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime import checkpoint as ckpt

import netdsl
from netdsl import SpecError

NET = """
network T(classes=3, width=4) {
    input x: [2]
    input y: int[]
    logits = x -> h: dense(width) -> relu -> out: dense(classes)
    output logits
    loss cross_entropy(logits, y)
}
"""


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"param/h.weight": rng.standard_normal((4, 2)).astype(np.float32), "opt/h.weight/m": np.zeros((4, 2))}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = ckpt.save(tmp_path, 7, arrays(), {"note": "x"})
    assert path.name == "ckpt-00000007.json" and (tmp_path / "ckpt-00000007.npz").is_file()
    man, arr, where = ckpt.load(tmp_path)
    assert where == path and man["step"] == 7 and man["note"] == "x" and man["format"] == ckpt.FORMAT
    assert all((arr[k] == v).all() and arr[k].dtype == v.dtype for k, v in arrays().items())
    assert ckpt.load(tmp_path / "ckpt-00000007.npz")[0]["step"] == 7
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_keeps_the_newest_and_finds_the_latest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        ckpt.save(tmp_path, step, arrays(), {}, keep=2)
    assert [p.name for p in ckpt.checkpoints(tmp_path)] == ["ckpt-00000003.json", "ckpt-00000004.json"]
    assert not (tmp_path / "ckpt-00000001.npz").exists()
    assert ckpt.locate(tmp_path).name == "ckpt-00000004.json"


def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt.save(tmp_path, 1, arrays(), {})
    before = (tmp_path / "ckpt-00000001.npz").read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError):
        ckpt.save(tmp_path, 2, arrays(), {})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001.json", "ckpt-00000001.npz"]
    assert (tmp_path / "ckpt-00000001.npz").read_bytes() == before
    assert ckpt.load(tmp_path)[0]["step"] == 1


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    ckpt.save(tmp_path, 3, arrays(), {})
    changed = arrays()
    changed["param/h.weight"][0, 0] += 1
    np.savez(tmp_path / "ckpt-00000003.npz", **changed)  # a different file under the same manifest
    with pytest.raises(SpecError) as e:
        ckpt.load(tmp_path)
    assert "ckpt-00000003.json: damaged checkpoint, refused: the checksum of ckpt-00000003.npz does not match" in str(
        e.value)


def test_truncated_arrays_and_manifest_are_refused(tmp_path: Path) -> None:
    ckpt.save(tmp_path, 1, arrays(), {})
    ckpt.save(tmp_path, 2, arrays(), {})
    npz = tmp_path / "ckpt-00000002.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(SpecError) as e:
        ckpt.load(tmp_path)
    msg = str(e.value)
    assert "damaged checkpoint, refused: ckpt-00000002.npz is truncated or corrupt" in msg
    assert "earlier checkpoints in" in msg and "ckpt-00000001.json" in msg
    man = tmp_path / "ckpt-00000001.json"
    man.write_text(man.read_text()[:50])
    with pytest.raises(SpecError) as e:
        ckpt.load(man)
    assert "the manifest is not readable JSON" in str(e.value)


def test_loading_never_unpickles(tmp_path: Path) -> None:
    ckpt.save(tmp_path, 1, arrays(), {})
    np.savez(tmp_path / "ckpt-00000001.npz", **{"param/h.weight": np.array([object()], dtype=object)})
    with pytest.raises(SpecError) as e:
        ckpt.load(tmp_path)
    assert "damaged checkpoint, refused" in str(e.value) and "allow_pickle" in str(e.value)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "ckpt-00000001.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(SpecError) as e:
        ckpt.load(tmp_path)
    assert "not a netdsl checkpoint manifest" in str(e.value)
    with pytest.raises(SpecError) as e:
        ckpt.load(tmp_path / "empty")
    assert "no such checkpoint" in str(e.value)


def test_mismatch_names_the_differing_parameters() -> None:
    net = netdsl.loads(NET)
    man = {"spec_hash": net.spec_hash, "param_shapes": {k: list(p.shape) for k, p in net.ir.params.items()},
           "values": ckpt.encode_values(net.values)}
    assert ckpt.mismatch(man, net) is None
    wider = netdsl.loads(NET, width=8)
    why = ckpt.mismatch(man, wider)
    assert why is not None
    assert "h.weight [4, 2] in the checkpoint, [8, 2] now" in why and "width=4 in the checkpoint, 8 now" in why
    renamed = netdsl.loads(NET.replace("out: dense", "head: dense"))
    why = ckpt.mismatch(man, renamed)
    assert "new parameters: head.weight, head.bias" in why and "no longer in the spec: out.weight, out.bias" in why


def _metrics(d: Path) -> str:
    lines = [json.dumps({"step": s, "train_loss": 1.0 / s}) for s in (10, 20, 30)]
    (d / "metrics.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return (d / "metrics.jsonl").read_text(encoding="utf-8")


def test_resume_rewrites_metrics_jsonl_keeping_the_lines_up_to_the_checkpoint(tmp_path: Path) -> None:
    from netdsl.runtime.metrics import MetricsLog

    _metrics(tmp_path)
    MetricsLog(tmp_path, resume_step=20).append({"step": 25})
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert steps == [10, 20, 25]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_run_killed_while_metrics_jsonl_is_rewritten_leaves_the_old_lines(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           where: str) -> None:
    """Resuming rewrites metrics.jsonl without the lines after the checkpoint; dying during that rewrite (the
    disk full at the flush, the process killed before the rename) must not leave a truncated or empty file."""
    import os

    from netdsl.runtime.metrics import MetricsLog

    before = _metrics(tmp_path)

    def die(*args: object) -> None:
        raise KeyboardInterrupt if where == "replace" else OSError(28, "No space left on device")

    monkeypatch.setattr(os, where, die)
    with pytest.raises((OSError, KeyboardInterrupt)):
        MetricsLog(tmp_path, resume_step=20)
    monkeypatch.undo()
    assert (tmp_path / "metrics.jsonl").read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary file left behind
