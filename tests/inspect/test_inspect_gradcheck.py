"""`netdsl check --gradcheck`: passes on correct backward kernels, and on a deliberately broken one (a test-only
override of a rule in `compiler.rules.BACKWARD` that scales the gradient by 1.1) fails and names the node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import netdsl
from netdsl.cli import main
from netdsl.gradcheck import PROBE_OP, gradcheck, probed

ROOT = Path(__file__).resolve().parents[2]
SMALL = str(ROOT / "tests/inspect/small.net")
SEQ = str(ROOT / "tests/inspect/seq.net")


def _scaled(rule: Any, factor: float) -> Any:
    """A backward rule whose input gradient is `factor` times the right one."""

    def broken(ctx: Any, n: Any, ins: Any, out: Any, gout: Any, gins: list[Any]) -> None:
        rule(ctx, n, ins, out, gout, gins)
        if gins[0] is not None:
            t = ctx.shape_of(n.inputs[0])
            v = ("B",) + t.shape
            k = ctx.buf("scale", (1,), batched=False, kind="tmp", per_step=False)
            ctx.emit("util.fill", k, factor)
            ctx.emit("elementwise.mul_forward", ctx.view(gins[0], v), ctx.view(k, (1,) * len(v)),
                     ctx.view(gins[0], v))

    return broken


def test_gradcheck_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--gradcheck", SMALL]) == 0
    out = capsys.readouterr().out
    assert "gradcheck: ok — 20 nodes" in out
    for name in ("stem (conv)", "block1.bn1 (batchnorm)", "concat_1 (concat)", "pool (maxpool)", "mse_1 (mse)"):
        assert name in out
    assert "tests/inspect/small.net:4  -> conv2: conv(c, kernel=3, pad=1) -> bn2: batchnorm" in out


def test_gradcheck_recurrences() -> None:
    rep = gradcheck(netdsl.load(SEQ), batch=2, entries=2)
    assert rep.ok
    enc = next(r for r in rep.nodes if r.node.name == "enc")
    assert {c.what for c in enc.checks} >= {"input", "enc.f.weight", "enc.g.bias"}  # the fused LSTM's parameters
    assert all(c.entries > 0 for r in rep.nodes for c in r.checks if c.entries + c.skipped)


def test_broken_backward_fails_and_names_the_node(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.compiler import rules

    monkeypatch.setitem(rules.BACKWARD, "sigmoid", _scaled(rules.BACKWARD["sigmoid"], 1.1))
    assert main(["check", "--gradcheck", SMALL]) == 1
    out = capsys.readouterr().out
    assert "gradcheck: FAILED at node sigmoid_1 (sigmoid): its backward is wrong" in out
    assert "tests/inspect/small.net:15  logits = z -> fc1: dense(8) -> sigmoid" in out
    assert "upstream fail through it: " in out and "fc1" in out and "stem" in out
    assert "gradcheck: 1 failing node(s)" in out
    # the err/tol of the culprit: |1.1 g − g| / (1e-6 · 2.1 |g|) ≈ 4.8e4
    line = next(x for x in out.splitlines() if x.strip().startswith("FAIL"))
    assert 3e4 < float(line.split()[1]) < 6e4


def test_broken_backward_inside_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from netdsl.compiler import rules

    monkeypatch.setitem(rules.BACKWARD, "batchnorm", _scaled(rules.BACKWARD["batchnorm"], 1.1))
    rep = gradcheck(netdsl.load(SMALL), entries=2)
    assert not rep.ok
    assert [r.node.name for r in rep.failed] == ["block1.bn2"]  # the last one; bn1 fails through it
    bn1 = next(r for r in rep.nodes if r.node.name == "block1.bn1")
    assert bn1.status == "fails-through" and bn1.through == ["block1.bn2"]


def test_probes_leave_the_network_alone() -> None:
    from netdsl.compiler import rules

    net = netdsl.load(SMALL)
    before = net.ir.pretty()
    copy, checks = probed(net)
    assert net.ir.pretty() == before and PROBE_OP not in rules.FORWARD
    probes = [n for n in copy.ir if n.op == PROBE_OP]
    assert len(probes) == sum(1 for c in checks.values() if c.reads is not None)
    assert all(copy.ir.params[n.params["delta"]].shape[0] == 1 for n in probes)


def test_gradcheck_without_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "f.net"
    spec.write_text("network F {\n    input x: [3]\n    output y = x -> dense(2)\n}\n")
    assert main(["check", "--gradcheck", str(spec)]) == 0
    assert "nothing to check — network F declares no loss" in capsys.readouterr().out
    with pytest.raises(netdsl.SpecError, match="declares no loss"):
        gradcheck(netdsl.load(str(spec)))


def test_plain_check_imports_no_numba() -> None:
    import subprocess

    code = ("import sys; from netdsl.cli import main; main(['check', {!r}]); "
            "print('numba' in sys.modules, 'netdsl.compiler' in sys.modules)".format(str(ROOT / "specs/lenet5.net")))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "False False"


TIES = """network Ties {
    input image: [2, 5, 5]
    input label: int[]
    x = image -> c: conv(3, kernel=3, pad=1, weights=[[0, 0, 0], [0, 0, 0], [0, 0, 0]], trainable=false) -> relu
    y = image -> d: conv(3, kernel=3, pad=1) -> relu
    logits = concat(x, y) -> pool: maxpool(3, stride=1, pad=same) -> flatten -> fc: dense(3)
    output logits
    loss cross_entropy(logits, label)
}
"""


def test_max_pool_ties_are_broken_not_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A max-pool over tied values (windows of relu zeros, as in GoogLeNet) is not differentiable there: the
    generated gradient is one subgradient, which no difference need match. The probes on a max-pool's operands
    start at small random values, so nothing ties: every node is checked at a smooth point and none skipped.
    With them at zero (the tie break off) the same spec's max-pool input is not smooth in any direction."""
    import netdsl.gradcheck as gc

    spec = tmp_path / "ties.net"
    spec.write_text(TIES)
    assert main(["check", "--gradcheck", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "gradcheck: ok" in out and "skipped" not in out
    net = netdsl.load(str(spec))
    rep = gradcheck(net)
    pool = next(r for r in rep.nodes if r.node.name == "pool")
    assert rep.ok and all(c.entries > 0 and c.skipped == 0 for c in pool.checks)

    monkeypatch.setattr(gc, "TIE_BREAK", 0.0)
    tied = gradcheck(net)
    pool = next(r for r in tied.nodes if r.node.name == "pool")
    assert tied.ok and sum(c.skipped for c in pool.checks) > 0  # the ties are real: kinks at the very point


def test_two_forwards_per_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost that made deep networks take tens of minutes: a forward pass per perturbed entry. A smooth
    network's tensors each pass along one random direction, two forwards; entries are tried one by one only
    where that fails (a max-pool's ties, a relu's kink)."""
    from netdsl.compiler.program import Program

    calls = [0]
    loss = Program.loss

    def counted(self: Any, *args: Any, **kwargs: Any) -> float:
        calls[0] += 1
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(Program, "loss", counted)
    rep = gradcheck(netdsl.load(SMALL), entries=3)
    assert rep.ok
    checks = list({id(c): c for r in rep.nodes for c in r.checks}.values())
    counted = sum(c.entries for c in checks)
    skipped = sum(c.skipped for c in checks)
    assert counted <= 1.25 * len(checks), (counted, len(checks))  # about one difference per tensor
    assert calls[0] <= 1 + 6 * (counted + skipped)  # each: two forwards, four more where it fails at eps
    assert calls[0] < 2 * 3 * len(checks), (calls[0], len(checks))  # less than three entries per tensor cost
