"""Unit tests of the elaborator: the IR's printed form, verify, generated names, imports, the prelude, conditionals,
compile-time arithmetic, network parameters — and the minimal reproducers of the bugs fuzzing found."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import netdsl
from netdsl import elaborate
from netdsl.diagnostics import InternalError, SpecError
from netdsl.ir import TensorType, verify

ROOT = Path(__file__).resolve().parent.parent

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

BASIC = """\
block Basic(channels, stride=1)(x) {
    y = x -> conv(channels, kernel=3, stride=stride, pad=1, bias=false) -> batchnorm -> relu
          -> conv(channels, kernel=3, pad=1, bias=false) -> batchnorm
    skip = if stride == 1 and x.shape[0] == channels then x
           else x -> conv(channels, kernel=1, stride=stride, bias=false) -> batchnorm
    return relu(y + skip)
}
"""


def load(text: str, **params) -> netdsl.Net:
    net = netdsl.loads(text, "t.net", **params)
    verify(net.ir)
    return net


def error(text: str, **params) -> SpecError:
    with pytest.raises(SpecError) as info:
        netdsl.loads(text, "t.net", **params)
    return info.value


def shape(net: netdsl.Net, output: str) -> tuple[int, ...]:
    return net.ir.type_of(net.ir.outputs[output]).shape


# ------------------------------------------------------------------ the IR's printed form and verify

def test_pretty_prints_one_line_per_node_with_its_source_line():
    net = load(LENET)
    lines = net.ir.pretty().splitlines()
    node_lines = [ln for ln in lines if ln.startswith("%")]
    assert len(node_lines) == len(net.ir) == 15
    pattern = re.compile(r"^%(\d+): (f32|i64)\[[\d,]*\]!? = \w+(\[[^\]]*(\][^\]]*)*\])?( %\d+(\.\d+)?)*\s+# t\.net:(\d+) (\S+)$")
    for ln in node_lines:
        assert pattern.match(ln), ln
    collapsed = [re.sub(r"\s+#", "  #", ln) for ln in node_lines]
    assert collapsed[0] == "%0: f32[1,32,32] = input[name=image]  # t.net:2 image"
    assert collapsed[1] == "%1: i64[] = input[name=label]  # t.net:3 label"
    assert collapsed[2] == "%2: f32[6,28,28] = conv[out=6,kernel=[5,5]] %0  # t.net:5 c1"
    assert collapsed[5] == "%5: f32[16,10,10] = conv[out=16,kernel=[5,5]] %4  # t.net:6 c3"
    assert collapsed[8] == "%8: f32[400] = flatten %7  # t.net:7 flatten_1"
    assert collapsed[13] == "%13: f32[10] = dense[units=10] %12  # t.net:10 out"
    assert collapsed[14] == "%14: f32[]! = cross_entropy %13 %1  # t.net:12 cross_entropy_1"
    assert lines[-2:] == ["output logits = %13", "loss = %14"]
    # each node's source line is the line its layer is written on
    text_lines = LENET.splitlines()
    for n in net.ir:
        assert n.span is not None and n.span.file == "t.net"
        if n.op == "conv":
            assert "conv(" in text_lines[n.span.line - 1]


def test_pretty_nests_an_unroll_body_and_shows_non_default_attributes():
    net = load("network S {\n    input xs: [5, 3]\n    ys = xs -> enc: lstm(4)\n    output ys\n}\n")
    lines = net.ir.pretty().splitlines()
    (head,) = [ln for ln in lines if " = unroll[" in ln]
    assert head.startswith("%1: f32[5,4], f32[4], f32[4] = unroll[steps=5,")
    body = [ln for ln in lines if ln.startswith("    %")]
    assert len(body) == 17 and all(re.search(r"# <prelude>:\d+ enc\.", ln) for ln in body)
    net = load("network P {\n    input x: [2, 9, 9]\n    output y = x -> conv(4, kernel=3, stride=2, bias=false)\n}\n")
    (conv,) = [ln for ln in net.ir.pretty().splitlines() if "conv" in ln]
    assert "conv[out=4,kernel=[3,3],stride=[2,2],bias=False] %0" in conv


SPECS_FOR_VERIFY = [
    LENET,
    BASIC + "network R {\n input x: [16, 8, 8]\n y = x -> l: repeat 2 Basic(32, stride=2)\n output y\n}\n",
    ("network Q {\n input t: int[8]\n input y: int[8]\n let e = embedding(20, 8)\n"
     " h = t -> e -> positional_encoding(8) -> attention(2, causal=true) -> layernorm\n"
     " logits = h -> unembed(e)\n output logits\n loss cross_entropy(logits, y)\n}\n"),
    ("network G {\n input xs: [6, 3]\n a, s = unroll GRU(4) over xs\n b = unroll RNN(4) over xs from s reverse\n"
     " output c = concat(a, b) -> mean(axis=0)\n}\n"),
]


@pytest.mark.parametrize("text", SPECS_FOR_VERIFY, ids=["lenet", "resnet", "transformer", "recurrent"])
def test_verify_passes_on_elaborated_specs(text):
    net = load(text)
    verify(net.ir)
    for n in net.ir:
        if n.body is not None:
            verify(n.body)


ZOO = sorted((ROOT / "specs").glob("*.net"))


@pytest.mark.skipif(not ZOO, reason="no model zoo in this checkout")
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_verify_passes_on_the_zoo(path):
    params: dict[str, int] = {}
    for _ in range(8):  # `vocab=auto` parameters take a value from the data: give them one
        try:
            net = netdsl.load(path, **params)
            break
        except SpecError as err:
            m = re.match(r"network parameter '(\w+)' is auto", err.diagnostics[0].message)
            if m is None:
                raise
            params[m.group(1)] = 32
    verify(net.ir)
    for n in net.ir:
        if n.body is not None:
            verify(n.body)


def test_verify_finds_a_wrong_stored_shape_and_an_unregistered_parameter():
    net = load(LENET)
    node = next(n for n in net.ir if n.name == "c3")
    node.outputs[0] = TensorType((16, 9, 9))
    with pytest.raises(InternalError, match="stored type"):
        verify(net.ir)
    net = load(LENET)
    node = next(n for n in net.ir if n.name == "f5")
    node.params["weight"] = "nowhere.weight"
    with pytest.raises(InternalError, match="not registered"):
        verify(net.ir)


# ------------------------------------------------------------------ generated names

def test_generated_names_are_stable_and_in_source_order():
    text = BASIC + """\
