"""Learning-rate curves of every schedule."""

from __future__ import annotations

import itertools
import math

import pytest
from netdsl.runtime.schedules import Schedule

from netdsl import SpecError
from netdsl.recipe import CallSpec


def curve(call: CallSpec | None, epochs: int = 8, spe: int = 1, total: int | None = None) -> list[float]:
    s = Schedule(call, 1.0, total or epochs * spe)
    return [s.lr(step, step // spe) for step in range(epochs * spe)]


def test_constant() -> None:
    assert curve(None) == [1.0] * 8
    assert Schedule(None, 0.3, 10).unit == "steps"


def test_step_counts_epochs() -> None:
    lrs = curve(CallSpec("step", (), {"every": 3, "gamma": 0.5}), epochs=7, spe=2)
    assert lrs == pytest.approx([1.0] * 6 + [0.5] * 6 + [0.25] * 2)
    assert Schedule(CallSpec("step", (), {"every": 3}), 1.0, 10).unit == "epochs"


def test_multistep() -> None:
    lrs = curve(CallSpec("multistep", (), {"milestones": [2, 5], "gamma": 0.1}), epochs=7)
    assert lrs == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_with_warmup_counts_steps() -> None:
    s = Schedule(CallSpec("cosine", (), {"warmup": 4, "min_lr": 0.1}), 1.0, 24)
    assert s.unit == "steps"
    warm = [s.lr(i, 0) for i in range(4)]
    assert warm == pytest.approx([0.2, 0.4, 0.6, 0.8])  # lr · (s+1)/(warmup+1)
    assert s.lr(4, 0) == pytest.approx(1.0)
    assert s.lr(14, 0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert s.lr(24, 0) == pytest.approx(0.1) and s.lr(100, 0) == pytest.approx(0.1)
    lrs = [s.lr(i, 0) for i in range(4, 24)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_cosine_explicit_length() -> None:
    s = Schedule(CallSpec("cosine", (), {"steps": 10}), 2.0, 1000)
    assert s.lr(0, 0) == pytest.approx(2.0) and s.lr(5, 0) == pytest.approx(1.0) and s.lr(10, 0) == 0.0


def test_plateau_divides_when_the_loss_stalls() -> None:
    s = Schedule(CallSpec("plateau", (), {"factor": 0.1, "patience": 2}), 1.0, 100)
    assert s.unit == "evaluations"
    seen = []
    for loss in [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8]:
        s.observe(loss)
        seen.append(s.lr(0, 0))
    # best 0.9 at the 2nd; three evaluations without improvement (> patience 2) → ×0.1 at the 5th
    assert seen == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01])
    restored = Schedule(CallSpec("plateau", (), {"factor": 0.1, "patience": 2}), 1.0, 100)
    restored.load_state(s.state())
    assert restored.lr(0, 0) == pytest.approx(0.01) and restored.bad == s.bad


@pytest.mark.parametrize(("call", "message"), [
    (CallSpec("step", (), {"every": 0}), "every must be a positive whole number of epochs"),
    (CallSpec("multistep", (), {"milestones": [5, 2]}), "milestones must be a rising list"),
    (CallSpec("plateau", (), {"factor": 2}), "factor must be in (0, 1)"),
    (CallSpec("cosine", (), {"warmup": -1}), "warmup must be a whole number"),
])
def test_bad_settings(call: CallSpec, message: str) -> None:
    with pytest.raises(SpecError) as e:
        Schedule(call, 1.0, 10)
    assert message in str(e.value)
