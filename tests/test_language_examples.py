"""Every complete code example of LANGUAGE.md parses, elaborates and shape-checks, with the real figures.

The examples are copied verbatim in tests/language_examples.py (a user's clone has no /work/shared); blocks and
cells are used inside small test networks with fixed input shapes. Figures are exact: parameter counts, MACs (torchvision's convention), shapes,
parameter names and diagnostic positions.
"""

from __future__ import annotations

import json

import pytest
from language_examples import BLOCKS, CELLS, DOWN, ERROR_EXAMPLE, LENET, RECIPE  # LANGUAGE.md's, verbatim

import netdsl
from netdsl.diagnostics import SpecError
from netdsl.ir import verify

# the GRU as LANGUAGE.md §5 describes it (z, r, h labels; r applied before the candidate's product)
GRU = """\
cell MyGRU(hidden)(x, h: [hidden]) {
    zx = concat(h, x)
    z = sigmoid(zx -> z: dense(hidden))
    r = sigmoid(zx -> r: dense(hidden))
    n = tanh(concat(r * h, x) -> h: dense(hidden))
    h = (1 - z) * h + z * n
    return h, h
}
"""


def load(text: str, **params) -> netdsl.Net:
    net = netdsl.loads(text, "t.net", **params)
    verify(net.ir)
    return net


def out(net: netdsl.Net, name: str) -> tuple[int, ...]:
    return net.ir.type_of(net.ir.outputs[name]).shape


def totals(net: netdsl.Net) -> dict[str, int]:
    return net.summary().totals


def spec_error(text: str, **params) -> SpecError:
    with pytest.raises(SpecError) as info:
        netdsl.loads(text, "t.net", **params)
    return info.value


# ------------------------------------------------------------------ §6 LeNet-5 and §7 its recipe

LENET_NAMES = ["c1.weight", "c1.bias", "c3.weight", "c3.bias", "f5.weight", "f5.bias", "f6.weight", "f6.bias",
               "out.weight", "out.bias"]


def test_lenet5_figures():
    net = load(LENET)
    assert net.name == "LeNet5"
    t = totals(net)
    assert t["params"] == 61_706
    assert t["trainable_params"] == 61_706
    assert t["macs"] == 416_520
    assert sorted(net.params) == sorted(LENET_NAMES)
    shapes = {k: p.shape for k, p in net.params.items()}
    assert shapes["c1.weight"] == (6, 1, 5, 5)
    assert shapes["c3.weight"] == (16, 6, 5, 5)
    assert shapes["f5.weight"] == (120, 400)
    assert shapes["f5.bias"] == (120,)
    assert shapes["out.weight"] == (10, 84)
    assert out(net, "logits") == (10,)
    assert net.ir.loss is not None and net.ir.type_of(net.ir.loss).shape == ()
    assert net.values == {"classes": 10}
    names = [r.name for r in net.summary().rows + net.summary().loss_rows]
    assert names == ["c1", "tanh_1", "s2", "c3", "tanh_2", "s4", "flatten_1", "f5", "tanh_3", "f6", "tanh_4",
                     "out", "cross_entropy_1"]
    per_layer = {r.name: (r.params, r.macs, r.output_shape) for r in net.summary().rows}
    assert per_layer["c1"] == (156, 117_600, [6, 28, 28])
    assert per_layer["c3"] == (2_416, 240_000, [16, 10, 10])
    assert per_layer["s4"] == (0, 0, [16, 5, 5])
    assert per_layer["f5"] == (48_120, 48_000, [120])


def test_lenet5_recipe():
    net = load(LENET + "\n" + RECIPE)
    r = net.recipe
    assert r is not None and r.network == "LeNet5"
    assert (r.data.name, r.data.kwargs) == ("digits", {"size": 32})
    assert (r.optimizer.name, r.optimizer.kwargs) == ("sgd", {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4})
    assert (r.schedule.name, r.schedule.kwargs) == ("step", {"every": 10, "gamma": 0.1})
    assert (r.batch, r.epochs) == (64, 20)


def test_recipe_named_fields_and_val():
    net = load(LENET + """
train LeNet5 {
    data npz("d.npz", x="x", y="y") as (image, label)
    val 0.1
    optimizer adamw(lr=1e-3)
    epochs 1
}
""")
    r = net.recipe
    assert r.data.name == "npz" and r.data.kwargs == {"path": "d.npz", "x": "x", "y": "y"}
    assert r.fields == ["image", "label"]
    assert r.val == 0.1
    assert r.optimizer.kwargs == {"lr": 1e-3}


