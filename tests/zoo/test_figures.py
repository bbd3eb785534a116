"""The model zoo's figures: every spec's params and MACs per example, GoogLeNet's Table 1, the Inception module.

These need only the front-end (no Numba): parse, elaborate, shape-check and count. The figures are the
issue's (conv and dense MACs per example, torchvision's convention) and each spec's header states the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import netdsl

SPECS = Path(__file__).resolve().parents[2] / "specs"

# spec -> (network parameters, params, MACs per example)
FIGURES: dict[str, tuple[dict[str, object], int, int]] = {
    "lenet5": ({}, 61_706, 416_520),
    "alexnet": ({}, 62_378_344, 1_135_256_096),
    "vgg16": ({}, 138_357_544, 15_470_264_320),
    "vgg19": ({}, 143_667_240, 19_632_062_464),
    "googlenet": ({}, 6_998_552, 1_582_671_872),
    "resnet18": ({}, 11_689_512, 1_814_073_344),
    "resnet34": ({}, 21_797_672, 3_663_761_408),
    "resnet50": ({}, 25_557_032, 4_089_184_256),
    "resnet152": ({}, 60_192_808, 11_513_626_624),
    "resnet20_cifar": ({}, 272_474, 40_813_184),
    "resnet18_cifar": ({}, 11_173_962, 555_422_720),
    "filters": ({}, 86, 352_256),
    # the sequence models, at the vocabularies their headers name (tinyshakespeare: 65 characters, 12,384 words)
    "char_rnn": ({"vocab": 65}, 31_073, 1_843_200),
    "char_lstm": ({"vocab": 65}, 242_945, 11_884_800),
    "char_gru": ({"vocab": 65}, 185_345, 9_017_600),
    "cbow": ({"vocab": 12384}, 2_489_184, 1_238_400),
    "seq2seq": ({"vocab": 20}, 168_724, 1_331_200),
    "seq2seq_attention": ({"vocab": 20}, 201_492, 1_609_728),
    "transformer": ({}, 63_082_496, 4_106_485_760),
    "gpt_char": ({"vocab": 65}, 804_096, 55_058_432),
}


def _totals(name: str, **params: object) -> dict[str, int]:
    return netdsl.load(SPECS / f"{name}.net", **params).summary(memory=False).totals


def test_every_spec_has_figures():
    """A new spec in specs/ must be added here (and to specs/README.md's gallery)."""
    assert sorted(p.stem for p in SPECS.glob("*.net")) == sorted(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_params_and_macs(name):
    params, want_params, want_macs = FIGURES[name]
    t = _totals(name, **params)
    assert (t["params"], t["macs"]) == (want_params, want_macs)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_header_cites_paper_input_and_figures(name):
    """Each spec opens with a header: the paper (or source), the input, the figures it gives, how it trains;
    the params figure in the header is the one the spec computes."""
    text = (SPECS / f"{name}.net").read_text(encoding="utf-8")
    header = text[: text.index("\n\n")]
    for key in ("# Input:", "# Figures:", "# Trains:"):
        assert key in header, f"{name}.net: no '{key}' line in the header"
    assert "# Paper:" in header or "# Source:" in header
    _, want_params, _ = FIGURES[name]
    assert f"{want_params:,}" in header, f"{name}.net: the header does not state {want_params:,} params"
    gallery = (SPECS / "README.md").read_text(encoding="utf-8")
    assert f"[{name}.net]({name}.net)" in gallery


@pytest.mark.parametrize("name", ["lenet5", "resnet20_cifar", "resnet18_cifar", "char_rnn", "char_lstm", "char_gru",
                                  "cbow", "seq2seq", "seq2seq_attention", "gpt_char"])
def test_trainable_specs_have_a_recipe(name):
    assert netdsl.load(SPECS / f"{name}.net", **FIGURES[name][0]).recipe is not None


# ------------------------------------------------------------------ the resolution parameter

@pytest.mark.parametrize("name,size,default", [
    ("alexnet", 67, 227), ("vgg16", 32, 224), ("vgg19", 32, 224), ("googlenet", 64, 224),
    ("resnet18", 32, 224), ("resnet34", 32, 224), ("resnet50", 32, 224), ("resnet152", 32, 224)])
def test_imagenet_specs_take_a_size(name, size, default):
    net = netdsl.load(SPECS / f"{name}.net", size=size, classes=10)
    assert net.summary(memory=False).totals["macs"] < FIGURES[name][2] / 10
    assert net.values["size"] == size
    assert netdsl.load(SPECS / f"{name}.net").values["size"] == default


def test_alexnet_size_must_tile():
    with pytest.raises(netdsl.SpecError, match="not a whole number"):
        netdsl.load(SPECS / "alexnet.net", size=66)
    # 35 + 32k: pool5 gives k×k
    for k, size in enumerate((67, 99, 131, 163, 195, 227), start=1):
        rows = netdsl.load(SPECS / "alexnet.net", size=size).summary(memory=False).to_dict()["layers"]
        assert next(r for r in rows if r["name"] == "pool5")["output_shape"] == [256, k, k]


# ------------------------------------------------------------------ GoogLeNet, Table 1

TABLE1 = {  # layer -> output [C, H, W], as the paper's Table 1 (H×W×C there)
    "conv1": [64, 112, 112], "pool1": [64, 56, 56], "conv2": [192, 56, 56], "pool2": [192, 28, 28],
    "inception_3a": [256, 28, 28], "inception_3b": [480, 28, 28], "pool3": [480, 14, 14],
    "inception_4a": [512, 14, 14], "inception_4b": [512, 14, 14], "inception_4c": [512, 14, 14],
    "inception_4d": [528, 14, 14], "inception_4e": [832, 14, 14], "pool4": [832, 7, 7],
    "inception_5a": [832, 7, 7], "inception_5b": [1024, 7, 7], "pool5": [1024], "classifier": [1000],
}


def _folded(rows: list[dict]) -> dict[str, dict]:
    """Per top-level layer or block use: summed params and MACs, and the output shape of its last row."""
    out: dict[str, dict] = {}
    for r in rows:
        key = r["block"].split(".")[0] if r["block"] else r["name"]
        f = out.setdefault(key, {"params": 0, "macs": 0})
        f["params"] += r["params"]
        f["macs"] += r["macs"]
        f["output_shape"] = r["output_shape"]
    return out


def test_googlenet_table1_stage_shapes():
    folded = _folded(netdsl.load(SPECS / "googlenet.net").summary(memory=False).to_dict()["layers"])
    assert {k: folded[k]["output_shape"] for k in TABLE1} == TABLE1


def test_googlenet_inception_3a():
    """163,328 weights + 368 biases (the paper's Table 1: 159K params, 128M ops)."""
    f = _folded(netdsl.load(SPECS / "googlenet.net").summary(memory=False).to_dict()["layers"])["inception_3a"]
    assert (f["params"], f["macs"], f["output_shape"]) == (163_696, 128_049_152, [256, 28, 28])


def test_googlenet_aux_heads():
    t = _totals("googlenet", aux=True)
    assert (t["params"], t["macs"]) == (13_378_280, 1_591_044_096)


INCEPTIONS = """
block Naive(c1, c3, c5)(x) {
    a = x -> conv(c1, kernel=1) -> relu
    b = x -> conv(c3, kernel=3, pad=same) -> relu
    c = x -> conv(c5, kernel=5, pad=same) -> relu
    d = x -> maxpool(3, stride=1, pad=same)
    return concat(a, b, c, d)
}
block Reduced(c1, c3r, c3, c5r, c5, cp)(x) {
    a = x -> conv(c1, kernel=1) -> relu
    b = x -> conv(c3r, kernel=1) -> relu -> conv(c3, kernel=3, pad=same) -> relu
    c = x -> conv(c5r, kernel=1) -> relu -> conv(c5, kernel=5, pad=same) -> relu
    d = x -> maxpool(3, stride=1, pad=same) -> conv(cp, kernel=1) -> relu
    return concat(a, b, c, d)
}
network N {
    input x: [256, 28, 28]
    output y = x -> NETWORK_BLOCK
}
"""


def test_naive_inception_module():
    """The lecture's naive module on 28×28×256 with 128/192/96 filters: the pool branch keeps its 256 channels."""
    net = netdsl.loads(INCEPTIONS.replace("NETWORK_BLOCK", "Naive(128, 192, 96)"), name="naive.net")
    s = net.summary(memory=False)
    assert s.to_dict()["layers"][-1]["output_shape"] == [672, 28, 28]
    assert s.totals["macs"] == 854_196_224


def test_inception_module_with_reductions():
    """The same with 64-channel 1×1 reductions before the 3×3 and 5×5 and after the pool: 271,351,808 MACs
    (the lecture's 358M is an arithmetic slip)."""
    net = netdsl.loads(INCEPTIONS.replace("NETWORK_BLOCK", "Reduced(128, 64, 192, 64, 96, 64)"), name="reduced.net")
    s = net.summary(memory=False)
    assert s.to_dict()["layers"][-1]["output_shape"] == [480, 28, 28]
    assert s.totals["macs"] == 271_351_808


# ------------------------------------------------------------------ the Transformer and GPT


def test_transformer_base_is_exact():
    net = netdsl.load(SPECS / "transformer.net")
    assert net.values["vocab"] == 37000 and net.values["d_model"] == 512 and net.values["layers"] == 6
    assert net.summary(memory=False).totals["params"] == 63_082_496
    # one embedding matrix for source, target and output (the output layer has no weights of its own)
    embeddings = [k for k in net.params if k.startswith("emb")]
    assert embeddings == ["emb.weight"] and tuple(net.params["emb.weight"].shape) == (37000, 512)
    # masked self-attention, then attention over the encoder's output, in each of the 6 decoder layers
    causal = [n for n in net.ir if n.op == "attention" and n.attrs.get("causal")]
    assert sorted(n.name for n in causal) == [f"decoder.{i}.self_attn" for i in range(6)]


def test_gpt_char_defaults_are_nanogpts_cpu_configuration():
    net = netdsl.load(SPECS / "gpt_char.net", vocab=65)
    v = net.values
    assert (v["n_layer"], v["n_head"], v["n_embd"], v["block_size"], v["drop"]) == (4, 4, 128, 64, 0)
    # nanoGPT prints 0.80M: its count leaves out the position embedding
    assert net.summary(memory=False).totals["params"] - 64 * 128 == 795_904
    r = net.recipe
    assert r.batch == 12 and r.steps == 2000 and r.val == 0.1
    assert r.optimizer.name == "adamw" and r.optimizer.kwargs["decay_min_rank"] == 2
    assert r.schedule.name == "cosine" and r.schedule.kwargs["min_lr"] == pytest.approx(1e-4)
    assert r.sampling == "random"  # nanoGPT's get_batch: 12 windows at random offsets every step
    # nanoGPT's initialisation, in the spec: N(0, 0.02), residual projections N(0, 0.02/√(2·n_layer))
    inits = {n: p.init for n, p in net.params.items()}
    assert inits["wte.weight"] == inits["wpe.weight"] == inits["h.0.attn.q.weight"] == ("normal", 0.02)
    assert inits["h.3.mlp.c_proj.weight"][1] == pytest.approx(0.02 / (2 * 4) ** 0.5, rel=1e-5)


def test_char_rnn_writes_its_cell_out():
    text = (SPECS / "char_rnn.net").read_text(encoding="utf-8")
    assert re.search(r"^cell \w+\(hidden\)", text, re.MULTILINE)
