"""Crash safety: `netdsl train` killed with SIGKILL at random points resumes with `--resume` and ends
bit-identical to an uninterrupted run; no checkpoint file is ever partial.

A small MLP trains for 40 steps with a checkpoint after every step (`--every 1`), in processes of its own. The
uninterrupted run goes first (it also warms Numba's on-disk kernel cache for the others). Then five runs are
each killed at a random point: after a random checkpoint k appears, the test times the next step (until
checkpoint k + 1 appears) and kills at a random moment of the step after, so kills land anywhere in a step —
computing, evaluating, or writing a checkpoint. Each killed run is checked (every `.json` and `.npz` in the
directory is whole: manifests load and pass their checksum, arrays files read completely) and resumed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime import checkpoint as ckpt

SPEC = """\
network MLP(classes=auto) {
    input x: [16]
    input y: int[]
    logits = x -> h: dense(64) -> tanh -> g: dense(64) -> tanh -> out: dense(classes)
    output logits
    loss cross_entropy(logits, y)
}
train MLP {
    data npz("blobs.npz")
    optimizer adam(lr=0.01)
    batch 16
    steps 40
    every 1
    seed 3
}
"""
STEPS = 40
KILLS = 5


def _train(spec: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, NETDSL_DEBUG="1")
    return subprocess.Popen([sys.executable, "-m", "netdsl.cli", "train", str(spec), "--out", str(out), "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=spec.parent)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"


def _no_partial_files(run: Path) -> list[int]:
    """Every checkpoint manifest loads and passes its checksum; every arrays file is a whole zip of whole arrays;
    every other .json is valid JSON. Returns the steps of the manifests."""
    import json

    steps = []
    for p in sorted(run.iterdir()):
        if p.name.startswith("ckpt-") and p.suffix == ".json":
            man, arrays, _ = ckpt.load(p)  # verified: refuses a damaged checkpoint
            assert man["step"] == int(p.stem.split("-")[1]) and arrays
            steps.append(man["step"])
        elif p.suffix == ".npz":
            with zipfile.ZipFile(p) as z:
                assert z.testzip() is None, p
            with np.load(p, allow_pickle=False) as f:
                for k in f.files:
                    f[k]
        elif p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
    return steps


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1))
    spec = tmp_path / "mlp.net"
    spec.write_text(SPEC, encoding="utf-8")

    _finish(_train(spec, tmp_path / "straight"))
    ref_man, ref, _ = ckpt.load(tmp_path / "straight")
    assert ref_man["step"] == STEPS

    pick = random.Random(20240611)
    mid_write = 0
    for i in range(KILLS):
        run = tmp_path / f"killed{i}"
        target = pick.randrange(1, STEPS - 6)
        fraction = pick.random()
        proc = _train(spec, run)
        seen = []
        for k in (target, target + 1):  # time one step: between two checkpoints
            marker = run / f"ckpt-{k:08d}.json"
            deadline = time.perf_counter() + 120
            while not marker.exists() and proc.poll() is None and time.perf_counter() < deadline:
                time.sleep(0.0002)
            seen.append(time.perf_counter())
        time.sleep(fraction * (seen[1] - seen[0]))  # a random moment of the next step
        was_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert was_running, f"run {i} ended before the kill (target step {target})"
        mid_write += bool(list(run.glob(".ckpt-*.tmp")))
        steps = _no_partial_files(run)
        assert steps and steps[-1] >= target + 1 and steps[-1] < STEPS, (i, target, steps)

        _finish(_train(spec, run, "--resume"))
        _no_partial_files(run)
        man, got, _ = ckpt.load(run)
        assert man["step"] == STEPS
        assert sorted(got) == sorted(ref)
        diff = [k for k in ref if not np.array_equal(got[k], ref[k])]
        assert not diff, f"run {i} (killed after step {steps[-1]}): resumed arrays differ: {diff[:5]}"
        assert not list(run.glob(".ckpt-*.tmp")), "a killed write's temporary file was left behind"
    print(f"{KILLS} kills, {mid_write} of them while a checkpoint was being written")


def test_a_new_run_never_mixes_with_an_earlier_runs_checkpoints(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Starting afresh (no --resume) in a directory holding checkpoints is refused: the new run's checkpoints
    would be deleted by keeping the newest three (the old run's), and --resume would pick the old run."""
    from netdsl.cli import main

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    spec = tmp_path / "mlp.net"
    spec.write_text(SPEC.replace("steps 40", "steps 6"), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "-q"]) == 0
    (run / ".ckpt-00000007.npz.x1y2.tmp").write_bytes(b"PK\x03\x04 half a file")  # as a killed write leaves it
    before = sorted(p.name for p in run.glob("ckpt-*"))
    assert main(["train", str(spec), "--out", str(run), "-q", "--steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "holds the checkpoints of an earlier run (the latest is ckpt-00000006.json)" in err
    assert "--resume" in err
    assert sorted(p.name for p in run.glob("ckpt-*")) == before  # untouched
    assert not list(run.glob(".ckpt-*.tmp"))  # but a killed write's leftovers are swept
    assert main(["train", str(spec), "--out", str(run), "-q", "--steps", "8", "--resume"]) == 0
    assert ckpt.load(run)[0]["step"] == 8