network Names {
    input x: [8, 8, 8]
    a = x -> conv(8, kernel=3, pad=1) -> relu
    b = a -> named: conv(8, kernel=1) -> relu -> conv(8, kernel=1)
    c = b -> Basic(8) -> Basic(16)
    output c
}
"""
    net = load(text)
    names = [n.name for n in net.ir if n.op != "input" and not n.block]
    assert names == ["conv_1", "relu_1", "named", "relu_2", "conv_2"]
    blocks = [n.name for n in net.ir if n.block == "Basic_2"]
    assert blocks[:3] == ["Basic_2.conv_1", "Basic_2.batchnorm_1", "Basic_2.relu_1"]
    assert "Basic_2.conv_3" in blocks  # the projection of 8 → 16
    assert all(n.block in ("", "Basic_1", "Basic_2") for n in net.ir)
    again = load(text)
    assert [n.name for n in again.ir] == [n.name for n in net.ir]
    assert sorted(again.params) == sorted(net.params)
    assert again.spec_hash == net.spec_hash
    # comments and layout do not change names or the hash
    relaid = load(text.replace("    a = x -> conv(8, kernel=3, pad=1) -> relu",
                               "    # a comment\n    a = x\n        -> conv(8, kernel=3, pad=1)\n        -> relu"))
    assert [n.name for n in relaid.ir] == [n.name for n in net.ir]
    assert relaid.spec_hash == net.spec_hash


def test_labels_name_nodes_and_parameters_and_dotted_labels_nest():
    net = load("network L {\n input x: [4]\n y = x -> fc1: dense(3) -> relu -> head.0: dense(2)\n output y\n}\n")
    assert sorted(net.params) == ["fc1.bias", "fc1.weight", "head.0.bias", "head.0.weight"]
    assert [n.name for n in net.ir] == ["x", "fc1", "relu_1", "head.0"]


# ------------------------------------------------------------------ imports

@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "lib" / "blocks.net").write_text(
        'import "more.net"\nimport "common.net"\n\nblock Stem(c)(x) {\n    return x -> conv(c, kernel=3, pad=1) -> Act\n}\n')
    (tmp_path / "lib" / "more.net").write_text('import "common.net"\n\nblock Act()(x) {\n    return x -> relu\n}\n')
    (tmp_path / "lib" / "common.net").write_text(
        "block Head(n)(x) {\n    return x -> global_avgpool -> dense(n)\n}\n")
    (tmp_path / "other" / "ext.net").write_text("block Ext()(x) {\n    return x -> relu\n}\n")
    (tmp_path / "main.net").write_text(
        'import "lib/blocks.net"\n\nnetwork Main(classes=10) {\n    input image: [3, 8, 8]\n'
        "    y = image -> stem: Stem(4) -> Head(classes)\n    output y\n}\n")
    return tmp_path


def test_import_is_relative_to_the_importing_file(project: Path):
    net = netdsl.load(project / "main.net")
    verify(net.ir)
    assert shape(net, "y") == (10,)
    assert sorted(net.params) == ["Head_1.dense_1.bias", "Head_1.dense_1.weight", "stem.conv_1.bias",
                                  "stem.conv_1.weight"]
    files = {n.name: Path(n.span.file).resolve() for n in net.ir}
    assert files["stem.conv_1"] == (project / "lib" / "blocks.net").resolve()
    assert files["stem.Act_1.relu_1"] == (project / "lib" / "more.net").resolve()  # imported by an import
    assert files["Head_1.dense_1"] == (project / "lib" / "common.net").resolve()  # imported twice, loaded once
    assert files["image"] == (project / "main.net").resolve()


def test_import_outside_the_tree_needs_allow_path(project: Path):
    (project / "lib" / "esc.net").write_text(
        'import "../other/ext.net"\nnetwork E {\n    input x: [3]\n    output y = x -> Ext\n}\n')
    err = pytest.raises(SpecError, netdsl.load, project / "lib" / "esc.net").value
    assert "leaves the spec's directory" in err.diagnostics[0].message
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.col) == (1, 1)
    net = netdsl.load(project / "lib" / "esc.net", allow_paths=[str(project / "other")])
    assert [n.op for n in net.ir] == ["input", "relu"]


def test_an_error_in_an_imported_file_points_into_it(project: Path):
    (project / "lib" / "common.net").write_text("block Head(n)(x) {\n    return x -> global_avgpool -> dense(n, bias=maybe)\n}\n")
    err = pytest.raises(SpecError, netdsl.load, project / "main.net").value
    d = err.diagnostics[0]
    assert Path(d.span.file).resolve() == (project / "lib" / "common.net").resolve()
    assert (d.span.line, d.span.col) == (2, 35)
    assert "setting 'bias' expects true or false, found maybe" in d.message
    assert "in block Head, used at" in str(err) and "main.net:5:" in str(err)


def test_import_from_a_string_needs_a_directory(project: Path):
    text = (project / "main.net").read_text()
    assert "import needs a file" in error(text).diagnostics[0].message
    net = netdsl.loads(text, "main.net", base_dir=project)
    assert shape(net, "y") == (10,)


# ------------------------------------------------------------------ the prelude

def test_a_user_block_shadows_a_prelude_name():
    net = load("block gru(h)(xs) {\n    return xs -> dense(h)\n}\n"
               "network S {\n    input xs: [4, 3]\n    y = xs -> g: gru(5)\n    output y\n}\n")
    assert [n.op for n in net.ir] == ["input", "dense"]
    assert sorted(net.params) == ["g.dense_1.bias", "g.dense_1.weight"]


def test_a_user_cell_does_not_change_the_prelude_layer():
    net = load("""\
