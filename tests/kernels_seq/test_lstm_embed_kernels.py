"""recurrent.lstm_embed_*: an LSTM fed by an embedding in one kernel pair. Both paths (the table of input
terms when the vocabulary is no larger than the batch's tokens, else a gather into the plain LSTM kernels)
must give what embedding_forward + lstm_forward give, and the gradients of embedding_backward after
lstm_backward; in float64, with a finite-difference check of the table's gradient on top."""

from __future__ import annotations

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import embed
from netdsl.compiler.kernels.cpu import recurrent as rec

GATES = ("f", "i", "o", "g")


def _case(B, T, V, D, H, bias, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T)).astype(np.int64)
    ids[0, :2] = V - 1  # the last token, twice in a row: its column of S adds up
    c = {
        "ids": ids,
        "table": rng.standard_normal((V, D)).astype(dtype),
        "h0": (rng.standard_normal((B, H)) * 0.5).astype(dtype),
        "c0": (rng.standard_normal((B, H)) * 0.5).astype(dtype),
        "gys": rng.standard_normal((B, T, H)).astype(dtype),
        "ghT": rng.standard_normal((B, H)).astype(dtype),
        "gcT": rng.standard_normal((B, H)).astype(dtype),
    }
    for g in GATES:
        c["w" + g] = (rng.standard_normal((H, H + D)) * 0.3).astype(dtype)
        c["b" + g] = (rng.standard_normal(H) * 0.3).astype(dtype) if bias else np.empty(0, dtype)
    return c


def _weights(c):
    return [a for g in GATES for a in (c["w" + g], c["b" + g])]


def _outs(B, T, H, dtype):
    return (np.full((B, T, H), np.nan, dtype), np.full((B, H), np.nan, dtype), np.full((B, H), np.nan, dtype),
            np.full((B, T, 4 * H), np.nan, dtype), np.full((B, T, H), np.nan, dtype))


def _fused(c, reverse, need_gtable=True, need_gh0=True):
    B, T = c["ids"].shape
    V, D = c["table"].shape
    H = c["h0"].shape[1]
    dt = c["table"].dtype
    ys, hT, cT, saveG, saveC = _outs(B, T, H, dt)
    ws = np.full(rec.lstm_embed_forward_workspace_size(B, T, V, D, H), np.nan, dt)
    rec.lstm_embed_forward(c["ids"], c["table"], c["h0"], c["c0"], *_weights(c), reverse, ys, hT, cT, saveG,
                           saveC, ws)
    g = {k: np.full_like(c["w" + k[1:]] if k[0] == "w" else c["b" + k[1:]], np.nan)
         for k in [p + g for g in GATES for p in "wb"]}
    gtable = np.full_like(c["table"], np.nan) if need_gtable else np.empty((0, 0), dt)
    gh0 = np.full_like(c["h0"], np.nan) if need_gh0 else np.empty((0, 0), dt)
    gc0 = np.full_like(c["c0"], np.nan) if need_gh0 else np.empty((0, 0), dt)
    wsb = np.full(rec.lstm_embed_backward_workspace_size(B, T, V, D, H), np.nan, dt)
    rec.lstm_embed_backward(c["gys"], c["ghT"], c["gcT"], c["ids"], c["table"], c["h0"], c["c0"],
                            *[c["w" + k] for k in GATES], ys, saveG, saveC, reverse, gtable, gh0, gc0,
                            *[g[p + k] for k in GATES for p in "wb"], need_gtable, need_gh0, wsb)
    return {"ys": ys, "hT": hT, "cT": cT, "gtable": gtable, "gh0": gh0, "gc0": gc0, **g}


