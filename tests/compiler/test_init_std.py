"""`std=`: a layer's weights drawn from N(0, std) and its biases zero, written in the spec (nanoGPT's init).

Front end and compiler/init.py only (numpy, no Numba): the drawn parameters' statistics, the parameter count
unchanged, the defaults unchanged without `std=`, and the bad values refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from netdsl.compiler.init import init_params

import netdsl

SPECS = Path(__file__).resolve().parents[2] / "specs"

NET = """
network N(std=0.05) {
    input tokens: int[16]
    input targets: int[16]
    let emb = embedding(50, 64, std=std)
    x = tokens -> emb -> pos: positional_embedding(16, std=0.3)
        -> attn: attention(4, causal=true, std=[0.1, 0.01])
        -> fc: dense(256, std=0.2) -> gelu -> proj: dense(64, bias=false, std=0)
        -> plain: dense(64)
    logits = x -> unembed(emb)
    output logits
    loss cross_entropy(logits, targets)
}
"""


def _drawn(text: str, seed: int = 0, **params: object) -> tuple[netdsl.Net, dict[str, np.ndarray]]:
    net = netdsl.loads(text, name="std.net", **params)
    return net, init_params(net.ir.params, seed, "float64")


def _check_normal(a: np.ndarray, std: float) -> None:
    """Mean 0 and standard deviation `std`, within 5 standard errors of the sample's statistics."""
    n = a.size
    assert abs(a.mean()) < 5 * std / math.sqrt(n)
    assert abs(a.std() - std) < 5 * std / math.sqrt(2 * n)
    assert abs(a).max() > 2 * std  # a normal's tails, not a uniform in ±std (whose largest value is std)


def test_std_draws_weights_from_that_normal_and_zero_biases():
    _, p = _drawn(NET)
    _check_normal(p["emb.weight"], 0.05)
    _check_normal(p["pos.weight"], 0.3)
    for name in "qkv":
        _check_normal(p[f"attn.{name}.weight"], 0.1)
        assert not p[f"attn.{name}.bias"].any()
    _check_normal(p["attn.out.weight"], 0.01)
    assert not p["attn.out.bias"].any()
    _check_normal(p["fc.weight"], 0.2)
    assert not p["fc.bias"].any()
    assert not p["proj.weight"].any()  # std=0: zeros (an output projection started at zero)
    # no std=: PyTorch's default, uniform ±1/√fan_in for the weight and the bias
    bound = 1 / math.sqrt(64)
    for name in ("plain.weight", "plain.bias"):
        assert abs(p[name]).max() <= bound and abs(p[name]).max() > 0.9 * bound


def test_std_follows_a_network_parameter_and_the_seed():
    _, a = _drawn(NET, std=0.5)
    _check_normal(a["emb.weight"], 0.5)
    _, b = _drawn(NET, seed=1, std=0.5)
    assert not np.allclose(a["emb.weight"], b["emb.weight"])


def test_std_keeps_the_parameter_count_and_layouts():
    plain = NET.replace("std=std", "").replace(", std=0.3", "").replace(", std=[0.1, 0.01]", "")
    plain = plain.replace(", std=0.2", "").replace(", std=0", "").replace("(std=0.05)", "")
    assert "std" not in plain
    a, _ = _drawn(NET)
    b, _ = _drawn(plain)
    assert {k: v.shape for k, v in a.params.items()} == {k: v.shape for k, v in b.params.items()}
    assert a.summary(memory=False).totals["params"] == b.summary(memory=False).totals["params"]


def test_gpt_char_carries_nanogpts_initialisation():
    net = netdsl.load(SPECS / "gpt_char.net", vocab=65)
    assert net.summary(memory=False).totals["params"] == 804_096
    p = init_params(net.ir.params, 0, "float64")
    proj = 0.02 / math.sqrt(2 * 4)
    assert net.values["proj_std"] == pytest.approx(proj, rel=1e-5)
    for name, a in p.items():
        if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
            assert (a == 1).all(), name
        elif name.endswith(("attn.out.weight", "mlp.c_proj.weight")):
            _check_normal(a, proj)
        else:  # wte (tied to the output), wpe, q, k, v, mlp.c_fc
            _check_normal(a, 0.02)
    assert len([n for n in p if n.endswith(("attn.out.weight", "mlp.c_proj.weight"))]) == 8


@pytest.mark.parametrize("setting, found", [
    ("dense(4, std=-0.02)", "-0.02"),
    ("dense(4, std=true)", "true"),
    ("dense(4, std=[0.1, 0.2])", "[0.1, 0.2]"),
    ('dense(4, std="small")', '"small"'),
    ("attention(2, std=[0.1, -1])", "[0.1, -1]"),
    ("attention(2, std=[0.1, 0.2, 0.3])", "[0.1, 0.2, 0.3]"),
])
def test_bad_std_values_are_refused_at_the_layer(setting, found):
    text = f"network B {{\n    input x: [3, 4]\n    output y = x -> {setting}\n}}\n"
    with pytest.raises(netdsl.SpecError) as err:
        netdsl.loads(text, name="b.net")
    first = str(err.value).split("\n")[0]
    assert first.startswith("b.net:3:21: error: ")
    assert "setting 'std' expects a standard deviation" in first and first.endswith(f"found {found}")


def test_conv_takes_std_but_not_with_fixed_weights():
    ok = "network C {\n    input x: [1, 8, 8]\n    output y = x -> c: conv(4, kernel=3, std=0.1)\n}\n"
    _, p = _drawn(ok)
    _check_normal(p["c.weight"], 0.1)
    assert not p["c.bias"].any()
    both = ok.replace("std=0.1", "weights=[[0, 1, 0], [1, 1, 1], [0, 1, 0]], std=0.1")
    with pytest.raises(netdsl.SpecError, match="has both weights= and std="):
        netdsl.loads(both, name="c.net")
