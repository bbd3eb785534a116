"""The training loop through the Python API and the CLI: determinism, exact resume, metrics, eval, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime import checkpoint as ckpt

import netdsl
from netdsl.cli import main

REPO = Path(__file__).resolve().parents[2]


def params_of(run: Path) -> dict[str, np.ndarray]:
    _, arrays, _ = ckpt.load(run)
    return arrays


def test_same_seed_same_data_bit_identical_parameters(mlp_spec: Path, tmp_path: Path) -> None:
    h1 = netdsl.train(str(mlp_spec), out=tmp_path / "a", seed=5, progress=False)
    h2 = netdsl.train(str(mlp_spec), out=tmp_path / "b", seed=5, progress=False)
    a, b = params_of(tmp_path / "a"), params_of(tmp_path / "b")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in h1] == [h["val_loss"] for h in h2]
    netdsl.train(str(mlp_spec), out=tmp_path / "c", seed=6, progress=False)
    c = params_of(tmp_path / "c")
    assert not np.array_equal(a["param/h.weight"], c["param/h.weight"])


def test_two_epochs_equal_one_epoch_then_resume(mlp_spec: Path, tmp_path: Path) -> None:
    straight = netdsl.train(str(mlp_spec), epochs=2, out=tmp_path / "s", optimizer="sgd(lr=0.1, momentum=0.9)",
                            progress=False)
    netdsl.train(str(mlp_spec), epochs=1, out=tmp_path / "r", optimizer="sgd(lr=0.1, momentum=0.9)", progress=False)
    resumed = netdsl.train(str(mlp_spec), epochs=2, out=tmp_path / "r", resume=True, progress=False)
    a, b = params_of(tmp_path / "s"), params_of(tmp_path / "r")
    assert sorted(a) == sorted(b) and "opt/h.weight/momentum" in a
    assert all(np.array_equal(a[k], b[k]) for k in a), "resumed parameters differ from the straight run"
    assert [h["step"] for h in resumed] == [h["step"] for h in straight]
    assert [h["val_loss"] for h in resumed] == [h["val_loss"] for h in straight]
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [h["step"] for h in straight]


def test_resume_mid_epoch_with_every(mlp_spec: Path, tmp_path: Path) -> None:
    netdsl.train(str(mlp_spec), steps=12, every=4, out=tmp_path / "s", seed=1, progress=False)
    netdsl.train(str(mlp_spec), steps=6, every=3, out=tmp_path / "r", seed=1, progress=False)  # stops mid-epoch
    netdsl.train(str(mlp_spec), steps=12, every=4, out=tmp_path / "r", resume=True, progress=False)
    a, b = params_of(tmp_path / "s"), params_of(tmp_path / "r")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_history_metrics_and_auto_classes(mlp_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = netdsl.train(str(mlp_spec), epochs=3, out=tmp_path / "run", progress=False)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("done: MLP, 3 epochs, 27 steps") and "val_accuracy" in out[-1]
    assert [h["step"] for h in history] == [9, 18, 27]
    keys = {"step", "epoch", "lr", "train_loss", "val_loss", "val_accuracy", "examples_per_s"}
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(keys <= set(x) for x in lines)
    assert history[-1]["val_accuracy"] > 0.6 and history[-1]["val_loss"] < history[0]["val_loss"]
    man, _, _ = ckpt.load(tmp_path / "run")
    assert man["values"] == {"classes": 3} and man["train_examples"] == 270 and man["epoch"] == 3
    assert man["spec_text"].strip().startswith("network MLP") and man["config"]["optimizer"]["name"] == "adam"
    png = tmp_path / "run" / "curves.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_train_eval_and_json(mlp_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "cli"
    assert main(["train", str(mlp_spec), "--epochs", "2", "--out", str(run), "--lr", "0.02", "-q"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done: MLP, 2 epochs")
    man, _, _ = ckpt.load(run)
    assert man["config"]["optimizer"]["kwargs"]["lr"] == 0.02
    assert main(["eval", str(mlp_spec), "--checkpoint", str(run), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"loss", "accuracy", "examples"} and r["examples"] == 30
    assert r["loss"] == pytest.approx(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"])
    assert main(["eval", str(mlp_spec), "--checkpoint", str(run / "ckpt-00000018.json"), "--data",
                 str(mlp_spec.parent / "blobs.npz")]) == 0
    assert "(data, 300 examples)" in capsys.readouterr().out


def test_defaults_are_printed_without_a_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import MLP, blobs

    x, y = blobs(80)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    spec = tmp_path / "bare.net"
    spec.write_text(MLP.split("train MLP")[0], encoding="utf-8")
    history = netdsl.train(str(spec), data=str(tmp_path / "d.npz"))
    out = capsys.readouterr().out
    assert "defaults (no recipe line or flag for them): adam(lr=0.001), batch 64, 10 epochs, val 0.1" in out
    assert len(history) == 10 and "72 training / 8 validation examples" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "npz('nothere.npz')"], "nothere.npz: no such file"),
    (["--optimizer", "adamm(lr=1)"], "unknown optimizer 'adamm'"),
    (["--schedule", "step(every=0)"], "every must be a positive whole number of epochs"),
    (["--val", "1.5"], "val must be a fraction in [0, 1) or a file"),
    (["--resume"], "nothing to resume"),
    (["--set", "classes=2"], "label 2 in field 'y' is out of range for the network's 2 classes"),
])
def test_cli_errors_exit_1_with_a_message(mlp_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    code = main(["train", str(mlp_spec), "--out", str(tmp_path / "e"), "-q", "--epochs", "2", *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err


def test_diverging_loss_stops_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=x.sum(axis=1, keepdims=True))
    spec = tmp_path / "reg.net"
    spec.write_text("network R {\n input x: [4]\n input t: [1]\n p = x -> dense(1)\n output p\n"
                    " loss mse(p, t)\n}\n", encoding="utf-8")
    code = main(["train", str(spec), "--data", str(tmp_path / "r.npz"), "--optimizer", "sgd(lr=1e6)", "-q",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "the training loss became" in err and "lower the learning rate" in err


def test_resume_refuses_a_changed_spec(mlp_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(mlp_spec), "--epochs", "1", "--out", str(run), "-q"]) == 0
    mlp_spec.write_text(mlp_spec.read_text().replace("dense(16)", "dense(12)"), encoding="utf-8")
    assert main(["train", str(mlp_spec), "--epochs", "2", "--out", str(run), "--resume", "-q"]) == 1
    err = capsys.readouterr().err
    assert "the checkpoint does not match MLP" in err and "h.weight [16, 4] in the checkpoint, [12, 4] now" in err
    assert main(["eval", str(mlp_spec), "--checkpoint", str(run)]) == 1
    assert "h.weight" in capsys.readouterr().err


def test_init_from_loads_matching_parameters(mlp_spec: Path, tmp_path: Path) -> None:
    netdsl.train(str(mlp_spec), epochs=1, out=tmp_path / "a", progress=False)
    first = params_of(tmp_path / "a")
    netdsl.train(str(mlp_spec), steps=1, out=tmp_path / "b", init_from=tmp_path / "a", optimizer="sgd(lr=1e-9)",
                 seed=9, progress=False)
    second = params_of(tmp_path / "b")
    assert np.allclose(first["param/h.weight"], second["param/h.weight"], atol=1e-6)


@pytest.mark.skipif(not (REPO / "specs" / "lenet5.net").exists(), reason="specs/lenet5.net is not written yet")
def test_lenet5_on_digits_shortened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`netdsl train specs/lenet5.net` with its recipe, cut to 3 epochs: already well above chance."""
    code = main(["train", str(REPO / "specs" / "lenet5.net"), "--epochs", "3", "--out", str(tmp_path / "lenet"), "-q"])
    assert code == 0
    rec = json.loads((tmp_path / "lenet" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["val_accuracy"] >= 0.85, rec


def test_ctrl_c_checkpoints_mid_epoch_and_resume_is_exact(mlp_spec: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from netdsl.runtime.data import Batcher

    netdsl.train(str(mlp_spec), epochs=2, out=tmp_path / "s", progress=False)
    real_get = Batcher.get

    def get(self: Batcher, epoch: int, pos: int, step: int) -> dict[str, np.ndarray]:
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during step 5
        return real_get(self, epoch, pos, step)

    monkeypatch.setattr(Batcher, "get", get)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 6"):
        netdsl.train(str(mlp_spec), epochs=2, out=tmp_path / "r", progress=False)
    monkeypatch.undo()
    man, _, _ = ckpt.load(tmp_path / "r")
    assert man["step"] == 6 and man["position"] == 6 * 32
    netdsl.train(str(mlp_spec), out=tmp_path / "r", resume=True, progress=False)
    a, b = params_of(tmp_path / "s"), params_of(tmp_path / "r")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_augmented_images_and_a_validation_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0.5).astype(np.int64)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "val.npz", x=x[:10], y=y[:10])
    spec = tmp_path / "cnn.net"
    spec.write_text("""
network Tiny(classes=2) {
    input image: [3, 8, 8]
    input label: int[]
    logits = image -> conv(4, kernel=3, pad=1) -> relu -> global_avgpool -> dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
train Tiny {
    data    npz("train.npz")
    val     "val.npz"
    augment crop(pad=2), flip, normalize(mean=[0.5, 0.5, 0.5], std=0.25)
    batch   8
    epochs  2
}
""", encoding="utf-8")
    h1 = netdsl.train(str(spec), out=tmp_path / "a", progress=False)
    h2 = netdsl.train(str(spec), out=tmp_path / "b", progress=False)
    assert h1[-1]["val_loss"] == h2[-1]["val_loss"] and [h["step"] for h in h1] == [5, 10]
    man, _, _ = ckpt.load(tmp_path / "a")
    assert man["config"]["val"] == "val.npz" and [a["name"] for a in man["config"]["augment"]] == [
        "crop", "flip", "normalize"]


def test_plain_progress_lines_without_tqdm(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from netdsl.runtime.metrics import Progress

    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    bar = Progress(total=4, enabled=True)
    assert bar.bar is None
    for _ in range(4):
        bar.update(0.5, 1234.0, 0)
    bar.write("a line")
    bar.close()
    out = capsys.readouterr()
    assert "step 4/4 (epoch 1): loss 0.5000, 1,234 examples/s, ETA 0:00" in out.err and "a line" in out.out


def test_train_a_loaded_net_as_the_interface_shows(mlp_spec: Path, tmp_path: Path) -> None:
    net = netdsl.load(mlp_spec, classes=3)
    history = netdsl.train(net, data=f'npz("{mlp_spec.parent / "blobs.npz"}")', epochs=1, batch=30,
                           out=tmp_path / "run", progress=False)
    assert [h["step"] for h in history] == [9] and history[0]["val_accuracy"] is not None
    with pytest.raises(netdsl.SpecError, match="cannot be overridden on a loaded Net"):
        netdsl.train(net, classes=4, progress=False)
