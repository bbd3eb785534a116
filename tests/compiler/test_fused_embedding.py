"""Lowering runs ids -> embedding -> lstm as one kernel pair (recurrent.lstm_embed_*) where nothing else reads
the embedding's vectors: the same loss and gradients as the schedule without fusion, in float64, on both of the
kernels' paths (a batch with at least as many tokens as the vocabulary, and one with fewer)."""

import numpy as np
import pytest

import netdsl

SPEC = """
network CharLSTM(vocab=7) {{
    input ids: int[4]
    input next: int[4]
    emb = ids -> e: embedding(vocab, 5)
    logits = {lstm} -> dense(vocab)
    output logits{extra}
    loss cross_entropy(logits, next)
}}
"""

LSTMS = {False: "emb -> lstm(6)", True: "(unroll LSTM(6) over emb reverse)"}


def _feeds(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"ids": rng.integers(0, 7, (batch, 4)), "next": rng.integers(0, 7, (batch, 4))}


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch", [3, 1])  # 12 tokens >= 7: the table of input terms; 4 < 7: the gather
def test_fused_schedule_matches_the_unfused_one(reverse, batch):
    net = netdsl.loads(SPEC.format(lstm=LSTMS[reverse], extra=""), name="emb.net")
    fused = netdsl.compile(net, batch=3, dtype="float64")
    code = fused.code()
    assert "recurrent.lstm_embed_forward(" in code and "recurrent.lstm_embed_backward(" in code
    assert "embed.embedding_" not in code and "recurrent.lstm_forward(" not in code
    unfused = netdsl.compile(net, batch=3, dtype="float64", fuse=False)
    assert "embed.embedding_forward(" in unfused.code()
    feeds = _feeds(batch)
    loss, grads = fused.loss_and_grads(feeds)
    loss0, grads0 = unfused.loss_and_grads(feeds)
    assert loss == pytest.approx(loss0, rel=1e-12, abs=1e-13)
    assert set(grads) == set(grads0) and "e.weight" in grads
    for name in grads0:
        np.testing.assert_allclose(grads[name], grads0[name], rtol=1e-10, atol=1e-13, err_msg=name)
    assert np.abs(grads["e.weight"]).max() > 0


def test_no_fusion_where_the_embedding_is_read_elsewhere():
    # an output of its own: the embedding's vectors must exist, so it lowers on its own and the LSTM reads them
    net = netdsl.loads(SPEC.format(lstm=LSTMS[False], extra="\n    output emb"), name="emb.net")
    prog = netdsl.compile(net, batch=3, dtype="float64")
    code = prog.code()
    assert "embed.embedding_forward(" in code and "recurrent.lstm_forward(" in code
    assert "lstm_embed" not in code
    out = prog.forward(_feeds(2))
    table = prog.params["e.weight"]
    np.testing.assert_array_equal(out["emb"], table[_feeds(2)["ids"]])


FROZEN = """
network Seq(vocab=7) {{
    input ids: int[4]
    input next: int[4]
    logits = ids -> e: embedding(vocab, 5) -> {layer} -> dense(vocab)
    output logits
    loss cross_entropy(logits, next)
}}
"""


@pytest.mark.parametrize("layer, frozen", [("lstm(6)", "f.weight"), ("lstm(6)", "e.weight"), ("gru(6)", "z.weight")])
@pytest.mark.parametrize("batch", [3, 1])
def test_a_frozen_weight_gets_no_gradient_and_the_rest_theirs(layer, frozen, batch):
    # a parameter made untrainable through the API: the fused kernels write no gradient for it (a zero-size
    # placeholder, which must not be written into) and the same gradients as the unfused schedule for the rest
    import dataclasses

    net = netdsl.loads(FROZEN.format(layer=layer), name="frozen.net")
    name = next(p for p in net.ir.params if p.endswith(frozen))
    net.ir.params[name] = dataclasses.replace(net.ir.params[name], trainable=False)
    fused = netdsl.compile(net, batch=3, dtype="float64")
    unfused = netdsl.compile(net, batch=3, dtype="float64", fuse=False)
    feeds = _feeds(batch, seed=4)
    loss, grads = fused.loss_and_grads(feeds)
    loss0, grads0 = unfused.loss_and_grads(feeds)
    assert name not in grads and set(grads) == set(grads0)
    assert loss == pytest.approx(loss0, rel=1e-12, abs=1e-13)
    for k in grads0:
        np.testing.assert_allclose(grads[k], grads0[k], rtol=1e-10, atol=1e-13, err_msg=k)
    # the arena around the placeholder is intact: a second step gives the same gradients
    loss2, grads2 = fused.loss_and_grads(feeds)
    assert loss2 == loss and all(np.array_equal(grads2[k], grads[k]) for k in grads)
