"""Lowering fuses conv -> relu/tanh/sigmoid into the direct convolution kernel (conv_direct.py) where nothing
else reads the convolution's own output: the same loss and gradients as the unfused schedule, in float64."""

import numpy as np
import pytest

import netdsl

SPEC = """
network Net(act="tanh") {{
    input image: [2, 12, 12]
    input label: int[]
    logits = image -> c1: conv(4, kernel=5) -> {act} -> c2: conv(3, kernel=3) -> {act2}
        -> flatten -> out: dense(5)
    output logits
    loss cross_entropy(logits, label)
}}
"""


def _run(spec: str, fuse: bool):
    net = netdsl.loads(spec, name="fused.net")
    prog = netdsl.compile(net, batch=3, dtype="float64", fuse=fuse)
    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((3, 2, 12, 12)), "label": rng.integers(0, 5, 3)}
    loss, grads = prog.loss_and_grads(feeds)
    return prog, loss, grads


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_fused_schedule_matches_the_unfused_one(act):
    spec = SPEC.format(act=act, act2=act)
    fused, loss, grads = _run(spec, True)
    code = fused.code()
    # both convolutions apply the activation themselves: no activation kernel is left in the step
    assert code.count("conv2d_direct_forward(") == 2 and f"activation.{act}_" not in code
    unfused, loss0, grads0 = _run(spec, False)
    assert unfused.code().count(f"activation.{act}_forward(") == 2
    assert loss == pytest.approx(loss0, rel=1e-13, abs=1e-13)
    for name in grads0:
        np.testing.assert_allclose(grads[name], grads0[name], rtol=1e-11, atol=1e-13, err_msg=name)


def test_no_fusion_where_the_convolution_output_is_read_elsewhere():
    # c1 -> tanh fuses, c2 -> gelu does not (not a fusable activation); a fetched convolution output is the
    # convolution's own value, as without fusion
    spec = SPEC.format(act="tanh", act2="gelu")
    net = netdsl.loads(spec, name="fused.net")
    prog = netdsl.compile(net, batch=3, dtype="float64")
    code = prog.code()
    assert "activation.tanh_forward" not in code and "activation.gelu_forward" in code
    rng = np.random.default_rng(1)
    feeds = {"image": rng.standard_normal((3, 2, 12, 12)), "label": rng.integers(0, 5, 3)}
    c1 = prog.forward(feeds, fetch=["c1"])["c1"]
    c1_unfused = netdsl.compile(net, batch=3, dtype="float64", fuse=False).forward(feeds, fetch=["c1"])["c1"]
    np.testing.assert_array_equal(c1, c1_unfused)
    assert np.abs(c1).max() > 1.0  # the convolution, not its tanh
