"""cross_entropy (smoothing, ignore index) and mse against numpy references and finite differences."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import loss

from .gradcheck import assert_f32_matches, check_directional, check_gradients


def ref_ce(logits, labels, eps, ignore):
    # PyTorch's cross_entropy(label_smoothing=eps, ignore_index=ignore, reduction="mean")
    N, V = logits.shape
    m = logits.max(1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
    keep = labels != ignore
    if not keep.any():
        return 0.0
    target = np.full((N, V), eps / V)
    target[np.arange(N)[keep], labels[keep]] += 1 - eps
    return float(-(target * logp)[keep].sum() / keep.sum())


def ce(logits, labels, eps, ignore):
    probs = np.empty_like(logits)
    value = loss.cross_entropy_forward(logits, labels, eps, ignore, probs)
    return value, probs


@pytest.mark.parametrize(("eps", "ignore"), [(0.0, -1), (0.1, -1), (0.2, 2), (0.0, 0)])
def test_cross_entropy(eps, ignore):
    rng = np.random.default_rng(0)
    N, V = 6, 5
    logits = rng.standard_normal((N, V)) * 3
    labels = rng.integers(0, V, N).astype(np.int64)
    labels[1] = ignore if ignore >= 0 else labels[1]
    value, probs = ce(logits, labels, eps, ignore)
    assert value == pytest.approx(ref_ce(logits, labels, eps, ignore), rel=1e-13)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-14)
    gl = np.empty_like(logits)
    loss.cross_entropy_backward(1.7, probs, labels, eps, ignore, gl)
    check_gradients(lambda: 1.7 * ce(logits, labels, eps, ignore)[0], {"logits": logits}, {"logits": gl})
    if ignore >= 0:
        np.testing.assert_array_equal(gl[labels == ignore], 0.0)


def test_cross_entropy_all_ignored_and_bad_label():
    logits = np.random.default_rng(1).standard_normal((3, 4))
    labels = np.full(3, -100, np.int64)
    value, probs = ce(logits, labels, 0.1, -100)
    assert value == 0.0
    gl = np.empty_like(logits)
    loss.cross_entropy_backward(1.0, probs, labels, 0.1, -100, gl)
    np.testing.assert_array_equal(gl, 0.0)
    with pytest.raises(IndexError):
        ce(logits, np.array([0, 4, 1], np.int64), 0.0, -100)


def test_cross_entropy_large_directional_and_float32():
    rng = np.random.default_rng(2)
    N, V = 64, 100
    logits = rng.standard_normal((N, V)) * 2
    labels = rng.integers(0, V, N).astype(np.int64)
    labels[::7] = -1
    value, probs = ce(logits, labels, 0.1, -1)
    assert value == pytest.approx(ref_ce(logits, labels, 0.1, -1), rel=1e-12)
    gl = np.empty_like(logits)
    loss.cross_entropy_backward(1.0, probs, labels, 0.1, -1, gl)
    check_directional(lambda: ce(logits, labels, 0.1, -1)[0], {"logits": logits}, {"logits": gl}, rng)
    v32, p32 = ce(logits.astype(np.float32), labels, 0.1, -1)
    assert v32 == pytest.approx(value, rel=1e-5)
    assert_f32_matches(probs, p32)


def test_mse():
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 3))
    assert loss.mse_forward(pred, target) == pytest.approx(np.mean((pred - target) ** 2), rel=1e-14)
    gp, gt = np.empty_like(pred), np.empty_like(target)
    loss.mse_backward(0.5, pred, target, gp, gt, True)

    def f():
        return 0.5 * loss.mse_forward(pred, target)

    check_gradients(f, {"pred": pred, "target": target}, {"pred": gp, "target": gt})
    gp2 = np.empty_like(pred)
    loss.mse_backward(0.5, pred, target, gp2, np.empty((0, 0)), False)
    np.testing.assert_array_equal(gp2, gp)
    big_p, big_t = rng.standard_normal((32, 50)), rng.standard_normal((32, 50))
    gbp, gbt = np.empty_like(big_p), np.empty_like(big_t)
    loss.mse_backward(1.0, big_p, big_t, gbp, gbt, True)
    check_directional(lambda: loss.mse_forward(big_p, big_t), {"p": big_p, "t": big_t}, {"p": gbp, "t": gbt}, rng)
    v32 = loss.mse_forward(big_p.astype(np.float32), big_t.astype(np.float32))
    assert v32 == pytest.approx(loss.mse_forward(big_p, big_t), rel=1e-5)