def _composed(c, reverse):
    B, T = c["ids"].shape
    D = c["table"].shape[1]
    H = c["h0"].shape[1]
    dt = c["table"].dtype
    xs = np.empty((B, T, D), dt)
    embed.embedding_forward(c["ids"].reshape(-1), c["table"], xs.reshape(-1, D))
    ys, hT, cT, saveG, saveC = _outs(B, T, H, dt)
    rec.lstm_forward(xs, c["h0"], c["c0"], *_weights(c), reverse, ys, hT, cT, saveG, saveC,
                     np.empty(rec.lstm_forward_workspace_size(B, T, D, H), dt))
    g = {k: np.empty_like(c["w" + k[1:]] if k[0] == "w" else c["b" + k[1:]])
         for k in [p + g for g in GATES for p in "wb"]}
    gxs, gh0, gc0 = np.empty_like(xs), np.empty_like(c["h0"]), np.empty_like(c["c0"])
    rec.lstm_backward(c["gys"], c["ghT"], c["gcT"], xs, c["h0"], c["c0"], *[c["w" + k] for k in GATES], ys,
                      saveG, saveC, reverse, gxs, gh0, gc0, *[g[p + k] for k in GATES for p in "wb"], True, True,
                      np.empty(rec.lstm_backward_workspace_size(B, T, D, H), dt))
    gtable = np.empty_like(c["table"])
    embed.embedding_backward(gxs.reshape(-1, D), c["ids"].reshape(-1), gtable)
    return {"ys": ys, "hT": hT, "cT": cT, "gtable": gtable, "gh0": gh0, "gc0": gc0, **g}


# (B, T, V): V <= T·B takes the table path, V > T·B the gather into the plain kernels (one lane: the steps are
# too small to split; test_the_lanes_split_the_units_as_one_lane has two)
@pytest.mark.parametrize("B, T, V", [(3, 4, 7), (2, 3, 11), (1, 5, 5)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_kernels_match_the_embedding_and_the_lstm_kernels(B, T, V, reverse, bias):
    c = _case(B, T, V, 5, 16, bias)
    got, want = _fused(c, reverse), _composed(c, reverse)
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=1e-11, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("V", [50, 4000])
def test_the_lanes_split_the_units_as_one_lane(V):
    # a batch whose steps split their 16 units over two lanes (recurrent_lstm._step_lanes), each lane packing,
    # gathering and scattering its own rows: on both paths (V 50 <= T·B: the table; V 4000: the gather)
    from netdsl.compiler.kernels.cpu.recurrent_lstm import _step_lanes

    B, T, H = 1100, 3, 16
    if _step_lanes(B, H) < 2:
        pytest.skip("one lane on this machine")
    c = _case(B, T, V, 5, H, True, seed=6)
    got, want = _fused(c, True), _composed(c, True)
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=1e-10, atol=1e-12, err_msg=k)


def test_the_table_path_in_float32():
    # float32 at the char-LSTM's proportions, scaled down: the lanes' gathers and scatters see real ids
    c = _case(8, 12, 20, 8, 64, True, seed=3, dtype=np.float32)
    got, want = _fused(c, False), _composed(c, False)
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=2e-4, atol=2e-5, err_msg=k)


def test_unneeded_gradients_are_skipped():
    c = _case(3, 4, 7, 5, 16, True)
    got, want = _fused(c, False, need_gtable=False, need_gh0=False), _composed(c, False)
    assert got["gtable"].size == 0 and got["gh0"].size == 0
    for k in ("wf", "bf", "wg", "bg"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-11, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("V", [6, 40])
def test_the_table_gradient_matches_finite_differences(V):
    # loss = <gys, ys> + <ghT, hT> + <gcT, cT>; two-sided differences along a random direction of the table
    c = _case(2, 3, V, 4, 6, True, seed=5)
    got = _fused(c, True)
    direction = np.random.default_rng(9).standard_normal(c["table"].shape)

    def loss(table):
        d = dict(c, table=table)
        o = _fused(d, True, need_gtable=False, need_gh0=False)
        return float((c["gys"] * o["ys"]).sum() + (c["ghT"] * o["hT"]).sum() + (c["gcT"] * o["cT"]).sum())

    eps = 1e-6
    numeric = (loss(c["table"] + eps * direction) - loss(c["table"] - eps * direction)) / (2 * eps)
    assert numeric == pytest.approx(float((got["gtable"] * direction).sum()), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("bad", [-1, 7])
def test_an_id_out_of_range_raises_instead_of_reading_foreign_memory(bad):
    c = _case(3, 4, 7, 5, 16, True)
    c["ids"][1, 2] = bad
    with pytest.raises(IndexError, match="token id out of range"):
        _fused(c, False)

