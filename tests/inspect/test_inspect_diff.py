"""`netdsl diff` and `loadable`: ResNet-18 → ResNet-34 adds exactly 8 blocks (+10,108,160 parameters); a
ResNet-18 checkpoint loads into a 100-class ResNet-18 except `fc`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.cli import main
from netdsl.diff import checkpoint_shapes, diff, loadable

ROOT = Path(__file__).resolve().parents[2]
R18 = str(ROOT / "specs/resnet18.net")
R34 = str(ROOT / "specs/resnet34.net")


def test_resnet18_to_resnet34_adds_eight_blocks() -> None:
    d = diff(netdsl.load(R18), netdsl.load(R34))
    assert [(g.name, g.kind) for g in d.added] == [
        ("layer1.2", "Basic"), ("layer2.2", "Basic"), ("layer2.3", "Basic"), ("layer3.2", "Basic"),
        ("layer3.3", "Basic"), ("layer3.4", "Basic"), ("layer3.5", "Basic"), ("layer4.2", "Basic")]
    assert sum(g.params for g in d.added) == 10_108_160 == d.params_delta
    assert (d.params_a, d.params_b) == (11_689_512, 21_797_672)
    assert d.removed == [] and d.changed == []
    assert [g.params for g in d.added[:2]] == [73_984, 295_424]


def test_diff_cli_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", R18, R34]) == 0
    out = capsys.readouterr().out
    assert "added: 8 (8 blocks, 56 layers)" in out
    assert out.count("\n  + layer") == 8
    assert "parameters: 11,689,512 → 21,797,672 (+10,108,160)" in out
    assert "removed: 0" in out and "changed: 0" in out
    assert "102 of 182 tensors" in out  # everything of ResNet-18 loads into ResNet-34
    # and back: the 8 blocks are removed
    assert main(["diff", R34, R18]) == 0
    out = capsys.readouterr().out
    assert out.count("\n  - layer") == 8 and "(−10,108,160)" in out


def test_changed_layers_and_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", R18, R18, "--set-b", "classes=100"]) == 0
    out = capsys.readouterr().out
    assert "~ fc: units 1000 → 100; output [1000] → [100]; weight [1000, 512] → [100, 512]; bias [1000] → [100]; " \
           "params 513,000 → 51,300 (−461,700)" in out
    assert "skipped fc.weight: shape [1000, 512] in the checkpoint, [100, 512] in ResNet18" in out


def test_loadable_resnet18_into_100_classes() -> None:
    a = netdsl.load(R18)
    b = netdsl.load(R18, classes=100)
    loaded, skipped = loadable({k: p.shape for k, p in a.ir.params.items()}, b)
    assert set(skipped) == {"fc.weight", "fc.bias"}
    assert "[1000, 512] in the checkpoint, [100, 512]" in skipped["fc.weight"]
    assert set(loaded) == set(b.ir.params) - {"fc.weight", "fc.bias"}
    assert "layer4.1.bn2.running_var" in loaded  # running statistics load too
    # parameters missing on either side are named, with the side
    small = {"conv1.weight": (64, 3, 7, 7), "head.weight": (3, 3)}
    loaded, skipped = loadable(small, b)
    assert loaded == ["conv1.weight"]
    assert skipped["head.weight"] == "not in ResNet18: ignored"
    assert skipped["fc.bias"].startswith("not in the checkpoint")


def test_diff_with_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = netdsl.load(R18, classes=10)
    arrays = {f"param/{k}": np.zeros(p.shape, np.float32) for k, p in net.ir.params.items()}
    try:
        from netdsl.runtime.checkpoint import save
    except ImportError:
        path = tmp_path / "ckpt.npz"
        np.savez(path, **arrays)
    else:
        path = save(tmp_path / "run", 7, arrays, {"spec_hash": net.spec_hash})
    shapes, _ = checkpoint_shapes(path.parent if path.suffix == ".json" else path)
    assert shapes["fc.weight"] == (10, 512) and len(shapes) == len(net.ir.params)
    assert main(["diff", R18, R18, "--set-a", "classes=10", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "that load into ResNet18 (same name and shape): 100 of 102 tensors" in out
    assert "skipped fc.weight: shape [10, 512] in the checkpoint, [1000, 512] in ResNet18" in out


def test_diff_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", R18, "nope.net"]) == 1
    assert "nope.net: no such file" in capsys.readouterr().err


def test_settings_and_shape_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lenet = (ROOT / "tests/inspect/lenet5.net").read_text()
    b = lenet.replace("-> c3: conv(16, kernel=5)", "-> c3: conv(20, kernel=5)").replace(": [16, 5, 5]", "")
    b = b.replace("-> f5: dense(120) -> tanh", "-> f5: dense(120) -> tanh -> drop: dropout(0.5)")
    (tmp_path / "b.net").write_text(b)
    assert main(["diff", str(ROOT / "tests/inspect/lenet5.net"), str(tmp_path / "b.net")]) == 0
    out = capsys.readouterr().out
    assert "added: 1\n  + drop  dropout  [120]" in out
    assert "changed: 2\n  ~ c3: out 16 → 20; output [16, 10, 10] → [20, 10, 10]" in out
    assert "~ f5: weight [120, 400] → [120, 500]; params 48,120 → 60,120 (+12,000)" in out
    assert "shapes changed (settings unchanged): 3" in out and "~ flatten_1: output [400] → [500]" in out
    assert "parameters: 61,706 → 74,310 (+12,604)" in out