def test_set_override_from_a_file(tmp_path):
    path = tmp_path / "lenet.net"
    path.write_text(LENET, encoding="utf-8")
    net = netdsl.load(path, classes=100)
    assert net.values == {"classes": 100}
    assert net.params["out.weight"].shape == (100, 84)
    assert out(net, "logits") == (100,)
    assert totals(net)["params"] == 61_706 + 90 * 85
    # and through a str path, with the default
    assert totals(netdsl.load(str(path)))["params"] == 61_706


def test_loads_text():
    net = netdsl.loads(LENET)
    assert net.source == "<string>"
    assert totals(net)["macs"] == 416_520
    net = netdsl.loads(LENET, name="mine.net", classes=3)
    assert net.source == "mine.net" and out(net, "logits") == (3,)


def test_summary_json_shape_matches_the_interface():
    d = load(LENET).summary().to_dict()
    assert set(d) == {"network", "inputs", "layers", "loss_layers", "totals"}
    assert d["network"] == "LeNet5"
    assert d["layers"][-1]["name"] == "out"  # the last layer produces the first output
    assert d["inputs"] == {"image": {"shape": [1, 32, 32], "dtype": "float32"},
                           "label": {"shape": [], "dtype": "int64"}}
    for layer in d["layers"]:
        assert set(layer) == {"name", "op", "block", "output_shape", "params", "macs", "activation_bytes"}
        assert isinstance(layer["output_shape"], list)
    assert d["layers"][0] == {"name": "c1", "op": "conv", "block": "", "output_shape": [6, 28, 28],
                              "params": 156, "macs": 117_600, "activation_bytes": 6 * 28 * 28 * 4}
    assert set(d["totals"]) == {"params", "trainable_params", "macs", "activation_bytes", "train_memory_bytes"}
    assert d["totals"]["params"] == 61_706 and d["totals"]["macs"] == 416_520
    assert d["totals"]["activation_bytes"] == sum(r["activation_bytes"] for r in d["layers"] + d["loss_layers"])
    assert d["totals"]["train_memory_bytes"] > 0
    assert json.loads(json.dumps(d)) == d


def test_summary_last_layer_produces_the_first_output():
    net = load(LENET.replace("    loss cross_entropy(logits, label)\n", "").replace("    input label: int[]\n", ""))
    rows = net.summary().rows
    assert rows[-1].name == "out" and rows[-1].output_shape == [10]


# ------------------------------------------------------------------ §4 blocks

def test_inception_figures():
    net = load(BLOCKS + """
network GoogLeNetPart {
    input x: [192, 28, 28]
    y = x -> i3a: Inception(64, 96, 128, 16, 32, 32)
    output y
}
""")
    assert out(net, "y") == (256, 28, 28)
    t = totals(net)
    assert t["params"] == 163_696
    assert t["macs"] == 128_049_152
    assert all(name.startswith("i3a.") for name in net.params)
    assert net.params["i3a.conv_1.weight"].shape == (64, 192, 1, 1)
    assert net.params["i3a.conv_3.weight"].shape == (128, 96, 3, 3)
    assert net.params["i3a.conv_5.weight"].shape == (32, 16, 5, 5)
    # folded at depth 0, the block is one row with the totals
    rows = net.summary(depth=0).rows
    assert [(r.name, r.op, r.params, r.macs, r.output_shape) for r in rows] == [
        ("i3a", "Inception", 163_696, 128_049_152, [256, 28, 28])]


def test_naive_inception_module():
    net = load("""
block NaiveInception()(x) {
    a = x -> conv(128, kernel=1)
    b = x -> conv(192, kernel=3, pad=same)
    c = x -> conv(96, kernel=5, pad=2)
    d = x -> maxpool(3, stride=1, pad=1)
    return concat(a, b, c, d)
}
network Lecture {
    input x: [256, 28, 28]
    y = x -> NaiveInception
    output y
}
""")
    assert out(net, "y") == (672, 28, 28)
    assert totals(net)["macs"] == 854_196_224