cell LSTM(hidden)(x, h: [hidden], c: [hidden]) {
    y = concat(h, x) -> dense(hidden) -> tanh
    return y, (y, y)
}
network T {
    input xs: [5, 3]
    a = xs -> std: lstm(4)
    b = mine: unroll LSTM(4) over xs
    output a
    output b
}
""")
    std, mine = [n for n in net.ir if n.op == "unroll"]
    assert std.attrs["prelude"] is True and mine.attrs["prelude"] is False
    assert sorted(k for k in net.params if k.startswith("std.")) == sorted(
        f"std.{g}.{p}" for g in "figo" for p in ("weight", "bias"))
    assert sorted(k for k in net.params if k.startswith("mine.")) == ["mine.dense_1.bias", "mine.dense_1.weight"]


def test_prelude_unrolls_are_marked_standard():
    net = load("network T {\n    input xs: [5, 3]\n    a = xs -> lstm(4)\n    b = unroll GRU(4) over xs\n"
               "    output a\n    output b\n}\n")
    assert [n.attrs["prelude"] for n in net.ir if n.op == "unroll"] == [True, True]


# ------------------------------------------------------------------ conditionals and compile-time arithmetic

def test_if_checks_only_the_chosen_branch():
    text = """\
network C(big=true) {
    input x: [4]
    y = if big then x -> dense(8) else x -> dense(0)
    output y
}
"""
    assert shape(load(text), "y") == (8,)
    err = error(text, big=False)
    assert "setting 'units' expects a positive whole number, found 0" in err.diagnostics[0].message
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.col) == (3, 45)
    bad = error("network C {\n    input x: [4]\n    y = if x then x else x\n    output y\n}\n")
    assert "expected a compile-time value, found a tensor [4]" in bad.diagnostics[0].message


def test_compile_time_arithmetic():
    net = load("""\
