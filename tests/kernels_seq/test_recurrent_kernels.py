"""Fused rnn / lstm / gru kernels against per-step numpy loops written literally from the prelude cells,
finite differences (BPTT), causality, reverse, float32, and PyTorch's RNN/LSTM when present."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import recurrent as rec

from .fdcheck import assert_f32_matches, check_directional, check_gradients

# ------------------------------------------------------------------ references: the cells, step by step


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def dense(v, w, b):
    # dense(units): v @ W.T + b, W (out, in); an absent bias is zero-length
    return v @ w.T + b if b.size else v @ w.T


def concat(h, x):
    return np.concatenate([h, x], axis=-1)


def steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def ref_rnn(xs, state, p, reverse):
    (h,) = state
    ys = np.empty(xs.shape[:2] + h.shape[1:])
    for t in steps(xs.shape[1], reverse):
        x = xs[:, t]
        h = np.tanh(dense(x, p["wx"], p["bx"]) + dense(h, p["wh"], np.zeros(0)))
        ys[:, t] = h
    return ys, (h,)


def ref_lstm(xs, state, p, reverse):
    h, c = state
    ys = np.empty(xs.shape[:2] + h.shape[1:])
    for t in steps(xs.shape[1], reverse):
        z = concat(h, xs[:, t])
        f = sigmoid(dense(z, p["wf"], p["bf"]))
        i = sigmoid(dense(z, p["wi"], p["bi"]))
        o = sigmoid(dense(z, p["wo"], p["bo"]))
        g = np.tanh(dense(z, p["wg"], p["bg"]))
        c = f * c + i * g
        h = o * np.tanh(c)
        ys[:, t] = h
    return ys, (h, c)


def ref_gru(xs, state, p, reverse):
    (h,) = state
    ys = np.empty(xs.shape[:2] + h.shape[1:])
    for t in steps(xs.shape[1], reverse):
        x = xs[:, t]
        zx = concat(h, x)
        z = sigmoid(dense(zx, p["wz"], p["bz"]))
        r = sigmoid(dense(zx, p["wr"], p["br"]))
        n = np.tanh(dense(concat(r * h, x), p["wn"], p["bn"]))
        h = (1 - z) * h + z * n
        ys[:, t] = h
    return ys, (h,)


REF = {"rnn": ref_rnn, "lstm": ref_lstm, "gru": ref_gru}
GATES = {"lstm": "fiog", "gru": "zrn"}

# ------------------------------------------------------------------ kernel harness


class Rec:
    """Inputs, parameters, outputs, save buffers and workspaces of one fused recurrence."""

    def __init__(self, kind, rng, B, T, D, H, reverse=False, bias=True, dtype=np.float64, scale=0.7):
        self.kind, self.reverse, self.dt = kind, reverse, dtype

        def r(*shape):
            return (scale * rng.standard_normal(shape)).astype(dtype)

        nb = H if bias else 0
        self.xs = r(B, T, D)
        self.state = {"h0": r(B, H)}
        if kind == "lstm":
            self.state["c0"] = r(B, H)
        if kind == "rnn":
            self.p = {"wx": r(H, D), "bx": r(nb), "wh": r(H, H)}
        else:
            self.p = {}
            for gname in GATES[kind]:
                self.p["w" + gname] = r(H, H + D)
                self.p["b" + gname] = r(nb)
        self.ys = np.empty((B, T, H), dtype)
        self.final = {k: np.empty((B, H), dtype) for k in self.state}
        G = {"rnn": 0, "lstm": 4, "gru": 3}[kind]
        self.saveG = np.empty((B, T, G * H), dtype)
        self.saveC = np.empty((B, T, H), dtype)
        self.ws = np.empty(getattr(rec, kind + "_forward_workspace_size")(B, T, D, H), dtype)
        self.wsb = np.empty(getattr(rec, kind + "_backward_workspace_size")(B, T, D, H), dtype)

    def forward(self):
        p, s, f = self.p, self.state, self.final
        if self.kind == "rnn":
            rec.rnn_forward(self.xs, s["h0"], p["wx"], p["bx"], p["wh"], self.reverse, self.ys, f["h0"], self.ws)
        elif self.kind == "lstm":
            rec.lstm_forward(self.xs, s["h0"], s["c0"], p["wf"], p["bf"], p["wi"], p["bi"], p["wo"], p["bo"],
                             p["wg"], p["bg"], self.reverse, self.ys, f["h0"], f["c0"], self.saveG, self.saveC,
                             self.ws)
        else:
            rec.gru_forward(self.xs, s["h0"], p["wz"], p["bz"], p["wr"], p["br"], p["wn"], p["bn"],
                            self.reverse, self.ys, f["h0"], self.saveG, self.ws)
        return self.ys, tuple(f.values())

    def reference(self):
        p64 = {k: v.astype(np.float64) for k, v in self.p.items()}
        st = tuple(v.astype(np.float64) for v in self.state.values())
        return REF[self.kind](self.xs.astype(np.float64), st, p64, self.reverse)

    def backward(self, gys, gfinal, need_gx=True, need_gh0=True):
        p, s = self.p, self.state
        g = {k: np.full_like(v, np.nan) for k, v in self.p.items()}
        g["xs"] = np.full_like(self.xs, np.nan) if need_gx else np.empty((0, 0, 0), self.dt)
        for k in s:
            g[k] = np.full_like(s[k], np.nan) if need_gh0 else np.empty((0, 0), self.dt)
        if self.kind == "rnn":
            rec.rnn_backward(gys, gfinal[0], self.xs, s["h0"], p["wx"], p["wh"], self.ys, self.reverse,
                             g["xs"], g["h0"], g["wx"], g["bx"], g["wh"], need_gx, need_gh0, self.wsb)
        elif self.kind == "lstm":
            rec.lstm_backward(gys, gfinal[0], gfinal[1], self.xs, s["h0"], s["c0"], p["wf"], p["wi"], p["wo"],
                              p["wg"], self.ys, self.saveG, self.saveC, self.reverse, g["xs"], g["h0"], g["c0"],
                              g["wf"], g["bf"], g["wi"], g["bi"], g["wo"], g["bo"], g["wg"], g["bg"],
                              need_gx, need_gh0, self.wsb)
        else:
            rec.gru_backward(gys, gfinal[0], self.xs, s["h0"], p["wz"], p["wr"], p["wn"], self.ys, self.saveG,
                             self.reverse, g["xs"], g["h0"], g["wz"], g["bz"], g["wr"], g["br"], g["wn"], g["bn"],
                             need_gx, need_gh0, self.wsb)
        return g

    def wrt(self):
        arrays = {"xs": self.xs, **self.state, **self.p}
        return {k: v for k, v in arrays.items() if v.size}

    def objective(self, rng):
        """f = sum(ys * R) + sum(final_k * R2_k) and its output gradients."""
        R = rng.standard_normal(self.ys.shape)
        R2 = tuple(rng.standard_normal(v.shape) for v in self.final.values())

        def f():
            ys, fin = self.forward()
            return float(np.sum(ys * R) + sum(np.sum(a * r) for a, r in zip(fin, R2)))

        return f, R, R2


KINDS = ["rnn", "lstm", "gru"]

# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_cell_loop(kind, reverse, bias):
    k = Rec(kind, np.random.default_rng(0), B=3, T=5, D=4, H=3, reverse=reverse, bias=bias)
    ys, fin = k.forward()
    rys, rfin = k.reference()
    np.testing.assert_allclose(ys, rys, rtol=1e-12, atol=1e-13)
    for a, b in zip(fin, rfin):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # the final state is the state after the last processed step
    np.testing.assert_array_equal(fin[0], ys[:, 0] if reverse else ys[:, -1])


@pytest.mark.parametrize("kind", KINDS)
def test_final_state_may_alias_initial(kind):
    k = Rec(kind, np.random.default_rng(1), B=2, T=4, D=3, H=2)
    rys, rfin = k.reference()
    k.final = {n: v for n, v in k.state.items()}  # write the final state over the initial one
    ys, fin = k.forward()
    np.testing.assert_allclose(ys, rys, rtol=1e-12, atol=1e-13)
    for a, b in zip(fin, rfin):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_finite_differences(kind, reverse):
    rng = np.random.default_rng(2)
    k = Rec(kind, rng, B=2, T=3, D=3, H=2, reverse=reverse)
    f, R, R2 = k.objective(rng)
    f()
    check_gradients(f, k.wrt(), k.backward(R, R2))


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_without_bias_and_zero_final_grads(kind):
    rng = np.random.default_rng(3)
    k = Rec(kind, rng, B=2, T=3, D=2, H=3, bias=False, reverse=True)
    R = rng.standard_normal(k.ys.shape)

    def f():
        return float(np.sum(k.forward()[0] * R))

    f()
    g = k.backward(R, tuple(np.zeros_like(v) for v in k.final.values()))
    assert all(g[n].size == 0 for n in k.p if n.startswith("b"))
    check_gradients(f, k.wrt(), g)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_directional_larger(kind, reverse):
    rng = np.random.default_rng(4)
    k = Rec(kind, rng, B=3, T=9, D=5, H=7, reverse=reverse)
    f, R, R2 = k.objective(rng)
    f()
    check_directional(f, k.wrt(), k.backward(R, R2), rng)


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_gradients_with_the_steps_in_chunks(reverse):
    # a batch large enough that the backward keeps its gate gradients a chunk of 2 steps at a time (T 5: chunks
    # of 1, 2 and 2 steps), adding each chunk to the weight and input gradients once complete
    from netdsl.compiler.kernels.cpu.recurrent_lstm import gate_chunk

    B, T, H = 3000, 5, 8
    assert gate_chunk(T, B, H) == 2
    rng = np.random.default_rng(8)
    k = Rec("lstm", rng, B=B, T=T, D=3, H=H, reverse=reverse, scale=0.5)
    f, R, R2 = k.objective(rng)
    f()
    check_directional(f, k.wrt(), k.backward(R, R2), rng)


@pytest.mark.parametrize("kind", KINDS)
def test_need_flags_and_overwrite(kind):
    rng = np.random.default_rng(5)
    k = Rec(kind, rng, B=2, T=4, D=3, H=2)
    f, R, R2 = k.objective(rng)
    f()
    full = k.backward(R, R2)
    again = k.backward(R, R2)  # outputs are overwritten, not accumulated
    part = k.backward(R, R2, need_gx=False, need_gh0=False)
    for n in full:
        np.testing.assert_array_equal(again[n], full[n])
    assert part["xs"].shape == (0, 0, 0) and part["h0"].shape == (0, 0)
    for n in k.p:
        np.testing.assert_array_equal(part[n], full[n])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_causality(kind, reverse):
    rng = np.random.default_rng(6)
    B, T, D, H = 2, 6, 3, 4
    k = Rec(kind, rng, B=B, T=T, D=D, H=H, reverse=reverse)
    base = k.forward()[0].copy()
    for t in range(T - 1):
        if reverse:  # a step only sees later steps: perturb steps < T-1-t, outputs from T-1-t on are fixed
            cut = T - 1 - t
            k.xs[:, :cut] += rng.standard_normal((B, cut, D))
            ys = k.forward()[0]
            np.testing.assert_array_equal(ys[:, cut:], base[:, cut:])
            assert not np.allclose(ys[:, :cut], base[:, :cut])
        else:
            k.xs[:, t + 1:] += rng.standard_normal((B, T - t - 1, D))
            ys = k.forward()[0]
            np.testing.assert_array_equal(ys[:, :t + 1], base[:, :t + 1])
            assert not np.allclose(ys[:, t + 1:], base[:, t + 1:])
        base = ys.copy()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_float32_matches_float64(kind, reverse):
    k64 = Rec(kind, np.random.default_rng(7), B=3, T=6, D=5, H=4, reverse=reverse)
    k32 = Rec(kind, np.random.default_rng(7), B=3, T=6, D=5, H=4, reverse=reverse, dtype=np.float32)
    ys64, fin64 = k64.forward()
    ys32, fin32 = k32.forward()
    assert ys32.dtype == np.float32
    assert_f32_matches(ys64, ys32)
    for a, b in zip(fin64, fin32):
        assert_f32_matches(a, b)
    rng = np.random.default_rng(8)
    R = rng.standard_normal(ys64.shape)
    R2 = tuple(rng.standard_normal(v.shape) for v in fin64)
    g64 = k64.backward(R, R2)
    g32 = k32.backward(R.astype(np.float32), tuple(r.astype(np.float32) for r in R2))
    for n in g64:
        assert_f32_matches(g64[n], g32[n], rtol=1e-4)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_matches_pytorch(kind):
    torch = pytest.importorskip("torch")
    B, T, D, H = 2, 5, 3, 4
    for reverse in (False, True):
        k = Rec(kind, np.random.default_rng(9), B=B, T=T, D=D, H=H, reverse=reverse)
        ys, fin = k.forward()
        xs = torch.from_numpy(k.xs.copy())
        if reverse:  # PyTorch's forward direction over the flipped sequence
            xs = xs.flip(1)
        p = k.p
        if kind == "rnn":
            m = torch.nn.RNN(D, H, batch_first=True, dtype=torch.float64)
            w_ih, w_hh, b_ih = p["wx"], p["wh"], p["bx"]
            state = torch.from_numpy(k.state["h0"])[None]
        else:  # PyTorch stacks gates i, f, g, o with separate x and h blocks
            m = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
            order = ["wi", "wf", "wg", "wo"]
            w_ih = np.concatenate([p[n][:, H:] for n in order])
            w_hh = np.concatenate([p[n][:, :H] for n in order])
            b_ih = np.concatenate([p["b" + n[1]] for n in order])
            state = (torch.from_numpy(k.state["h0"])[None], torch.from_numpy(k.state["c0"])[None])
        with torch.no_grad():
            m.weight_ih_l0.copy_(torch.from_numpy(w_ih))
            m.weight_hh_l0.copy_(torch.from_numpy(w_hh))
            m.bias_ih_l0.copy_(torch.from_numpy(b_ih))
            m.bias_hh_l0.zero_()
            out, st = m(xs, state)
        out = out.flip(1) if reverse else out
        np.testing.assert_allclose(ys, out.numpy(), rtol=1e-10, atol=1e-12)
        st = st if isinstance(st, tuple) else (st,)
        for a, b in zip(fin, st):
            np.testing.assert_allclose(a, b[0].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_lowering_sizes_the_fused_workspaces_as_the_kernels_ask(cell):
    # compiler/fused_rnn.py restates the kernels' workspace helpers without importing Numba: per example and
    # constant parts, for any batch (a mismatch only shows at large batches, where the constant's slack is gone)
    from netdsl.compiler.fused_rnn import _workspace

    for B, T, D, H in ((1, 3, 2, 4), (32, 64, 64, 256), (7, 5, 3, 9)):
        for backward in (False, True):
            per, const = _workspace(cell, B, T, D, H, backward)
            helper = getattr(rec, f"{cell.lower()}_{'backward' if backward else 'forward'}_workspace_size")
            assert B * per + const == helper(B, T, D, H), (cell, B, T, D, H, backward)



def test_lowering_sizes_the_embedding_lstm_workspaces_as_the_kernels_ask():
    # fused_rnn._embed_workspace restates recurrent_embed.lstm_embed_workspace_parts (either path, any batch),
    # and _GATE_PAD the LSTM backward's row padding
    from netdsl.compiler import fused_rnn
    from netdsl.compiler.kernels.cpu import recurrent_embed, recurrent_lstm

    assert fused_rnn._GATE_PAD == recurrent_lstm.GATE_PAD
    for T, V, D, H in ((1, 3, 2, 4), (64, 65, 64, 256), (5, 10000, 3, 9)):
        for backward in (False, True):
            assert fused_rnn._embed_workspace(T, V, D, H, backward) == recurrent_embed.lstm_embed_workspace_parts(
                T, V, D, H, backward), (T, V, D, H, backward)