def test_basic_block_with_stride_two_adds_a_projection():
    net = load(BLOCKS + """
network Res {
    input x: [64, 56, 56]
    y = Basic(128, stride=2)(x)
    z = x -> same: Basic(64)
    output y
    output z
}
""")
    assert out(net, "y") == (128, 28, 28)
    assert out(net, "z") == (64, 56, 56)
    convs = [n.name for n in net.ir if n.op == "conv"]
    assert convs == ["Basic_1.conv_1", "Basic_1.conv_2", "Basic_1.conv_3", "same.conv_1", "same.conv_2"]
    assert net.params["Basic_1.conv_3.weight"].shape == (128, 64, 1, 1)  # the 1×1 projection
    assert "Basic_1.conv_1.bias" not in net.params  # bias=false
    assert net.params["Basic_1.batchnorm_3.weight"].shape == (128,)
    assert net.params["Basic_1.batchnorm_3.running_mean"].state
    # conv 3·3·64·128 + 3·3·128·128 + 64·128, three batchnorms of 2·128 counted, running stats not
    assert totals(net)["params"] == (73_728 + 147_456 + 8_192 + 3 * 256) + (2 * 36_864 + 2 * 128)


def test_labelled_repeat_numbers_its_copies():
    net = load(BLOCKS + """
network Stage {
    input x: [128, 28, 28]
    y = x -> layer3: repeat 2 Basic(256)
    output y
}
""")
    assert out(net, "y") == (256, 28, 28)
    prefixes = sorted({k.split(".")[0] + "." + k.split(".")[1] for k in net.params})
    assert prefixes == ["layer3.0", "layer3.1"]
    assert "layer3.0.conv_3.weight" in net.params  # 128 → 256 needs a projection
    assert "layer3.1.conv_3.weight" not in net.params  # 256 → 256 does not
    assert net.params["layer3.1.conv_1.weight"].shape == (256, 256, 3, 3)
    uses = next(n.uses for n in net.ir if n.name == "layer3.1.conv_1")
    assert [(u.block, u.label) for u in uses] == [("Basic", "layer3.1")]
    rows = net.summary(depth=0).rows
    assert [r.name for r in rows] == ["layer3.0", "layer3.1"]


def test_repeat_zero_is_the_identity_and_counts_are_arithmetic():
    net = load("""
network R(n=3) {
    input x: [8]
    y = x -> repeat 0 dense(8)
    z = x -> repeat n - 1 dense(8)
    output y
    output z
}
""")
    assert net.ir.outputs["y"].node == net.ir.inputs["x"]
    assert [n.name for n in net.ir if n.op == "dense"] == ["dense_1", "dense_2"]
    assert totals(net)["params"] == 2 * 72


def test_down_block_contract():
    text = BLOCKS + DOWN + """
network D {
    input a: [3, 8, 8]
    y = a -> Down(32)
    output y
}
"""
    net = load(text)
    assert out(net, "y") == (32, 4, 4)
    err = spec_error(text.replace("[3, 8, 8]", "[3, 7, 8]"))
    d = err.diagnostics[0]
    line = text.splitlines().index("    y = a -> Down(32)") + 1
    assert (d.span.line, d.span.col) == (line, 14)
    assert "Down's contract -> [c, H / 2, W / 2]" in d.message
    assert "C=3, H=7, W=8" in d.message
    assert "7 / 2" in d.message
    assert any("Down is defined at t.net:" in n for n in d.notes)


# ------------------------------------------------------------------ §5 cells and unrolls

def test_lstm_unroll_names_and_shapes():
    net = load(CELLS + """
network Encoder {
    input xs: [12, 20]
    ys = enc: unroll LSTM(256) over xs
    output ys
}
""")
    assert out(net, "ys") == (12, 256)
    assert sorted(net.params) == sorted(f"enc.{g}.{p}" for g in "figo" for p in ("weight", "bias"))
    assert net.params["enc.f.weight"].shape == (256, 256 + 20)
    assert totals(net)["params"] == 4 * (276 * 256 + 256)
    assert totals(net)["macs"] == 12 * 4 * 276 * 256
    (unroll,) = [n for n in net.ir if n.op == "unroll"]
    assert unroll.attrs["steps"] == 12 and unroll.attrs["reverse"] is False
    assert [t.shape for t in unroll.outputs] == [(12, 256), (256,), (256,)]
    # the cell's layers are created once, shared by every step
    assert sum(1 for n in unroll.body if n.op == "dense") == 4


def test_rnn_cell_unroll():
    net = load(CELLS + """
network R {
    input xs: [5, 3]
    ys = unroll RNN(8) over xs
    output ys
}
""")
    assert out(net, "ys") == (5, 8)
    assert sorted(net.params) == ["unroll_1.wh.weight", "unroll_1.wx.bias", "unroll_1.wx.weight"]
    assert totals(net)["params"] == 3 * 8 + 8 + 8 * 8


