"""Optimizers against a NumPy reference (PyTorch's update rules), hand-computed steps, clipping, decay rank."""

from __future__ import annotations

import math

import numpy as np
import pytest
from netdsl.runtime.optim import Optimizer

from netdsl import SpecError
from netdsl.recipe import CallSpec


def reference(name: str, h: dict[str, float], params: dict[str, np.ndarray], grads_seq: list[dict[str, np.ndarray]],
              lrs: list[float], decay: dict[str, float]) -> dict[str, np.ndarray]:
    """PyTorch's torch.optim update rules, written out in NumPy (float64)."""
    p = {k: v.astype(np.float64).copy() for k, v in params.items()}
    s1 = {k: np.zeros_like(v) for k, v in p.items()}
    s2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t, (grads, lr) in enumerate(zip(grads_seq, lrs, strict=True), start=1):
        for k in list(p):
            g = grads[k].astype(np.float64)
            wd = decay[k]
            if name == "sgd":
                d = g + wd * p[k]
                if h["momentum"]:
                    s1[k] = h["momentum"] * s1[k] + d if t > 1 else d
                    d = d + h["momentum"] * s1[k] if h.get("nesterov") else s1[k]
                p[k] -= lr * d
            elif name in ("adam", "adamw"):
                if name == "adamw":
                    p[k] *= 1 - lr * wd
                else:
                    g = g + wd * p[k]
                s1[k] = h["beta1"] * s1[k] + (1 - h["beta1"]) * g
                s2[k] = h["beta2"] * s2[k] + (1 - h["beta2"]) * g * g
                mhat = s1[k] / (1 - h["beta1"] ** t)
                denom = np.sqrt(s2[k]) / math.sqrt(1 - h["beta2"] ** t) + h["eps"]
                p[k] -= lr * mhat / denom
            else:  # rmsprop
                g = g + wd * p[k]
                s1[k] = h["alpha"] * s1[k] + (1 - h["alpha"]) * g * g
                d = g / (np.sqrt(s1[k]) + h["eps"])
                if h["momentum"]:
                    s2[k] = h["momentum"] * s2[k] + d
                    d = s2[k]
                p[k] -= lr * d
    return p


CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1, "decay_min_rank": 2}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.01}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_matches_the_numpy_reference(name: str, kwargs: dict[str, float]) -> None:
    rng = np.random.default_rng(1)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    start = {k: v.copy() for k, v in params.items()}
    opt = Optimizer(CallSpec(name, (), kwargs), params, ["w", "b"])
    grads_seq = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(5)]
    lrs = [kwargs["lr"] * f for f in (1, 1, 0.5, 0.5, 0.25)]
    for g, lr in zip(grads_seq, lrs, strict=True):
        opt.step(g, lr)
    want = reference(name, opt.hyper, start, grads_seq, lrs, opt.decay)
    for k, value in params.items():
        np.testing.assert_allclose(value, want[k], rtol=1e-12, atol=1e-12)
    assert opt.t == 5


def test_float32_parameters_track_the_reference() -> None:
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((8, 8)).astype(np.float32)}
    start = {"w": params["w"].copy()}
    opt = Optimizer(CallSpec("adam", (), {"lr": 1e-3}), params, ["w"])
    grads_seq = [{"w": rng.standard_normal((8, 8)).astype(np.float32)} for _ in range(3)]
    for g in grads_seq:
        opt.step(g, 1e-3)
    want = reference("adam", opt.hyper, start, grads_seq, [1e-3] * 3, opt.decay)
    assert params["w"].dtype == np.float32
    np.testing.assert_allclose(params["w"], want["w"], rtol=1e-6, atol=1e-7)


