"""Fuzzing the front end: mutated specs either load or fail with a positioned `SpecError`, fast.

Small valid specs (LeNet-5, an inception block in a network, cells and their unrolls, a recipe) are mutated by
deleting, duplicating, swapping and replacing tokens and characters. Every outcome must be a checked `Net` or a
`SpecError` whose first diagnostic has a position (a span, or a message naming the file for file-level errors) —
never another exception (an internal error is a bug), never a hang. Hypothesis runs derandomized, so CI is
deterministic; the minimal reproducers of the bugs it found live in tests/test_elaborate.py.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.diagnostics import SpecError
from netdsl.ir import verify

NAME = "fuzz.net"
LIMIT_S = 2.0

LENET = """\
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

INCEPTION = """\
block Inception(c1, c3r, c3, c5r, c5, pool_proj)(x) {
    a = x -> conv(c1, kernel=1) -> relu
    b = x -> conv(c3r, kernel=1) -> relu -> conv(c3, kernel=3, pad=same) -> relu
    c = x -> conv(c5r, kernel=1) -> relu -> conv(c5, kernel=5, pad=same) -> relu
    d = x -> maxpool(3, stride=1, pad=same) -> conv(pool_proj, kernel=1) -> relu
    return concat(a, b, c, d)                 # on the channel axis
}

block Basic(channels, stride=1)(x) {
    y = x -> conv(channels, kernel=3, stride=stride, pad=1, bias=false) -> batchnorm -> relu
          -> conv(channels, kernel=3, pad=1, bias=false) -> batchnorm
    skip = if stride == 1 and x.shape[0] == channels then x
           else x -> conv(channels, kernel=1, stride=stride, bias=false) -> batchnorm
    return relu(y + skip)
}

block Down(c)(x: [C, H, W]) -> [c, H / 2, W / 2] {
    return x -> conv(c, kernel=3, stride=2, pad=1) -> relu
}

network Net(w=32) {
    input x: [16, 8, 8]
    y = x -> i3a: Inception(8, 4, 8, 2, 4, 4) -> layer: repeat 2 Basic(w) -> Down(8)
    let proj = dense(10)
    z = y -> flatten -> proj
    output z
}
"""

CELLS = """\
cell RNN(hidden)(x, h: [hidden]) {            # h_t = tanh(W_hh h_{t-1} + W_xh x_t)
    h = tanh(x -> wx: dense(hidden) + h -> wh: dense(hidden, bias=false))
    return h, h                               # (output at t, new state)
}

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

network Seq(h=8) {
    input xs: [6, 4]
    input label: int[6]
    ys, final = enc: unroll LSTM(h) over xs
    back = unroll RNN(h) over xs reverse
    outs = dec: unroll LSTM(h) over xs from final
    g = xs -> gru(h)
    logits = concat(outs, back, g, last(ys) + 0 * outs) -> dense(5)
    output logits
    loss cross_entropy(logits, label)
}
"""

RECIPE = LENET + """
train LeNet5 {
    data       digits(size=32)                       # fields bind to the inputs in declaration order
    optimizer  sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)
    schedule   step(every=10, gamma=0.1)             # lr ÷ 10 every 10 epochs
    batch      64
    epochs     20
    val        0.1
}
"""

SEEDS = {"lenet": LENET, "inception": INCEPTION, "cells": CELLS, "recipe": RECIPE}

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|->|==|!=|<=|>=|'
                    r"#[^\n]*|\n|[ \t]+|.", re.DOTALL)
# replacement tokens: other layers, blocks, names, odd numbers and values
_VOCAB = [
    "0", "1", "2", "3", "-1", "7", "100000000000", "2.5", "1e-4", "1e400", "true", "false", '"s"', "same", "auto",
    "x", "y", "h", "c", "xs", "ys", "label", "logits", "final", "image", "z", "w", "proj", "shape", "rank",
    "conv", "dense", "relu", "flatten", "concat", "maxpool", "avgpool", "global_avgpool", "batchnorm", "layernorm",
    "dropout", "reshape", "transpose", "matmul", "softmax", "mean", "last", "embedding", "unembed", "attention",
    "positional_encoding", "positional_embedding", "cross_entropy", "mse", "lrn", "leaky_relu", "identity",
    "LSTM", "RNN", "Inception", "Basic", "Down", "lstm", "rnn", "gru", "add", "neg", "const", "input", "unroll",
    "repeat", "over", "from", "reverse", "let", "return", "if", "then", "else", "int", "block", "cell", "network",
    "[1, 2]", "[]", "[-1]", "[[1, 0], [0, 1]]", "(x, h)", "x.shape[0]", "-> relu", ": [4]", "-> repeat 2 dense(4)",
    "-> i3a.conv_1: conv(2, kernel=1)", "-> layer.0: relu", "-> enc.f: dense(2)", "-> c1: relu", "-> proj",
    "{", "}", "(", ")", "[", "]", ",", ";", ":", "=", "->", "+", "*", "/", "\n", "#", '"', ".", "\t", "é", "\x00", "\x0c", "\u2028", "\r",
]
_KINDS = ["tok_delete", "tok_duplicate", "tok_swap", "tok_swap_next", "tok_replace", "tok_insert",
          "char_delete", "char_duplicate", "char_swap_next"]


