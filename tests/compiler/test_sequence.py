"""Sequence models through the compiler: embeddings, attention, fused recurrent kernels, Transformer layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import netdsl
from tests.compiler.nethelpers import compile64, direction_check, feeds, finite_difference_check

# LANGUAGE.md §5's LSTM cell, verbatim: defining it shadows the prelude's, so it runs unfused
SPEC_LSTM = """
cell LSTM(hidden)(x, h: [hidden], c: [hidden]) {
    z = concat(h, x)
    f = sigmoid(z -> f: dense(hidden))        # forget gate
    i = sigmoid(z -> i: dense(hidden))        # input gate
    o = sigmoid(z -> o: dense(hidden))        # output gate
    g = tanh(z -> g: dense(hidden))           # candidate memory
    c = f * c + i * g
    h = o * tanh(c)
    return h, (h, c)
}
"""
SPEC_RNN = """
cell RNN(hidden)(x, h: [hidden]) {            # h_t = tanh(W_hh h_{t-1} + W_xh x_t)
    h = tanh(x -> wx: dense(hidden) + h -> wh: dense(hidden, bias=false))
    return h, h                               # (output at t, new state)
}
"""
SPEC_GRU = """
cell GRU(hidden)(x, h: [hidden]) {
    zx = concat(h, x)
    z = sigmoid(zx -> z: dense(hidden))
    r = sigmoid(zx -> r: dense(hidden))
    n = tanh(concat(r * h, x) -> h: dense(hidden))
    h = (1 - z) * h + z * n
    return h, h
}
"""


def _recurrent_net(layer: str, cells: str = "") -> str:
    """With `cells`, the spec's own cell is unrolled (a user's cell never runs fused); else the built-in layer."""
    a = f"enc: unroll {layer.upper()}(5) over xs" if cells else f"xs -> enc: {layer}(5)"
    b = f"(dec: unroll {layer.upper()}(5) over xs reverse)" if cells else f"xs -> dec: {layer}(5)"
    if not cells:
        b = f"(unroll {layer.upper()}(5) over xs reverse)".replace("(unroll", "(dec: unroll")
    return cells + f"""
network R {{
    input xs: [7, 3]
    input y: [7, 2]
    a = {a}
    b = {b} -> tanh
    out = (a * b) -> dense(2)
    output out
    loss mse(out, y)
}}
"""


@pytest.mark.parametrize("layer,cells", [("lstm", SPEC_LSTM), ("rnn", SPEC_RNN), ("gru", SPEC_GRU)])
def test_spec_written_cell_and_fused_layer_agree_to_1e_10(layer, cells):
    fused_net, fused = compile64(_recurrent_net(layer), batch=3)
    _, spec = compile64(_recurrent_net(layer, cells), batch=3)
    assert "recurrent." in fused.code() and "recurrent." not in spec.code()
    assert sorted(fused.params) == sorted(spec.params)
    for k in fused.params:
        spec.params[k][...] = fused.params[k]
    x = feeds(fused_net, 3, np.random.default_rng(0))
    np.testing.assert_allclose(fused.forward(x)["out"], spec.forward(x)["out"], rtol=0, atol=1e-10)
    lf, gf = fused.loss_and_grads(x, update_stats=False)
    ls, gs = spec.loss_and_grads(x, update_stats=False)
    assert abs(lf - ls) < 1e-10
    for k in gf:
        np.testing.assert_allclose(gf[k], gs[k], rtol=0, atol=1e-10, err_msg=k)


def test_fused_lstm_gradients_with_from_and_reverse_float64():
    text = """
    network S {
        input xs: [6, 3]
        input y: [6, 4]
        a, fin = enc: unroll LSTM(4) over xs
        b = dec: unroll LSTM(4) over xs from fin reverse
        output b
        loss mse(a + b, y)
    }"""
    net, prog = compile64(text, batch=2)
    x = feeds(net, 2, np.random.default_rng(1))
    worst, where = finite_difference_check(prog, x, per_param=6)
    assert worst <= 1.0, where


OPS_NET = """
network Ops(V=11) {
    input ids: int[6]
    input label: int[6]
    let emb = embedding(V, 8)
    x = ids -> emb -> positional_encoding(16) -> positional_embedding(6) -> layernorm
    y = x -> dense(8) -> gelu -> layernorm(bias=false)
    s = (y -> softmax(axis=0)) * y + last(y)
    m = matmul(s, s -> transpose([1, 0])) -> softmax
    logits = s -> unembed(emb)
    output logits
    output m
    loss cross_entropy(logits, label, smoothing=0.1, ignore=3) + mse(m, m * 0)
}
"""


def test_sequence_ops_gradients_float64():
    net, prog = compile64(OPS_NET, batch=3)
    assert "emb.weight" in prog.params and len([k for k in prog.params if k.startswith("emb")]) == 1
    x = feeds(net, 3, np.random.default_rng(2))
    x["label"][0, :2] = 3  # some ignored positions
    worst, where = finite_difference_check(prog, x, per_param=6)
    assert worst <= 1.0, where
    rel, fd, an = direction_check(prog, x)
    assert rel < 1e-6, (fd, an)


ENCODER = """
block EncoderLayer(d, heads, ff)(x) {
    a = x -> attention(heads) -> dropout(0.1)
    x = (x + a) -> layernorm
    f = x -> dense(ff) -> relu -> dense(d)
    return (x + f) -> layernorm
}
block DecoderLayer(d, heads, ff)(y, memory) {
    a = y -> attention(heads, causal=true)
    y = (y + a) -> layernorm
    c = attention(heads)(y, memory, memory)
    y = (y + c) -> layernorm
    return (y + (y -> dense(ff) -> gelu -> dense(d))) -> layernorm
}
network T(d=8, heads=2, ff=16) {
    input src: [5, 8]
    input tgt: [4, 8]
    input y: [4, 3]
    memory = src -> EncoderLayer(d, heads, ff)
    out = DecoderLayer(d, heads, ff)(tgt, memory) -> dense(3)
    output out
    loss mse(out, y)
}
"""


def test_transformer_encoder_and_causal_decoder_layers_gradients_float64():
    net, prog = compile64(ENCODER, batch=2)
    x = feeds(net, 2, np.random.default_rng(3))
    worst, where = finite_difference_check(prog, x, per_param=4)
    assert worst <= 1.0, where
    rel, fd, an = direction_check(prog, x)
    assert rel < 1e-6, (fd, an)


def test_causal_attention_ignores_future_steps():
    text = """
    network C {
        input x: [6, 8]
        y = x -> attention(2, causal=true) -> dense(4)
        output y
    }"""
    net = netdsl.loads(text)
    prog = netdsl.compile(net, batch=2, dtype="float64")
    x = np.random.default_rng(4).standard_normal((2, 6, 8))
    base = prog.forward({"x": x})["y"]
    for t in range(5):
        bumped = x.copy()
        bumped[:, t + 1 :] += 1.0
        out = prog.forward({"x": bumped})["y"]
        np.testing.assert_array_equal(out[:, : t + 1], base[:, : t + 1])
        assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :])


def test_positional_encoding_values_d128_positions_0_to_63():
    net = netdsl.loads("network P { input x: [64, 128]\n y = x -> positional_encoding(64)\n output y }")
    prog = netdsl.compile(net, batch=1, dtype="float64")
    pe = prog.forward({"x": np.zeros((1, 64, 128))})["y"][0]
    for pos in (0, 1, 17, 63):
        for i in (0, 1, 31, 63):
            angle = pos / 10000 ** (2 * i / 128)
            assert pe[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-12)