def test_sgd_momentum_by_hand() -> None:
    p = {"w": np.array([1.0, -2.0])}
    opt = Optimizer(CallSpec("sgd", (), {"lr": 0.1, "momentum": 0.9}), p, ["w"])
    opt.step({"w": np.array([0.5, 1.0])}, 0.1)
    assert p["w"].tolist() == pytest.approx([0.95, -2.1])  # b = g; p -= 0.1 b
    opt.step({"w": np.array([0.5, 1.0])}, 0.1)
    assert p["w"].tolist() == pytest.approx([0.855, -2.29])  # b = 0.9 b + g = (0.95, 1.9)


def test_adam_first_step_by_hand() -> None:
    # the first Adam step moves every coordinate by lr · g/|g| (bias-corrected m/√v = sign(g)), up to eps
    p = {"w": np.array([1.0, 2.0, 3.0])}
    opt = Optimizer(CallSpec("adam", (), {"lr": 0.1}), p, ["w"])
    opt.step({"w": np.array([0.2, -4.0, 1e-3])}, 0.1)
    assert p["w"].tolist() == pytest.approx([0.9, 2.1, 2.9], abs=1e-6)
    # second step with the same gradient: m̂ = g, v̂ = g², the same move again
    opt.step({"w": np.array([0.2, -4.0, 1e-3])}, 0.1)
    assert p["w"].tolist() == pytest.approx([0.8, 2.2, 2.8], abs=1e-5)


def test_adamw_decays_only_rank_two_parameters() -> None:
    p = {"w": np.ones((2, 2)), "b": np.ones(2)}
    opt = Optimizer(CallSpec("adamw", (), {"lr": 0.1, "weight_decay": 0.5, "decay_min_rank": 2}), p, ["w", "b"])
    opt.step({"w": np.zeros((2, 2)), "b": np.zeros(2)}, 0.1)  # zero gradients: only the decay moves
    assert np.allclose(p["w"], 0.95) and np.allclose(p["b"], 1.0)


def test_clipping_scales_by_the_global_norm() -> None:
    p = {"a": np.zeros(2), "b": np.zeros(1)}
    opt = Optimizer(CallSpec("sgd", (), {"lr": 1.0}), p, ["a", "b"])
    norm = opt.step({"a": np.array([3.0, 0.0]), "b": np.array([4.0])}, 1.0, clip=1.0)
    assert norm == pytest.approx(5.0)
    assert p["a"].tolist() == pytest.approx([-0.6, 0.0], rel=1e-5) and p["b"][0] == pytest.approx(-0.8, rel=1e-5)
    p2 = {"a": np.zeros(2)}
    Optimizer(CallSpec("sgd", (), {"lr": 1.0}), p2, ["a"]).step({"a": np.array([0.3, 0.4])}, 1.0, clip=1.0)
    assert p2["a"].tolist() == pytest.approx([-0.3, -0.4])  # under the limit: untouched


def test_state_round_trip() -> None:
    rng = np.random.default_rng(3)
    p1 = {"w": rng.standard_normal(5)}
    p2 = {"w": p1["w"].copy()}
    o1 = Optimizer(CallSpec("adam", (), {}), p1, ["w"])
    gs = [{"w": rng.standard_normal(5)} for _ in range(4)]
    for g in gs:
        o1.step(g, 1e-2)
    o2 = Optimizer(CallSpec("adam", (), {}), p2, ["w"])
    for g in gs[:2]:
        o2.step(g, 1e-2)
    o3 = Optimizer(CallSpec("adam", (), {}), {"w": p2["w"].copy()}, ["w"])
    o3.load_state({k: v.copy() for k, v in o2.state.items()}, o2.t)
    for g in gs[2:]:
        o3.step(g, 1e-2)
    assert (o3.params["w"] == p1["w"]).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": -1.0}, "lr must be positive"),
    ({"momentum": 1.5}, "momentum must be in [0, 1)"),
    ({"nesterov": True}, "nesterov needs momentum > 0"),
    ({"lr": "fast"}, "lr must be a number"),
])
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as e:
        Optimizer(CallSpec("sgd", (), kwargs), {"w": np.zeros(1)}, ["w"])
    assert message in str(e.value)