def test_final_state_from_and_reverse_and_last():
    net = load(CELLS + """
network Seq2Seq {
    input src: [12, 20]
    input tgt: [7, 20]
    ys, final = enc: unroll LSTM(64) over src
    outs = dec: unroll LSTM(64) over tgt from final
    back = unroll RNN(32) over src reverse
    h = last(ys)
    output outs
    output back
    output h
}
""")
    assert out(net, "outs") == (7, 64)
    assert out(net, "back") == (12, 32)
    assert out(net, "h") == (64,)
    enc, dec, back = [n for n in net.ir if n.op == "unroll"]
    assert dec.attrs["init"] is True and [v.node for v in dec.inputs[1:]] == [enc.id, enc.id]
    assert [v.index for v in dec.inputs[1:]] == [1, 2]
    assert back.attrs["reverse"] is True
    assert "dec.f.weight" in net.params and "enc.f.weight" in net.params


def test_prelude_layers_match_the_written_cells():
    net = load(CELLS + GRU + """
network P {
    input xs: [10, 12]
    a = xs -> l1: lstm(32)
    b = xs -> r1: rnn(32)
    c = xs -> g1: gru(32)
    a2 = xl: unroll LSTM(32) over xs
    b2 = xr: unroll RNN(32) over xs
    c2 = xg: unroll MyGRU(32) over xs
    output a
    output b
    output c
    output a2
    output b2
    output c2
}
""")
    rows = {r.name: r for r in net.summary().rows}
    for mine, written in (("l1", "xl"), ("r1", "xr"), ("g1", "xg")):
        assert (rows[mine].params, rows[mine].macs) == (rows[written].params, rows[written].macs)
        assert rows[mine].output_shape == [10, 32]
        mine_names = sorted(k.split(".", 1)[1] for k in net.params if k.startswith(mine + "."))
        written_names = sorted(k.split(".", 1)[1] for k in net.params if k.startswith(written + "."))
        assert mine_names == written_names
    assert rows["l1"].params == 4 * (44 * 32 + 32)
    assert rows["r1"].params == 12 * 32 + 32 + 32 * 32
    assert rows["g1"].params == 3 * (44 * 32 + 32)
    assert "l1.f.weight" in net.params and "g1.z.weight" in net.params and "r1.wx.weight" in net.params


def test_user_definitions_shadow_the_prelude():
    net = load("""
block lstm(hidden)(xs) {
    return xs -> dense(hidden)
}
network S {
    input xs: [4, 6]
    y = xs -> l: lstm(3)
    output y
}
""")
    assert [n.op for n in net.ir if n.op != "input"] == ["dense"]
    assert sorted(net.params) == ["l.dense_1.bias", "l.dense_1.weight"]


# ------------------------------------------------------------------ §3 expressions

def test_let_shares_parameters():
    net = load("""
network Shared {
    input a: [20]
    input b: [20]
    let proj = dense(128)
    ya = a -> proj
    yb = proj(b)
    output ya
    output yb
}
""")
    assert sorted(net.params) == ["proj.bias", "proj.weight"]
    assert totals(net)["params"] == 20 * 128 + 128
    assert totals(net)["macs"] == 2 * 20 * 128
    dense = [n for n in net.ir if n.op == "dense"]
    assert len(dense) == 2 and dense[0].params == dense[1].params == {"weight": "proj.weight", "bias": "proj.bias"}


def test_combinator_chain_build_then_apply():
    net = load(BLOCKS + """
network Forms {
    input x: [64, 16, 16]
    input y: [32, 16, 16]
    j = x -> concat(y)
    k = concat(x, y)
    l = leaky_relu(0.1)(x)
    m = Basic(128, stride=2)(x)
    s = softmax(x, axis=0)
    output j
    output k
    output l
    output m
    output s
}
""")
    assert out(net, "j") == out(net, "k") == (96, 16, 16)
    (leaky,) = [n for n in net.ir if n.op == "leaky_relu"]
    assert leaky.attrs["a"] == 0.1
    assert out(net, "m") == (128, 8, 8)
    (sm,) = [n for n in net.ir if n.op == "softmax"]
    assert sm.attrs["axis"] == 0


