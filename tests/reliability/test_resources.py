"""Resource guards: a network or a batch that cannot fit is refused before anything is allocated, with the planned
bytes and the largest batch that fits; absurd sizes are refused by the checker, not by the operating system."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from netdsl.compiler import program

import netdsl
from netdsl.cli import main

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "specs" / "bad"
LENET = REPO / "specs" / "lenet5.net"
MIB = 2**20

MLP = """\
network MLP {
    input x: [4]
    input y: int[]
    logits = x -> h: dense(256) -> relu -> o: dense(256) -> relu -> out: dense(3)
    output logits
    loss cross_entropy(logits, y)
}
"""


def _fit(message: str) -> int:
    m = re.search(r"the largest batch that fits is (\d+)", message)
    assert m, message
    return int(m.group(1))


def _need(prog: program.Program) -> int:
    """What the program's own check counts: the planned peak plus parameters, gradients and one more copy."""
    return prog.peak_bytes() + sum(p.size for p in prog.net.ir.params.values()) * 4 * 3


def test_a_batch_that_cannot_fit_is_refused_by_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    net = netdsl.load(LENET)
    monkeypatch.setattr(program, "available_memory", lambda: 20 * MIB)
    with pytest.raises(netdsl.SpecError) as info:
        netdsl.compile(net, batch=4096)
    text = str(info.value)
    assert "LeNet5 at batch 4096 needs" in text and "only 0.02 GiB of memory is available" in text
    planned = int(re.search(r"planned peak ([\d,]+) bytes", text).group(1).replace(",", ""))
    assert planned > 20 * MIB
    fit = _fit(text)
    assert 100 < fit < 4096
    # the batch it suggests does fit, and runs a training step inside the budget
    prog = netdsl.compile(net, batch=fit)
    assert _need(prog) <= 0.9 * 20 * MIB
    x = np.zeros((fit, 1, 32, 32), np.float32)
    y = np.zeros(fit, np.int64)
    loss, grads = prog.loss_and_grads({"image": x, "label": y})
    assert np.isfinite(loss) and set(grads) == set(prog.trainable)


def test_parameters_that_cannot_fit_are_refused_before_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    net = netdsl.load(LENET)
    monkeypatch.setattr(program, "available_memory", lambda: 512 * 1024)

    def allocate(*args: object, **kw: object) -> None:
        raise AssertionError("parameters were allocated before the memory check")

    monkeypatch.setattr(program, "init_params", allocate)
    with pytest.raises(netdsl.SpecError) as info:
        netdsl.compile(net, batch=1)
    text = str(info.value)
    assert text.startswith(f"error: {LENET}: LeNet5 has 61,706 parameter values")
    assert "740,472 bytes" in text and "even batch 1 does not fit" in text


def test_netdsl_compile_refuses_with_exit_status_1(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(program, "available_memory", lambda: 20 * MIB)
    assert main(["compile", str(LENET), "--batch", "4096"]) == 1
    err = capsys.readouterr().err
    assert "planned peak" in err and "the largest batch that fits is" in err and "Traceback" not in err


def test_netdsl_train_refuses_a_batch_that_cannot_fit_then_trains_with_the_suggested_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "blobs.npz", x=rng.standard_normal((300, 4)).astype(np.float32),
             y=rng.integers(0, 3, 300))
    spec = tmp_path / "mlp.net"
    spec.write_text(MLP, encoding="utf-8")
    monkeypatch.setattr(program, "available_memory", lambda: 4 * MIB)
    run = tmp_path / "run"
    argv = ["train", str(spec), "--data", str(tmp_path / "blobs.npz"), "--steps", "2", "--optimizer", "sgd(lr=0.1)",
            "--out", str(run), "-q"]
    assert main([*argv, "--batch", "4096"]) == 1
    err = capsys.readouterr().err
    assert "MLP at batch 4096 needs" in err and "planned peak" in err, err
    fit = _fit(err)
    assert not list(run.glob("ckpt-*"))  # refused before training: nothing written
    assert main([*argv, "--batch", str(min(fit, 256))]) == 0, capsys.readouterr().err


ABSURD = ["size_dense", "size_input", "size_repeat", "size_unroll", "size_parameter", "size_arithmetic",
          "size_long_number"]


@pytest.mark.parametrize("stem", ABSURD)
def test_absurd_sizes_are_refused_by_the_checker_under_a_small_address_space(stem: str) -> None:
    """`netdsl check` in a process limited to 1 GiB of address space: the checker refuses a dense of 10¹² units,
    a 10⁹-step unroll, a 10¹⁰-element parameter … quickly, with its diagnostic (not a MemoryError or a kill)."""
    spec = BAD / f"{stem}.net"
    want = spec.read_text(encoding="utf-8").splitlines()[0].split(": ", 2)[2]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "netdsl.cli", "check", str(spec)], capture_output=True, text=True,
                          timeout=60, preexec_fn=limit, check=False)
    assert time.perf_counter() - t0 < 30
    assert proc.returncode == 1, proc.stderr
    assert want in proc.stderr and "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr
