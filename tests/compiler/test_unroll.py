"""Unrolls: one loop over time around the cell's kernels, backprop through time, from/reverse/final state."""

from __future__ import annotations

import re

import numpy as np

import netdsl
from tests.compiler.nethelpers import compile64, direction_check, feeds, finite_difference_check

CELL = """
cell Mine(hidden)(x, h: [hidden], c: [hidden]) {
    z = concat(h, x)
    f = sigmoid(z -> f: dense(hidden))
    g = tanh(z -> g: dense(hidden))
    c = f * c + g
    h = tanh(c) * f
    return h, (h, c)
}
"""

SEQ2SEQ = CELL + """
network S(T=5) {
    input xs: [T, 3]
    input ys: [T, 2]
    enc, final = e: unroll Mine(4) over xs
    dec = d: unroll Mine(4) over xs from final reverse
    out = (enc + dec) -> dense(2)
    output out
    loss mse(out, ys)
}
"""


def test_seq2seq_from_and_reverse_gradients_float64():
    net, prog = compile64(SEQ2SEQ, batch=3)
    assert {"e.f.weight", "e.g.bias", "d.f.weight", "d.g.bias"} <= set(prog.params)
    x = feeds(net, 3, np.random.default_rng(0))
    worst, where = finite_difference_check(prog, x, per_param=8)
    assert worst <= 1.0, where
    rel, fd, an = direction_check(prog, x)
    assert rel < 1e-6, (fd, an)


def test_user_cell_unrolled_over_20_steps_gradients_float64():
    text = CELL + """
    network L {
        input xs: [20, 3]
        input y: [4]
        ys = unroll Mine(4) over xs
        loss mse(ys -> mean(0), y)
        output ys
    }"""
    net, prog = compile64(text, batch=2)
    x = feeds(net, 2, np.random.default_rng(1))
    worst, where = finite_difference_check(prog, x, per_param=10)
    assert worst <= 1.0, where


def _forward(prog, xs):
    return prog.forward({"xs": xs})


def test_unroll_is_causal_and_reverse_is_anticausal():
    text = CELL + """
    network C {
        input xs: [6, 3]
        fwd = unroll Mine(4) over xs
        bwd = unroll Mine(4) over xs reverse
        output fwd
        output bwd
    }"""
    net = netdsl.loads(text)
    prog = netdsl.compile(net, batch=2, dtype="float64")
    xs = np.random.default_rng(2).standard_normal((2, 6, 3))
    base = _forward(prog, xs)
    t = 3
    bumped = xs.copy()
    bumped[:, t + 1 :] += 1.0
    out = _forward(prog, bumped)
    np.testing.assert_array_equal(out["fwd"][:, : t + 1], base["fwd"][:, : t + 1])
    assert not np.allclose(out["fwd"][:, t + 1 :], base["fwd"][:, t + 1 :])
    bumped = xs.copy()
    bumped[:, :t] += 1.0  # the reverse unroll's step t sees only steps ≥ t
    out = _forward(prog, bumped)
    np.testing.assert_array_equal(out["bwd"][:, t:], base["bwd"][:, t:])


def test_unroll_matches_a_numpy_loop():
    text = """
    cell Elman(hidden)(x, h: [hidden]) {
        h = tanh(x -> wx: dense(hidden) + h -> wh: dense(hidden, bias=false))
        return h, h
    }
    network E {
        input xs: [7, 3]
        ys, last_h = r: unroll Elman(5) over xs
        output ys
        output last_h
    }"""
    net = netdsl.loads(text)
    prog = netdsl.compile(net, batch=2, dtype="float64")
    xs = np.random.default_rng(3).standard_normal((2, 7, 3))
    out = prog.forward({"xs": xs})
    p = prog.params
    h = np.zeros((2, 5))
    for t in range(7):
        h = np.tanh(xs[:, t] @ p["r.wx.weight"].T + p["r.wx.bias"] + h @ p["r.wh.weight"].T)
        np.testing.assert_allclose(out["ys"][:, t], h, rtol=1e-12)
    np.testing.assert_allclose(out["last_h"], h, rtol=1e-12)


def _normalised_code(steps: int) -> str:
    net = netdsl.loads(SEQ2SEQ, T=steps)
    prog = netdsl.compile(net, batch=2)
    code = prog.code(train=True)
    body = code.split("# views:")[0]
    return re.sub(r"\d+", "N", body)


def test_generated_code_does_not_grow_with_the_number_of_steps():
    short, long = _normalised_code(8), _normalised_code(64)
    assert short == long
    assert short.count("for t in range(") == 4  # two unrolls, forward and backward