def test_precedence_of_arrow_against_operators():
    net = load("""
network Prec {
    input x: [8]
    input h: [8]
    a = x -> dense(4) + h -> dense(4)
    b = -x -> relu
    output a
    output b
}
""")
    ops = [n.op for n in net.ir if n.op != "input"]
    assert ops == ["dense", "dense", "add", "relu", "neg"]
    assert out(net, "a") == (4,)


def test_shape_assertions_and_ssa():
    net = load("""
network A {
    input a: [4]
    input b: [4]
    x = a -> dense(4) : [4] -> relu
    s = (a + b) : [4]
    c = a
    c = c * 2 + b
    c = c -> dense(3)
    output x
    output s
    output c
}
""")
    assert out(net, "x") == (4,) and out(net, "s") == (4,) and out(net, "c") == (3,)
    err = spec_error("""
network A {
    input a: [4]
    output x = a -> dense(3) : [4]
}
""")
    assert "asserted [4], inferred [3]" in err.diagnostics[0].message
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.col) == (4, 32)


def test_compile_time_arithmetic_and_conditionals():
    net = load("""
block Heads(d_model, heads)(x) {
    w = d_model / heads
    y = if x.shape[1] == d_model and heads > 1 then x -> dense(w * heads) else x -> dense(1)
    return y
}
network T(width=64) {
    input xs: [10, 64]
    y = xs -> Heads(width, 8)
    z = xs -> dense(xs.shape[0] * 4)
    output y
    output z
}
""")
    assert out(net, "y") == (10, 64)
    assert out(net, "z") == (10, 40)


def test_dense_per_step_and_sequence_cross_entropy():
    net = load("""
network LM(vocab=50) {
    input tokens: int[16]
    input targets: int[16]
    h = tokens -> embedding(vocab, 32) -> positional_encoding(64) -> attention(4, causal=true)
    logits = h -> layernorm -> dense(vocab)
    output logits
    loss cross_entropy(logits, targets)
}
""")
    assert out(net, "logits") == (16, 50)
    assert net.ir.type_of(net.ir.loss).shape == ()
    assert net.params["dense_1.weight"].shape == (50, 32)
    assert "attention_1.q.weight" in net.params and "attention_1.out.bias" in net.params


def test_network_without_parameters_output_expression_and_summed_loss():
    net = load("""
network Tiny {
    input x: [3]; input t: [2]
    y = x -> dense(2)
    output z = y -> relu
    loss mse(y, t) + 0.1 * mse(z, t)
}
""")
    assert out(net, "z") == (2,)
    assert net.ir.node(net.ir.loss.node).op == "add"


def test_auto_parameter_takes_a_value_from_set():
    text = """
network Chars(vocab=auto) {
    input tokens: int[8]
    logits = tokens -> embedding(vocab, 16) -> dense(vocab)
    output logits
}
"""
    assert out(load(text, vocab=30), "logits") == (8, 30)
    assert "is auto" in spec_error(text).diagnostics[0].message


# ------------------------------------------------------------------ §8 output sizes and §9 errors

CONV7 = """
network Tile(s=1) {
    input image: [1, 7, 7]
    y = image -> conv(4, kernel=3, stride=s)
    output y
}
"""


def test_conv_output_sizes_on_seven():
    assert out(load(CONV7), "y") == (4, 5, 5)
    assert out(load(CONV7, s=2), "y") == (4, 3, 3)
    err = spec_error(CONV7, s=3)
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (4, 18)
    assert "(7 - 3) / 3 + 1 = 2.33" in d.message


def test_resnet_strides_are_fine():
    net = load("""
network Res {
    input x: [64, 56, 56]
    a = x -> conv(128, kernel=3, stride=2, pad=1)
    b = x -> conv(128, kernel=1, stride=2)
    c = x -> maxpool(3, stride=2, pad=1)
    d = x -> conv(8, kernel=7, stride=2, pad=3)
    output a
    output b
    output c
    output d
}
""")
    assert out(net, "a") == out(net, "b") == (128, 28, 28)
    assert out(net, "c") == (64, 28, 28)
    assert out(net, "d") == (8, 28, 28)


def test_the_error_example_renders_as_documented():
    text = """\
network LeNet5 {
    input image: [6, 7, 7]
    y = image
    -> relu
    -> c3: conv(16, kernel=3, stride=3)
    -> flatten
    output y
}
"""
    with pytest.raises(SpecError) as info:
        netdsl.loads(text, "lenet.net")
    rendered = "\n".join(line for line in str(info.value).splitlines() if not line.startswith("  note:"))
    assert rendered + "\n" == ERROR_EXAMPLE
