"""Every op has a lowering rule, a VJP rule and CPU kernels: lower a tiny network per op, in training mode,
and check that each kernel the schedule calls exists."""

from __future__ import annotations

import importlib

import pytest
from netdsl.compiler import rules
from netdsl.compiler.lower import lower
from netdsl.compiler.schedule import walk

import netdsl
from netdsl import ops

# op -> (input declaration, expression producing a float tensor from `x`)
CASES: dict[str, tuple[str, str]] = {
    "conv": ("[2, 6, 6]", "x -> conv(3, kernel=3, stride=2, pad=1, dilation=1, groups=1)"),
    "maxpool": ("[2, 6, 6]", "x -> maxpool(2)"),
    "avgpool": ("[2, 6, 6]", "x -> avgpool(3, stride=1, pad=1)"),
    "global_avgpool": ("[2, 6, 6]", "x -> global_avgpool"),
    "lrn": ("[4, 3, 3]", "x -> lrn(size=3)"),
    "batchnorm": ("[4, 3, 3]", "x -> batchnorm"),
    "layernorm": ("[5, 4]", "x -> layernorm"),
    "dropout": ("[6]", "x -> dropout(0.5)"),
    "dense": ("[6]", "x -> dense(4)"),
    "flatten": ("[2, 3, 3]", "x -> flatten"),
    "reshape": ("[2, 3, 3]", "x -> reshape([3, 6])"),
    "transpose": ("[2, 3, 4]", "x -> transpose([2, 0, 1])"),
    "matmul": ("[3, 4]", "matmul(x, x -> transpose([1, 0]))"),
    "relu": ("[6]", "x -> relu"),
    "leaky_relu": ("[6]", "x -> leaky_relu(0.1)"),
    "sigmoid": ("[6]", "x -> sigmoid"),
    "tanh": ("[6]", "x -> tanh"),
    "gelu": ("[6]", "x -> gelu"),
    "softmax": ("[3, 4]", "x -> softmax(axis=0)"),
    "identity": ("[6]", "x -> identity"),
    "concat": ("[2, 3, 3]", "concat(x, x -> relu)"),
    "add": ("[3, 4]", "x + (x -> mean(0))"),
    "sub": ("[3, 4]", "x - 1"),
    "mul": ("[3, 4]", "x * x"),
    "div": ("[3, 4]", "x / (x * x + 1)"),
    "neg": ("[3, 4]", "-x"),
    "mean": ("[3, 4]", "x -> mean(1)"),
    "last": ("[3, 4]", "last(x)"),
}
LOSSES = {"cross_entropy": "cross_entropy(x -> flatten -> dense(3), label)", "mse": "mse(x, x * 2)"}
SEQUENCE = {
    "positional_encoding": ("[4, 6]", "x -> positional_encoding(8)"),
    "positional_embedding": ("[4, 6]", "x -> positional_embedding(8)"),
    "attention": ("[4, 6]", "attention(2, causal=true)(x, x -> relu, x -> tanh)"),
}
TOKENS = """network T {
    input ids: int[4]
    input label: int[4]
    let emb = embedding(7, 6)
    logits = ids -> emb -> unembed(emb)
    output logits
    loss cross_entropy(logits, label)
}"""
CASES.update(SEQUENCE)
CORE_OPS = sorted(CASES) + sorted(LOSSES)
ALL_OPS = CORE_OPS + ["embedding", "unembed"]


def test_the_cases_cover_the_whole_op_table():
    assert sorted(ALL_OPS) == ops.names()


def _spec(decl: str, expr: str, loss: str | None = None) -> str:
    loss = loss or "mse(y, y * 0)"
    return f"""network T {{
    input x: {decl}
    input label: int[]
    y = ({expr}) -> flatten -> dense(3)
    output y
    loss {loss} + cross_entropy(y, label) * 0
}}"""


def _kernels_called(text: str) -> set[str]:
    net = netdsl.loads(text)
    sched = lower(net, train=True)
    return {c.fn for c in walk(sched.items)}


@pytest.mark.parametrize("op", ALL_OPS)
def test_op_has_rules_and_cpu_kernels(op):
    assert ops.get(op) is not None, f"{op} is not in the op table"
    assert op in rules.FORWARD, f"{op} has no forward lowering rule"
    assert op in rules.BACKWARD, f"{op} has no VJP rule"
    if op in ("embedding", "unembed"):
        text = TOKENS
    elif op in LOSSES:
        text = _spec("[2, 3]", "x", LOSSES[op])
    else:
        text = _spec(*CASES[op])
    called = _kernels_called(text)
    assert any(f.endswith("_forward") for f in called)
    for fn in called:
        module, name = fn.split(".")
        mod = importlib.import_module(f"netdsl.compiler.kernels.cpu.{module}")
        assert hasattr(mod, name), f"{op}: kernel {fn} does not exist"


def test_every_op_has_a_forward_and_backward_kernel_pair():
    missing = []
    for op in ALL_OPS:
        family = ops.get(op).family
        mod = importlib.import_module(f"netdsl.compiler.kernels.cpu.{family}")
        names = {op, {"conv": "conv2d", "maxpool": "maxpool2d", "avgpool": "avgpool2d"}.get(op, op)}
        attrs = dir(mod)
        paired = any(any(a.startswith(f"{n}_forward") for a in attrs)
                     and any(a.startswith(f"{n}_backward") for a in attrs) for n in names)
        if not paired and op not in ("flatten", "reshape"):  # those two are copies in the shape family
            missing.append(f"{family}.{op}")
    assert not missing, missing
