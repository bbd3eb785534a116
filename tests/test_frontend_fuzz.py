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
from language_examples import BLOCKS, DOWN, LENET  # LANGUAGE.md's examples, verbatim
from language_examples import CELLS as LANGUAGE_CELLS
from language_examples import RECIPE as LANGUAGE_RECIPE

import netdsl
from netdsl.diagnostics import SpecError
from netdsl.ir import verify

NAME = "fuzz.net"
LIMIT_S = 2.0

# LANGUAGE.md's examples, completed into networks where they are only blocks or cells
INCEPTION = BLOCKS + "\n" + DOWN + """
network Net(w=32) {
    input x: [16, 8, 8]
    y = x -> i3a: Inception(8, 4, 8, 2, 4, 4) -> layer: repeat 2 Basic(w) -> Down(8)
    let proj = dense(10)
    z = y -> flatten -> proj
    output z
}
"""

CELLS = LANGUAGE_CELLS + """
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

# LeNet5 and its recipe, with a validation split
RECIPE = LENET + "\n" + LANGUAGE_RECIPE.removesuffix("}\n") + """\
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
