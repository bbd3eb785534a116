"""Numerical faults: a non-finite loss or gradient stops training at that step, names the op that produced the
first non-finite value (spec line and source text), keeps the last good checkpoint and suggests remedies; no
checkpoint is ever written with non-finite values; `--detect-anomaly` checks every op on every step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime import checkpoint as ckpt
from netdsl.runtime.train import NumericalFault

import netdsl
from netdsl.cli import main

DIVIDE = """\
network D {
    input x: [4]
    input t: [1]
    y = x -> dense(1)
    z = y / (y - y)
    output z
    loss mse(z, t)
}
"""

# finite forward (1 / ±inf = 0), non-finite backward: only the gradient check catches it without --detect-anomaly
HIDDEN = """\
network H {
    input x: [4]
    input t: [1]
    y = x -> dense(1)
    q = y / (y - y)
    z = 1 / q
    output z
    loss mse(z, t)
}
"""

# LeNet's layout (conv, pool, two dense layers) without the squashing activations: lr=1e6 diverges in steps
LENETISH = """\
network Tiny(classes=10) {
    input image: [1, 8, 8]
    input label: int[]
    logits = image
        -> c1: conv(4, kernel=3) -> s2: avgpool(2)
        -> flatten
        -> f3: dense(16)
        -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
"""

MLP = """\
network MLP {
    input x: [4]
    input t: [1]
    p = x -> h: dense(8) -> tanh -> o: dense(1)
    output p
    loss mse(p, t)
}
"""


@pytest.fixture
def regression(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=x.sum(axis=1, keepdims=True))
    return tmp_path / "r.npz"


def _spec(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _checkpoints(run: Path) -> list[Path]:
    return ckpt.checkpoints(run)


def test_division_by_y_minus_y_names_the_op(tmp_path: Path, regression: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, "div.net", DIVIDE)
    run = tmp_path / "run"
    code = main(["train", str(spec), "--data", str(regression), "--steps", "5", "--every", "1", "--out", str(run), "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{spec}:5:9: error: training stopped at step 0"), err
    assert "the training loss became" in lines[0]
    assert lines[1] == "    z = y / (y - y)" and lines[2].strip().startswith("^")
    assert f"div 'div_1' at {spec}:5: y / (y - y)" in err  # the op, its file:line and its source text
    assert "no checkpoint was written before this step" in err
    assert "lower the learning rate" in err and "--clip" in err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    assert _checkpoints(run) == []


def test_the_python_api_raises_a_numerical_fault(tmp_path: Path, regression: Path) -> None:
    spec = _spec(tmp_path, "div.net", DIVIDE)
    with pytest.raises(NumericalFault) as info:
        netdsl.train(str(spec), data=str(regression), steps=3, out=tmp_path / "run", progress=False)
    fault = info.value
    assert isinstance(fault, netdsl.SpecError)
    assert fault.step == 0 and fault.checkpoint is None
    assert fault.anomaly is not None and fault.anomaly["where"] == f"{spec}:5"
    assert fault.anomaly["phase"] == "forward" and fault.anomaly["source"] == "y / (y - y)"


def test_a_non_finite_gradient_under_a_finite_loss_is_caught(tmp_path: Path, regression: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, "hidden.net", HIDDEN)
    code = main(["train", str(spec), "--data", str(regression), "--steps", "3", "--out", str(tmp_path / "a"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "training stopped at step 0" in err, err
    assert "the gradient became non-finite" in err
    assert f"{spec}:5: y / (y - y)" in err  # the checked replay names the division, not the loss

    # --detect-anomaly checks every op's output on every step: the same op, found before the step runs
    code = main(["train", str(spec), "--data", str(regression), "--steps", "3", "--out", str(tmp_path / "b"), "-q",
                 "--detect-anomaly"])
    err = capsys.readouterr().err
    assert code == 1 and "an op produced a non-finite value (--detect-anomaly)" in err, err
    assert err.startswith(f"{spec}:5:9: error: ") and f"{spec}:5: y / (y - y)" in err


def test_detect_anomaly_on_a_healthy_run_changes_nothing(tmp_path: Path, regression: Path) -> None:
    spec = _spec(tmp_path, "mlp.net", MLP)
    common = {"data": str(regression), "steps": 6, "progress": False, "optimizer": "sgd(lr=0.01, momentum=0.9)"}
    netdsl.train(str(spec), out=tmp_path / "plain", **common)
    netdsl.train(str(spec), out=tmp_path / "checked", detect_anomaly=True, **common)
    _, a, _ = ckpt.load(tmp_path / "plain")
    _, b, _ = ckpt.load(tmp_path / "checked")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_huge_learning_rate_stops_and_the_last_good_checkpoint_is_intact(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, "tiny.net", LENETISH)
    run = tmp_path / "run"
    code = main(["train", str(spec), "--data", "digits(size=8)", "--optimizer", "sgd(lr=1e6)", "--steps", "30",
                 "--every", "1", "--out", str(run), "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    first = err.strip().splitlines()[0]
    assert "training stopped at step" in first and "lr 1e+06" in first, err
    step = int(first.split("training stopped at step ")[1].split()[0])
    assert 1 <= step < 30
    # the op that produced the first non-finite value: a spec line and its source text
    assert f"at {spec}:" in err and "the first non-finite value: the forward pass of" in err
    assert "lower the learning rate (--lr 100000)" in err and "continue from the checkpoint with --resume" in err
    # the last good checkpoint: the step before the fault, complete, verified and finite
    man, arrays, path = ckpt.load(run)
    assert man["step"] == step, (man["step"], step)
    assert f"the last good checkpoint is {path}" in err
    assert all(np.isfinite(a).all() for a in arrays.values())
    assert [int(p.stem.split("-")[1]) for p in _checkpoints(run)][-1] == step  # nothing written after it


def test_no_checkpoint_is_written_with_non_finite_parameters(tmp_path: Path, regression: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An update that overflows a parameter (finite loss and gradients) stops the run at the next checkpoint,
    naming the parameter; the checkpoint before stays the latest."""
    from netdsl.runtime import optim

    spec = _spec(tmp_path, "mlp.net", MLP)
    real = optim.Optimizer.step

    def step(self: optim.Optimizer, grads: dict[str, np.ndarray], lr: float, clip: float | None = None) -> float | None:
        out = real(self, grads, lr, clip)
        if self.t == 4:
            self.params["o.bias"][...] = np.inf  # as if the 4th update overflowed
        return out

    monkeypatch.setattr(optim.Optimizer, "step", step)
    run = tmp_path / "run"
    with pytest.raises(NumericalFault) as info:
        netdsl.train(str(spec), data=str(regression), steps=8, every=2, out=run, progress=False)
    text = str(info.value)
    assert "the update of the previous step made values non-finite: o.bias" in text
    assert "parameters already non-finite before this step: o.bias" in text
    assert text.startswith(f"{spec}:4:") and "o: dense(1)" in text  # positioned at the parameter's layer
    man, arrays, path = ckpt.load(run)
    assert man["step"] == 2 and info.value.checkpoint == path
    assert all(np.isfinite(a).all() for a in arrays.values())
    assert [p.name for p in _checkpoints(run)] == ["ckpt-00000002.json"]


def test_an_injected_nan_gradient_is_named(tmp_path: Path, regression: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netdsl.compiler.program import Program

    spec = _spec(tmp_path, "mlp.net", MLP)
    real = Program.step_grads

    def step_grads(self: Program, inputs: dict[str, object], seed: int = 0, step: int = 0, **kw: object) -> object:
        out = real(self, inputs, seed=seed, step=step, **kw)
        if step == 3:
            self.grads["h.weight"][0, 0] = np.nan
        return out

    monkeypatch.setattr(Program, "step_grads", step_grads)
    run = tmp_path / "run"
    with pytest.raises(NumericalFault) as info:
        netdsl.train(str(spec), data=str(regression), steps=8, every=1, out=run, progress=False)
    assert info.value.step == 3
    assert "the gradient became non-finite (h.weight)" in str(info.value)
    man, _, _ = ckpt.load(run)
    assert man["step"] == 3  # the update of step 3 never happened: the checkpoint after step 2's update is the last
