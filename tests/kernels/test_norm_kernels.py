"""lrn, batchnorm and layernorm kernels against numpy references (PyTorch semantics), finite differences."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import norm

from .gradcheck import assert_f32_matches, check_directional, check_gradients


def ref_lrn(x, size, alpha, beta, k):
    # torch.nn.LocalResponseNorm: avg of squares over a zero-padded channel window, front size//2
    N, C, S = x.shape
    sq = np.zeros((N, C + size - 1, S))
    sq[:, size // 2:size // 2 + C] = x * x
    div = sum(sq[:, i:i + C] for i in range(size)) / size
    return x / (k + alpha * div) ** beta


def lrn_case(rng, N, C, S, size, dtype=np.float64):
    x = rng.standard_normal((N, C, S)).astype(dtype)
    out = np.empty_like(x)
    scale = np.empty_like(x)
    return x, out, scale


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn_forward_and_gradients(size):
    rng = np.random.default_rng(size)
    x, out, scale = lrn_case(rng, 2, 6, 5, size)
    alpha, beta, k = 0.5, 0.75, 2.0  # a large alpha so the cross-channel terms matter in the check
    norm.lrn_forward(x, size, alpha, beta, k, out, scale)
    np.testing.assert_allclose(out, ref_lrn(x, size, alpha, beta, k), rtol=1e-13)
    R = rng.standard_normal(x.shape)
    gx = np.empty_like(x)
    norm.lrn_backward(R, x, out, scale, size, alpha, beta, gx)

    def f():
        norm.lrn_forward(x, size, alpha, beta, k, out, scale)
        return float(np.sum(out * R))

    check_gradients(f, {"x": x}, {"x": gx})


def test_lrn_large_directional_and_float32():
    rng = np.random.default_rng(10)
    x, out, scale = lrn_case(rng, 3, 16, 700, 5)
    args = (5, 1e-2, 0.75, 2.0)
    norm.lrn_forward(x, *args, out, scale)
    np.testing.assert_allclose(out, ref_lrn(x, *args), rtol=1e-13)
    R = rng.standard_normal(x.shape)
    gx = np.empty_like(x)
    norm.lrn_backward(R, x, out, scale, 5, 1e-2, 0.75, gx)

    def f():
        norm.lrn_forward(x, *args, out, scale)
        return float(np.sum(out * R))

    check_directional(f, {"x": x}, {"x": gx}, rng)
    x32 = x.astype(np.float32)
    o32 = np.empty_like(x32)
    norm.lrn_forward(x32, *args, o32, np.empty_like(x32))
    norm.lrn_forward(x, *args, out, scale)
    assert_f32_matches(out, o32)


class BN:
    def __init__(self, rng, N, C, S, dtype=np.float64):
        self.x = (rng.standard_normal((N, C, S)) * 2 + 0.5).astype(dtype)
        self.gamma = rng.standard_normal(C).astype(dtype)
        self.beta = rng.standard_normal(C).astype(dtype)
        self.rm = rng.standard_normal(C).astype(dtype)
        self.rv = rng.uniform(0.5, 2.0, C).astype(dtype)
        self.out = np.empty_like(self.x)
        self.mean = np.empty(C, dtype)
        self.invstd = np.empty(C, dtype)

    def train(self, update=False, eps=1e-5, momentum=0.1):
        norm.batchnorm_forward_train(self.x, self.gamma, self.beta, eps, momentum, self.rm, self.rv, update,
                                     self.out, self.mean, self.invstd)
        return self.out

    def eval(self, eps=1e-5):
        norm.batchnorm_forward_eval(self.x, self.gamma, self.beta, self.rm, self.rv, eps, self.out)
        return self.out


def test_batchnorm_forward_train_and_running_stats():
    rng = np.random.default_rng(0)
    b = BN(rng, 4, 3, 5)
    rm0, rv0 = b.rm.copy(), b.rv.copy()
    b.train(update=False)
    mean = b.x.mean((0, 2))
    var = b.x.var((0, 2))
    ref = (b.x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5) * b.gamma[:, None] + b.beta[:, None]
    np.testing.assert_allclose(b.out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(b.invstd, 1 / np.sqrt(var + 1e-5), rtol=1e-13)
    np.testing.assert_array_equal(b.rm, rm0)  # update_stats=False leaves them alone
    np.testing.assert_array_equal(b.rv, rv0)
    b.train(update=True, momentum=0.3)
    np.testing.assert_allclose(b.rm, 0.7 * rm0 + 0.3 * mean, rtol=1e-13)
    np.testing.assert_allclose(b.rv, 0.7 * rv0 + 0.3 * b.x.var((0, 2), ddof=1), rtol=1e-13)


def test_batchnorm_forward_eval():
    b = BN(np.random.default_rng(1), 3, 4, 2)
    b.eval()
    ref = (b.x - b.rm[:, None]) / np.sqrt(b.rv[:, None] + 1e-5) * b.gamma[:, None] + b.beta[:, None]
    np.testing.assert_allclose(b.out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3, 5), (6, 4, 1)])
def test_batchnorm_train_gradients(shape):
    rng = np.random.default_rng(2)
    b = BN(rng, *shape)
    b.train()
    R = rng.standard_normal(b.out.shape)
    gx, gg, gb = np.empty_like(b.x), np.empty_like(b.gamma), np.empty_like(b.beta)
    norm.batchnorm_backward(R, b.x, b.gamma, b.mean, b.invstd, gx, gg, gb, True)
    check_gradients(lambda: float(np.sum(b.train() * R)), {"x": b.x, "gamma": b.gamma, "beta": b.beta},
                    {"x": gx, "gamma": gg, "beta": gb})
    gx2 = np.empty((0, 0, 0))
    norm.batchnorm_backward(R, b.x, b.gamma, b.mean, b.invstd, gx2, gg, gb, False)


def test_batchnorm_eval_gradients():
    rng = np.random.default_rng(3)
    b = BN(rng, 3, 4, 5)
    b.eval()
    R = rng.standard_normal(b.out.shape)
    gx, gg, gb = np.empty_like(b.x), np.empty_like(b.gamma), np.empty_like(b.beta)
    norm.batchnorm_backward_eval(R, b.x, b.gamma, b.rm, b.rv, 1e-5, gx, gg, gb, True)
    check_gradients(lambda: float(np.sum(b.eval() * R)), {"x": b.x, "gamma": b.gamma, "beta": b.beta},
                    {"x": gx, "gamma": gg, "beta": gb})


def test_batchnorm_large_directional_and_float32():
    rng = np.random.default_rng(4)
    b = BN(rng, 8, 16, 256)
    b.train()
    mean, var = b.x.mean((0, 2))[:, None], b.x.var((0, 2))[:, None]
    ref = (b.x - mean) / np.sqrt(var + 1e-5) * b.gamma[:, None] + b.beta[:, None]
    np.testing.assert_allclose(b.out, ref, rtol=1e-11, atol=1e-11)
    R = rng.standard_normal(b.out.shape)
    gx, gg, gb = np.empty_like(b.x), np.empty_like(b.gamma), np.empty_like(b.beta)
    norm.batchnorm_backward(R, b.x, b.gamma, b.mean, b.invstd, gx, gg, gb, True)
    check_directional(lambda: float(np.sum(b.train() * R)), {"x": b.x, "gamma": b.gamma, "beta": b.beta},
                      {"x": gx, "gamma": gg, "beta": gb}, rng)
    b32 = BN(np.random.default_rng(4), 8, 16, 256, np.float32)
    assert_f32_matches(b.train(), b32.train())
    assert_f32_matches(b.eval(), b32.eval())


class LN:
    def __init__(self, rng, N, D, weight=True, bias=True, dtype=np.float64):
        self.x = (rng.standard_normal((N, D)) * 3 - 1).astype(dtype)
        self.g = rng.standard_normal(D).astype(dtype) if weight else np.empty(0, dtype)
        self.b = rng.standard_normal(D).astype(dtype) if bias else np.empty(0, dtype)
        self.out = np.empty_like(self.x)
        self.mean = np.empty(N, dtype)
        self.invstd = np.empty(N, dtype)

    def forward(self, eps=1e-5):
        norm.layernorm_forward(self.x, self.g, self.b, eps, self.out, self.mean, self.invstd)
        return self.out

    def backward(self, R):
        gx, gg, gb = np.empty_like(self.x), np.empty_like(self.g), np.empty_like(self.b)
        norm.layernorm_backward(R, self.x, self.g, self.mean, self.invstd, gx, gg, gb, True)
        return gx, gg, gb


@pytest.mark.parametrize(("weight", "bias"), [(True, True), (True, False), (False, False)])
def test_layernorm_forward_and_gradients(weight, bias):
    rng = np.random.default_rng(5)
    ln = LN(rng, 4, 7, weight, bias)
    ln.forward()
    ref = (ln.x - ln.x.mean(1, keepdims=True)) / np.sqrt(ln.x.var(1, keepdims=True) + 1e-5)
    if weight:
        ref = ref * ln.g
    if bias:
        ref = ref + ln.b
    np.testing.assert_allclose(ln.out, ref, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(ln.out.shape)
    gx, gg, gb = ln.backward(R)
    wrt, grads = {"x": ln.x}, {"x": gx}
    if weight:
        wrt["g"], grads["g"] = ln.g, gg
    if bias:
        wrt["b"], grads["b"] = ln.b, gb
    check_gradients(lambda: float(np.sum(ln.forward() * R)), wrt, grads)


def test_layernorm_large_directional_and_float32():
    rng = np.random.default_rng(6)
    ln = LN(rng, 128, 256)
    ln.forward()
    ref = (ln.x - ln.x.mean(1, keepdims=True)) / np.sqrt(ln.x.var(1, keepdims=True) + 1e-5) * ln.g + ln.b
    np.testing.assert_allclose(ln.out, ref, rtol=1e-11, atol=1e-11)
    R = rng.standard_normal(ln.out.shape)
    gx, gg, gb = ln.backward(R)
    check_directional(lambda: float(np.sum(ln.forward() * R)), {"x": ln.x, "g": ln.g, "b": ln.b},
                      {"x": gx, "g": gg, "b": gb}, rng)
    ln32 = LN(np.random.default_rng(6), 128, 256, dtype=np.float32)
    assert_f32_matches(ln.forward(), ln32.forward())