block Wide(c, heads=2)(x) {
    w = c * 4
    per = w / heads
    return x -> dense(per * heads + x.shape[0] - x.shape[-1]) -> dense(if x.rank == 1 and not (c < 2) then c else 1)
}
network A {
    input x: [6]
    y = x -> Wide(3)
    z = x -> dropout(1.0 * 1 / 4) -> dense(-(-2) * 3 - 1)
    output y
    output z
}
""")
    assert [n.attrs["units"] for n in net.ir if n.op == "dense"] == [12, 3, 5]
    assert next(n for n in net.ir if n.op == "dropout").attrs["p"] == 0.25
    assert "inexact division: 7 / 2" in error("network A {\n input x: [4]\n output y = x -> dense(7 / 2)\n}\n"
                                              ).diagnostics[0].message
    assert "division by zero" in error("network A {\n input x: [4]\n output y = x -> dense(7 / 0)\n}\n"
                                       ).diagnostics[0].message


def test_network_parameter_defaults_are_used_in_shapes():
    text = """\
network N(width=16, depth=2, seq=5) {
    input x: [seq, width]
    y = x -> repeat depth dense(width * 2) : [seq, width * 2]
    output y
}
"""
    net = load(text)
    assert shape(net, "y") == (5, 32)
    assert net.values == {"width": 16, "depth": 2, "seq": 5}
    assert net.ir.node(net.ir.inputs["x"]).outputs[0].shape == (5, 16)
    assert sorted(net.params) == ["dense_1.bias", "dense_1.weight", "dense_2.bias", "dense_2.weight"]
    net = load(text, width=4, depth=3)
    assert shape(net, "y") == (5, 8)
    assert len([n for n in net.ir if n.op == "dense"]) == 3
    err = error(text, wdith=4)
    assert "has no parameter 'wdith' (given with --set)" in err.diagnostics[0].message
    assert err.diagnostics[0].hint == "did you mean 'width'?"


# ------------------------------------------------------------------ collected errors and poisoning

def test_independent_errors_are_all_reported_and_dependents_are_not():
    err = error("""\