def mutate(text: str, edits: list[tuple[str, int, int, int]]) -> str:
    toks = _TOKEN.findall(text)
    assert "".join(toks) == text
    for kind, a, b, v in edits:
        if kind.startswith("tok_"):
            if not toks:
                continue
            i, j = a % len(toks), b % len(toks)
            if kind == "tok_delete":
                del toks[i]
            elif kind == "tok_duplicate":
                toks.insert(i, toks[i])
            elif kind == "tok_swap":
                toks[i], toks[j] = toks[j], toks[i]
            elif kind == "tok_swap_next" and i + 1 < len(toks):
                toks[i], toks[i + 1] = toks[i + 1], toks[i]
            elif kind == "tok_replace":
                toks[i] = _VOCAB[v % len(_VOCAB)]
            elif kind == "tok_insert":
                toks.insert(i, " " + _VOCAB[v % len(_VOCAB)] + " ")
        else:
            s = "".join(toks)
            if s:
                i = a % len(s)
                if kind == "char_delete":
                    s = s[:i] + s[i + 1 :]
                elif kind == "char_duplicate":
                    s = s[:i] + s[i] + s[i:]
                elif i + 1 < len(s):
                    s = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
            toks = _TOKEN.findall(s)
    return "".join(toks)


_edit = st.tuples(st.sampled_from(_KINDS), st.integers(0, 1 << 20), st.integers(0, 1 << 20), st.integers(0, 1 << 10))
_edits = st.lists(_edit, min_size=1, max_size=3)


def check_outcome(text: str) -> str:
    """Load the text: a checked Net (its summary and IR print) or a positioned SpecError; fast. Returns which."""
    t0 = time.process_time()  # CPU time: other work on the machine does not count
    try:
        net = netdsl.loads(text, NAME)
    except SpecError as err:
        assert err.diagnostics, "a SpecError without diagnostics"
        d = err.diagnostics[0]
        assert d.span is not None or d.message.startswith(NAME), f"unpositioned diagnostic: {d.message}"
        rendered = str(err)
        if d.span is not None:
            assert rendered.startswith(f"{d.span.file}:{d.span.line}:{d.span.col}: error: ")
            if d.span.file == NAME:  # the quoted line is the one the position names, as written
                lines = text.split("\n")
                quoted = lines[d.span.line - 1].removesuffix("\r") if d.span.line <= len(lines) else ""
                if quoted:
                    assert rendered.split("\n")[1] == quoted.expandtabs(4)
        outcome = "error"
    else:
        verify(net.ir)
        net.ir.pretty()
        s = net.summary()
        s.to_json()
        assert s.totals["params"] >= 0
        outcome = "ok"
    elapsed = time.process_time() - t0
    assert elapsed < LIMIT_S, f"took {elapsed:.2f} s"
    return outcome


@pytest.fixture(autouse=True, scope="module")
def _warm_parser():
    """Build the grammar (and the prelude) once before any case is timed: a cold cache is not the spec's cost."""
    netdsl.loads("network W {\n    input x: [1]\n    output y = x\n}\n")


def test_seeds_are_valid():
    for name, text in SEEDS.items():
        assert check_outcome(text) == "ok", name


def test_mutate_is_deterministic_and_changes_text():
    edits = [("tok_delete", 5, 0, 0), ("char_swap_next", 40, 0, 0)]
    assert mutate(LENET, edits) == mutate(LENET, edits) != LENET
    assert mutate(LENET, []) == LENET


# 4 × 550 = 2,200 examples; derandomized and without an example database, so CI runs the same cases every time.
# NETDSL_FUZZ_EXAMPLES=N NETDSL_FUZZ_RANDOM=1 runs a longer, random hunt locally.
_FUZZ = settings(max_examples=int(os.environ.get("NETDSL_FUZZ_EXAMPLES", "550")), deadline=None,
                 derandomize=not os.environ.get("NETDSL_FUZZ_RANDOM"), database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@_FUZZ
@given(_edits)
def test_fuzz_lenet(edits):
    check_outcome(mutate(LENET, edits))


@_FUZZ
@given(_edits)
def test_fuzz_inception(edits):
    check_outcome(mutate(INCEPTION, edits))


@_FUZZ
@given(_edits)
def test_fuzz_cells(edits):
    check_outcome(mutate(CELLS, edits))


@_FUZZ
@given(_edits)
def test_fuzz_recipe(edits):
    check_outcome(mutate(RECIPE, edits))
