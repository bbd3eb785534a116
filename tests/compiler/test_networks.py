"""Whole networks through the compiler: float64 gradient checks, lecture numbers, generated code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d

import netdsl
from tests.compiler.nethelpers import compile64, direction_check, feeds, finite_difference_check

RESIDUAL_INCEPTION = """
block Mixed(c)(x) {
    a = x -> conv(c, kernel=1) -> relu
    b = x -> conv(c, kernel=3, pad=same) -> batchnorm -> relu
    d = x -> maxpool(3, stride=1, pad=1) -> conv(c, kernel=1)
    return concat(a, b, d)
}
block Res(c)(x) {
    y = x -> conv(c, kernel=3, pad=1, bias=false) -> batchnorm -> relu -> conv(c, kernel=3, pad=1)
    return relu(y + x)
}
network Small {
    input image: [2, 8, 8]
    input label: int[]
    logits = image -> conv(6, kernel=3, pad=1) -> Res(6) -> m: Mixed(2) -> avgpool(2)
        -> flatten -> dense(10) -> sigmoid -> dropout(0.3) -> out: dense(4)
    output logits
    loss cross_entropy(logits, label)
}
"""

LENET = """
network LeNet5(classes=10) {
    input image: [1, 32, 32]
    input label: int[]
    logits = image
        -> c1: conv(6, kernel=5) -> tanh -> s2: avgpool(2)
        -> c3: conv(16, kernel=5) -> tanh -> s4: avgpool(2)    : [16, 5, 5]
        -> flatten
        -> f5: dense(120) -> tanh
        -> f6: dense(84) -> tanh
        -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
"""


def test_residual_inception_network_gradients_float64():
    net, prog = compile64(RESIDUAL_INCEPTION, batch=3)
    x = feeds(net, 3, np.random.default_rng(0))
    worst, where = finite_difference_check(prog, x, per_param=4)
    assert worst <= 1.0, where
    rel, fd, an = direction_check(prog, x)
    assert rel < 1e-6, (fd, an)


def test_lenet5_gradients_float64():
    net, prog = compile64(LENET, batch=2)
    x = feeds(net, 2, np.random.default_rng(1))
    worst, where = finite_difference_check(prog, x, per_param=5)
    assert worst <= 1.0, where
    rel, fd, an = direction_check(prog, x)
    assert rel < 1e-6, (fd, an)


def test_shared_let_layer_and_fanout_sum_gradients():
    text = """
    network Shared {
        input x: [5]
        input y: [3]
        let proj = dense(3)
        a = x -> proj -> tanh
        b = x -> proj
        c = (a * b + a) -> sigmoid
        output c
        loss mse(c, y)
    }
    """
    net, prog = compile64(text, batch=4)
    assert sorted(prog.params) == ["proj.bias", "proj.weight"]
    x = feeds(net, 4, np.random.default_rng(2))
    worst, where = finite_difference_check(prog, x, per_param=15)
    assert worst <= 1.0, where


def test_short_batch_reuses_the_program_and_matches_a_full_batch():
    net = netdsl.loads(LENET)
    prog = netdsl.compile(net, batch=8, dtype="float64")
    x = np.random.default_rng(3).standard_normal((8, 1, 32, 32))
    full = prog.forward({"image": x})["logits"]
    part = prog.forward({"image": x[:3]})["logits"]
    np.testing.assert_allclose(part, full[:3], rtol=1e-12)
    with pytest.raises(netdsl.SpecError, match="at most 8"):
        prog.forward({"image": np.zeros((9, 1, 32, 32))})
    with pytest.raises(netdsl.SpecError, match="expects shape"):
        prog.forward({"image": np.zeros((2, 1, 28, 28))})


def test_fetch_returns_named_intermediates():
    net = netdsl.loads(LENET)
    prog = netdsl.compile(net, batch=2, dtype="float64")
    x = np.random.default_rng(4).standard_normal((2, 1, 32, 32))
    out = prog.forward({"image": x}, fetch=["c3", "s4"])
    assert out["c3"].shape == (2, 16, 10, 10)
    assert out["s4"].shape == (2, 16, 5, 5)
    # s4 = avgpool(tanh(c3)) recomputed in numpy
    t = np.tanh(out["c3"]).reshape(2, 16, 5, 2, 5, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(out["s4"], t, rtol=1e-12)


LECTURE_IMAGE = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]


def _fixed_filter_net(kernel: list[list[float]], size: int) -> str:
    k = len(kernel)
    return f"""
    network F {{
        input image: [1, {size}, {size}]
        out = image -> conv(1, kernel={k}, weights={kernel}, trainable=false, bias=false)
        output out
    }}
    """


def test_lecture_convolution_example():
    net = netdsl.loads(_fixed_filter_net([[1, 0, 1], [0, 1, 0], [1, 0, 1]], 5))
    prog = netdsl.compile(net, batch=1, dtype="float64")
    out = prog.forward({"image": np.array(LECTURE_IMAGE, float)[None, None]})["out"]
    np.testing.assert_array_equal(out[0, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_lecture_maxpool_example():
    net = netdsl.loads("network P { input x: [1, 4, 4]\n y = x -> maxpool(2)\n output y }")
    prog = netdsl.compile(net, batch=1, dtype="float64")
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], float)[None, None]
    np.testing.assert_array_equal(prog.forward({"x": x})["y"][0, 0], [[6, 8], [3, 4]])


LECTURE_FILTERS = {
    "box": [[1 / 9] * 3] * 3,
    "gaussian": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "horizontal_edge": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "vertical_edge": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "motion": [[1 / 3, 0, 0], [0, 1 / 3, 0], [0, 0, 1 / 3]],
}


@pytest.mark.parametrize("name", sorted(LECTURE_FILTERS))
def test_lecture_filters_match_scipy_correlate2d(name):
    kernel = LECTURE_FILTERS[name]
    img = np.random.default_rng(5).random((12, 12))
    net = netdsl.loads(_fixed_filter_net(kernel, 12))
    prog = netdsl.compile(net, batch=1, dtype="float64")
    out = prog.forward({"image": img[None, None]})["out"][0, 0]
    np.testing.assert_allclose(out, correlate2d(img, np.array(kernel), mode="valid"), rtol=1e-12, atol=1e-12)


def test_fixed_filters_get_no_gradient_and_do_not_train():
    text = _fixed_filter_net([[0, 1, 0], [1, -4, 1], [0, 1, 0]], 6).replace(
        "output out", "output out\n input t: [1, 4, 4]\n loss mse(out, t)")
    net = netdsl.loads(text)
    prog = netdsl.compile(net, batch=2, dtype="float64")
    assert prog.trainable == []


def test_generated_code_is_a_real_file_tagged_with_spec_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    net = netdsl.loads(LENET, name="lenet.net")
    prog = netdsl.compile(net, batch=2)
    code = prog.code(train=True)
    assert "def forward(" in code and "def backward(" in code
    line = LENET.splitlines().index(next(s for s in LENET.splitlines() if "c3:" in s)) + 1
    # every call names its spec line and layer (c3 with the tanh it applies itself)
    assert f"# lenet.net:{line} c3 [+tanh]: conv(16, kernel=5)" in code
    files = list((tmp_path / "steps").glob("netdsl_step_*.py"))
    assert files and any(f.read_text() == code for f in files)
