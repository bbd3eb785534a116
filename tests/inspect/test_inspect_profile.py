"""`netdsl compile SPEC --profile`: every kernel call of the training step is listed, in order, with its spec
line, and the kernel times add up to the step time measured separately through the Program API."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.cli import main
from netdsl.commands import print_profile

ROOT = Path(__file__).resolve().parents[2]
LENET = ROOT / "specs/lenet5.net"
ROW = re.compile(r"^\s*(\d+\.\d+)\s+(\d+\.\d+)%\s+(?:[\d.]+\s+)?(\S+)\s+(.*)$")


def _profile_rows(out: str) -> list[tuple[float, str, str]]:
    """(ms, kernel, the rest of the line) for every row of the printed profile table."""
    rows = []
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((float(m.group(1)), m.group(3), m.group(4)))
    return rows


def _step_ms(prog: object, feeds: dict[str, np.ndarray], steps: int) -> float:
    """The median of `steps` training steps, each timed on its own (a preempted step does not count)."""
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        prog.step_grads(feeds, update_stats=False)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def test_profile_lists_every_kernel_with_its_spec_line_and_adds_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(LENET), "--profile"]) == 0
    out = capsys.readouterr().out
    rows = _profile_rows(out)
    assert rows and rows[-1][1] == "(overhead)"
    kernels = rows[:-1]

    net = netdsl.load(LENET)
    prog = netdsl.compile(net, batch=1)
    code = prog.code(train=True)
    emitted = re.findall(r"k_(\w+)\.(\w+)\(", code)
    assert [k for _, k, _ in kernels] == [f"{m}.{f}" for m, f in emitted]  # every call, in program order
    spec_lines = LENET.read_text(encoding="utf-8").splitlines()
    for _, kernel, rest in kernels:
        m = re.search(r"(\S*lenet5\.net):(\d+) (.+)$", rest)
        assert m is not None, f"{kernel}: no spec line in {rest!r}"
        assert m.group(3).strip() in " ".join(spec_lines[int(m.group(2)) - 1].split()), rest

    # the same table again (the CLI's own function) for this program, bracketed by separately measured steps.
    # A shared machine's speed drifts from second to second: an attempt counts when its two brackets agree
    # within 5 %, and the figures must add up in one of up to six attempts (a profiler that is off by more
    # than 10 % is off in every one).
    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((1, 1, 32, 32)).astype(np.float32),
             "label": rng.integers(0, 10, size=(1,))}
    prog.step_grads(feeds, update_stats=False)  # warm
    seen = []
    for _ in range(6):
        before = _step_ms(prog, feeds, 300)
        print_profile(prog, net, 1)
        after = _step_ms(prog, feeds, 300)
        out = capsys.readouterr().out
        rows = _profile_rows(out)
        assert [k for _, k, _ in rows[:-1]] == [k for _, k, _ in kernels]
        kernel_ms = sum(ms for ms, _, _ in rows[:-1])
        total_ms = kernel_ms + rows[-1][0]
        head = re.search(r"profile of one training step at batch 1: (\d+\.\d+) ms", out)
        assert head is not None and float(head.group(1)) == pytest.approx(total_ms, abs=1e-4 * len(rows))
        if abs(before - after) > 0.05 * min(before, after):
            continue  # the machine's speed changed meanwhile
        step = (before + after) / 2
        seen.append((round(kernel_ms / step, 3), round(total_ms / step, 3)))
        # the kernels' shares and the overhead's (feeding the inputs, the Python between the calls) make the
        # step; the kernels alone take no more than it
        if 0.9 <= total_ms / step <= 1.1 and kernel_ms <= 1.1 * step:
            break
    else:
        pytest.fail(f"the profile does not add up to the step time: (kernels, total) / step = {seen}\n{out}")