network Two {
    input x: [8]
    a = x -> dense(0)
    b = a -> relu
    c = x -> relux
    output b
    output c
}
""")
    assert [(d.span.line, d.span.col) for d in err.diagnostics] == [(3, 14), (5, 14)]


# ------------------------------------------------------------------ reproducers of bugs found by fuzzing

def test_let_bound_block_used_twice_shares_its_parameters():
    # was: internal error "parameter b.conv_1.weight registered twice"
    net = load(BASIC + """\
block Twice(c)(x) {
    let p = dense(c)
    return x -> p -> p
}
network T {
    input x: [8, 4, 4]
    let b = Basic(8)
    let l = lstm(3)
    let t = Twice(5)
    y = x -> b -> b -> flatten -> dense(5) -> t -> t
    z = x -> reshape([8, 16]) -> dense(3) -> l -> l
    output y
    output z
}
""")
    names = [n.name for n in net.ir]
    assert "b.conv_1" in names and "b@2.conv_1" in names and "l" in names and "l@2" in names
    assert "t.p@2" in names and "t@2.p" in names and "t@2.p@2" in names
    assert not any(k.startswith(("b@", "l@", "t@")) or "@" in k for k in net.params)
    assert net.ir.node(next(n.id for n in net.ir if n.name == "b@2.conv_1")).params["weight"] == "b.conv_1.weight"
    assert sorted(k for k in net.params if k.startswith("t.")) == ["t.p.bias", "t.p.weight"]
    assert sorted(k for k in net.params if k.startswith("l.")) == sorted(
        f"l.{g}.{p}" for g in "figo" for p in ("weight", "bias"))
    assert net.summary().totals["params"] == (2 * 8 * 8 * 9 + 2 * 2 * 8) + (128 * 5 + 5) + (5 * 5 + 5) + \
        (16 * 3 + 3) + 4 * (6 * 3 + 3)


def test_let_bound_block_with_inputs_of_another_shape_is_an_error():
    err = error("block Two(c)(x) {\n    return x -> dense(c)\n}\n"
                "network T {\n    input a: [4]\n    input b: [6]\n    let t = Two(3)\n"
                "    output ya = a -> t\n    output yb = b -> t\n}\n")
    d = err.diagnostics[0]
    assert "shared layer 't.dense_1' is used with inputs of another shape" in d.message
    assert "in block Two, used at t.net:9:22 as t@2" in str(err)


def test_zero_sizes_are_refused():
    # was: internal error (ZeroDivisionError in an initializer)
    err = error("network T {\n    input x: [0, 4, 4]\n    output y = x -> conv(2, kernel=1)\n}\n")
    assert err.diagnostics[0].message == "a size must be at least 1, found 0"
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.col) == (2, 15)
    err = error("cell R(h)(x, s: [h]) {\n    return s, s\n}\nnetwork T {\n    input x: [3, 2]\n"
                "    output y = unroll R(0) over x\n}\n")
    assert err.diagnostics[0].message == "a size must be at least 1, found 0"


def test_concat_and_layernorm_of_scalars_are_shape_errors():
    # were: internal errors (IndexError)
    err = error("network T {\n    input a: []\n    input b: []\n    output y = concat(a, b)\n}\n")
    assert "concat cannot join scalars" in err.diagnostics[0].message
    err = error("network T {\n    input x: [4]\n    let p = layernorm(10)\n    output y = x -> p\n}\n")
    assert "layernorm needs at least one axis to normalise over, found a scalar" in err.diagnostics[0].message
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.col) == (3, 13)


def test_unembed_ties_to_a_let_bound_embedding():
    # was: "unembed needs the setting 'vocab'" for every use
    net = load("network Tied {\n    input t: int[6]\n    let emb = embedding(50, 8)\n"
               "    output logits = t -> emb -> relu -> unembed(emb)\n}\n")
    assert shape(net, "logits") == (6, 50)
    (un,) = [n for n in net.ir if n.op == "unembed"]
    assert un.params == {"weight": "emb.weight"} and (un.attrs["vocab"], un.attrs["dim"]) == (50, 8)
    assert sorted(net.params) == ["emb.weight"]
    assert net.summary().totals["macs"] == 6 * 8 * 50
    err = error("network T {\n    input t: int[6]\n    h = t -> embedding(50, 8)\n"
                "    output y = h -> unembed(embedding)\n}\n")
    assert "unembed needs a let-bound embedding" in err.diagnostics[0].message


def test_a_failed_input_does_not_cascade():
    # was: a second error "unknown name 'x'" for every use of the input
    err = error("network T {\n    input x: [1000000, 1000000]\n    output y = x -> relu\n}\n")
    assert len(err.diagnostics) == 1 and "input 'x' would produce" in err.diagnostics[0].message


def test_an_error_inside_a_prelude_layer_points_at_the_users_spec():
    err = error("network T {\n    input a: [3, 4, 4]\n    output y = a -> enc: lstm(3)\n}\n")
    text = str(err)
    assert "in block lstm, used at t.net:3:26 as enc" in text


def test_argument_errors_are_at_the_use_without_repeating_it():
    err = error(BASIC + "network T {\n    input x: [4, 4, 4]\n    output y = x -> Basic(4, strid=2)\n}\n")
    d = err.diagnostics[0]
    assert d.message == "block Basic has no parameter 'strid'" and d.hint == "did you mean 'stride'?"
    assert d.uses == ()


def test_unknown_layer_in_a_chain():
    err = error("network T {\n    input x: [4]\n    let proj = dense(3)\n    output y = x -> prj\n}\n")
    d = err.diagnostics[0]
    assert (d.message, d.hint) == ("unknown layer 'prj'", "did you mean 'proj'?")


def test_repeat_outside_a_chain_is_explained():
    err = error("network T {\n    input x: [4]\n    layer3: repeat 2 dense(4)\n}\n")
    d = err.diagnostics[0]
    assert d.message == "syntax error: 'repeat' belongs in a chain, after '->'"
    assert (d.span.line, d.span.col) == (3, 13)


def test_the_node_budget_refuses_a_huge_network_fast():
    t0 = time.process_time()
    err = error("block B()(x) {\n    return x -> repeat 10000 relu\n}\n"
                "network T {\n    input x: [4]\n    output y = x -> repeat 10000 B\n}\n")
    assert time.process_time() - t0 < 5
    assert f"more than {elaborate.MAX_NODES:,} layers" in err.diagnostics[0].message


def test_same_is_a_value_for_block_arguments_and_network_parameters():
    # was: "unknown name 'same' given as argument 'pad' of ConvBN" (a default `pad=same` worked, an argument did not)
    text = """\
block ConvBN(c, pad=1)(x) {
    return x -> conv(c, kernel=3, pad=pad) -> batchnorm
}
network N(p=same) {
    input x: [3, 8, 8]
    y = x -> ConvBN(4, pad=same) -> ConvBN(4) -> conv(2, kernel=3, pad=p)
    output y
}
"""
    assert shape(load(text), "y") == (2, 8, 8)
    assert shape(load(text, p=0), "y") == (2, 6, 6)
    err = error(text.replace("ConvBN(4, pad=same)", "ConvBN(4, pad=sme)"))
    assert "unknown name 'sme' given as argument 'pad' of ConvBN" in err.diagnostics[0].message


def test_a_number_with_too_many_digits_is_a_spec_error():
    # was: internal error (ValueError: Python's limit on integer string conversion)
    err = error("network T {\n    input x: [" + "9" * 5000 + "]\n    output y = x\n}\n")
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 15)
    assert d.message == "the number 999999999999… (5000 digits) is too large"


def test_the_quoted_line_is_the_line_the_parser_counts():
    # was: lines split at \f, \x1c, \u2028 … as well, so the quote showed an earlier line than the position
    for sep in ("\x0c", "\u2028", "\x1c", "\x85"):
        text = f"network T {{\r\n    input x: [4]  # a {sep} comment\r\n    output z = x -> dense(0)\r\n}}\r\n"
        lines = str(error(text)).split("\n")
        assert lines[0].startswith("t.net:3:21: error: ")
        assert lines[1:3] == ["    output z = x -> dense(0)", " " * 20 + "^" * 8]


def test_a_command_line_call_is_one_value():
    # was: internal error (ValueError: too many values to unpack) for `--optimizer 'sgd(lr=0.1); y 3'`, and recipe
    # text after a newline was silently accepted
    from netdsl.recipe import OPTIMIZERS, parse_call

    assert str(parse_call("adamw(lr=1e-3)", "optimizer", OPTIMIZERS)) == "adamw(lr=0.001)"
    for text in ("sgd(lr=0.1); y 3", "sgd(lr=0.1)\n    y 3", "sgd\n}\ntrain B {\n    z 1", "sgd as (a, b)", ""):
        with pytest.raises(SpecError, match="cannot read the optimizer"):
            parse_call(text, "optimizer", OPTIMIZERS)
    with pytest.raises(SpecError) as info:
        parse_call("adamm(lr=1)", "optimizer", OPTIMIZERS)
    d = info.value.diagnostics[0]
    assert (d.span, d.message, d.hint) == (None, "optimizer 'adamm(lr=1)': unknown optimizer 'adamm'",
                                           "did you mean 'adam'?")


def test_node_names_are_unique_across_blocks_unrolls_and_inputs():
    # was: internal error "parameter a.b.weight registered twice": a dotted label took a name that a block use `a`
    # (or an unroll `e`) gives its own layer; and an input and a label could share a node name
    block = "block B()(x) {\n    return x -> b: dense(4)\n}\n"
    err = error(block + "network T {\n    input x: [4]\n    y = x -> a: B -> a.b: dense(4)\n    output y\n}\n")
    d = err.diagnostics[0]
    assert (d.message, d.span.line, d.span.col) == ("duplicate label 'a.b'", 6, 22)
    err = error(block + "network T {\n    input x: [4]\n    y = x -> a.b: dense(4) -> a: B\n    output y\n}\n")
    d = err.diagnostics[0]
    assert (d.message, d.span.line, d.span.col) == ("duplicate label 'b'", 2, 17)
    assert [(u.block, u.label) for u in d.uses] == [("B", "a")]
    err = error("cell C(h)(x, s: [h]) {\n    s = tanh(concat(x, s) -> d: dense(h))\n    return s, s\n}\n"
                "network T {\n    input x: [3, 4]\n    y = e: unroll C(4) over x\n    z = x -> e.d: dense(4)\n"
                "    output y\n    output z\n}\n")
    assert err.diagnostics[0].message == "duplicate label 'e.d'"
    err = error("network T {\n    input x: [4]\n    y = x -> x: dense(4)\n    output y\n}\n")
    assert (err.diagnostics[0].message, err.diagnostics[0].span.line) == ("duplicate label 'x'", 3)
    net = load("network T {\n    input relu_1: [4]\n    y = relu_1 -> relu\n    output y\n}\n")
    assert [n.name for n in net.ir] == ["relu_1", "relu_2"]


def test_a_label_that_takes_another_layers_parameter_name_is_an_error():
    # was: internal error "parameter att.q.weight registered twice" (attention's parameters are q.weight, …)
    err = error("network T {\n    input x: [4, 8]\n    y = x -> att: attention(2) -> att.q: dense(8)\n    output y\n}\n")
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (3, 35)
    assert d.message == ("parameter 'att.q.weight' of dense 'att.q' has the name of another layer's parameter "
                         "(the layer at 3:19)")
    assert d.hint == "rename one of the labels"
