"""Multi-head attention kernels against a numpy reference (and PyTorch when present), finite differences,
causality, self-attention and float32."""

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import attention as att

from .fdcheck import assert_f32_matches, check_directional, check_gradients


def ref_attention(q_in, k_in, v_in, wq, bq, wk, bk, wv, bv, wo, bo, H, causal):
    def proj(x, w, b):
        y = x @ w.T
        return y + b if b.size else y

    Q, K, V = proj(q_in, wq, bq), proj(k_in, wk, bk), proj(v_in, wv, bv)
    B, Tq, D = Q.shape
    Tk = K.shape[1]
    dk = D // H
    ctx = np.empty((B, Tq, D))
    for b in range(B):
        for h in range(H):
            sl = slice(h * dk, (h + 1) * dk)
            S = Q[b, :, sl] @ K[b, :, sl].T / np.sqrt(dk)
            if causal:
                S = np.where(np.tril(np.ones((Tq, Tk), bool)), S, -np.inf)
            S = np.exp(S - S.max(1, keepdims=True))
            P = S / S.sum(1, keepdims=True)
            ctx[b, :, sl] = P @ V[b, :, sl]
    return proj(ctx, wo, bo)


class Attn:
    """Inputs, parameters and every buffer of one attention call."""

    def __init__(self, rng, B, Tq, Tk, Dq, Dk, Dv, D, H, causal=False, bias=True, dtype=np.float64):
        def r(*shape):
            return rng.standard_normal(shape).astype(dtype)

        self.H, self.causal = H, causal
        self.q_in, self.k_in, self.v_in = r(B, Tq, Dq), r(B, Tk, Dk), r(B, Tk, Dv)
        self.wq, self.wk, self.wv, self.wo = r(D, Dq), r(D, Dk), r(D, Dv), r(D, D)
        nb = D if bias else 0
        self.bq, self.bk, self.bv, self.bo = r(nb), r(nb), r(nb), r(nb)
        self.out = np.empty((B, Tq, D), dtype)
        self.sQ, self.sCtx = np.empty((B, Tq, D), dtype), np.empty((B, Tq, D), dtype)
        self.sK, self.sV = np.empty((B, Tk, D), dtype), np.empty((B, Tk, D), dtype)
        self.sP = np.empty((B, H, Tq, Tk), dtype)
        self.ws = np.empty(att.attention_forward_workspace_size(B, Tq, Tk, D, H), dtype)
        self.wsb = np.empty(att.attention_backward_workspace_size(B, Tq, Tk, D, H), dtype)

    def params(self):
        return (self.wq, self.bq, self.wk, self.bk, self.wv, self.bv, self.wo, self.bo)

    def forward(self):
        att.attention_forward(self.q_in, self.k_in, self.v_in, *self.params(), self.H, self.causal, self.out,
                              self.sQ, self.sK, self.sV, self.sP, self.sCtx, self.ws)
        return self.out

    def reference(self):
        return ref_attention(self.q_in, self.k_in, self.v_in, *self.params(), self.H, self.causal)

    def backward(self, g, need=(True, True, True)):
        gr = {n: np.full_like(getattr(self, n), np.nan) for n in
              ("q_in", "k_in", "v_in", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")}
        for n, nd in zip(("q_in", "k_in", "v_in"), need):
            if not nd:
                gr[n] = np.empty((0, 0, 0), g.dtype)
        att.attention_backward(g, self.q_in, self.k_in, self.v_in, self.wq, self.wk, self.wv, self.wo, self.H,
                               self.sQ, self.sK, self.sV, self.sP, self.sCtx,
                               gr["q_in"], gr["k_in"], gr["v_in"], gr["wq"], gr["bq"], gr["wk"], gr["bk"],
                               gr["wv"], gr["bv"], gr["wo"], gr["bo"], *need, self.wsb)
        return gr

    def wrt(self):
        names = ("q_in", "k_in", "v_in", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")
        return {n: getattr(self, n) for n in names if getattr(self, n).size}


SMALL = [
    {"B": 2, "Tq": 3, "Tk": 4, "Dq": 5, "Dk": 3, "Dv": 2, "D": 4, "H": 2},
    {"B": 2, "Tq": 3, "Tk": 3, "Dq": 3, "Dk": 5, "Dv": 4, "D": 6, "H": 3, "causal": True},
    {"B": 1, "Tq": 2, "Tk": 3, "Dq": 4, "Dk": 4, "Dv": 4, "D": 4, "H": 1, "bias": False},
    {"B": 2, "Tq": 4, "Tk": 4, "Dq": 2, "Dk": 2, "Dv": 2, "D": 4, "H": 4, "causal": True, "bias": False},
]


@pytest.mark.parametrize("cfg", SMALL)
def test_forward_matches_reference(cfg):
    a = Attn(np.random.default_rng(0), **cfg)
    np.testing.assert_allclose(a.forward(), a.reference(), rtol=1e-12, atol=1e-12)
    assert np.allclose(a.sP.sum(-1), 1.0)
    if cfg.get("causal"):
        T = cfg["Tq"]
        assert np.all(a.sP[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0.0)


@pytest.mark.parametrize("cfg", SMALL)
def test_gradients_finite_differences(cfg):
    rng = np.random.default_rng(1)
    a = Attn(rng, **cfg)
    R = rng.standard_normal(a.out.shape)

    def f():
        return float(np.sum(a.forward() * R))

    f()
    gr = a.backward(R)
    check_gradients(f, a.wrt(), gr)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_directional_larger(causal):
    rng = np.random.default_rng(2)
    a = Attn(rng, B=3, Tq=9, Tk=9, Dq=10, Dk=7, Dv=12, D=12, H=3, causal=causal)
    R = rng.standard_normal(a.out.shape)

    def f():
        return float(np.sum(a.forward() * R))

    f()
    check_directional(f, a.wrt(), a.backward(R), rng)


def test_need_flags_and_overwrite():
    rng = np.random.default_rng(3)
    a = Attn(rng, B=2, Tq=3, Tk=5, Dq=4, Dk=3, Dv=2, D=4, H=2)
    g = rng.standard_normal(a.out.shape)
    a.forward()
    full = a.backward(g)
    part = a.backward(g, need=(False, True, False))
    assert part["q_in"].shape == (0, 0, 0) and part["v_in"].shape == (0, 0, 0)
    for n in ("k_in", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"):
        np.testing.assert_array_equal(part[n], full[n])


def test_self_attention_sum_of_three_gradients():
    rng = np.random.default_rng(4)
    B, T, D, H = 2, 4, 6, 2
    a = Attn(rng, B=B, Tq=T, Tk=T, Dq=D, Dk=D, Dv=D, D=D, H=H, causal=True)
    x = rng.standard_normal((B, T, D))
    a.q_in = a.k_in = a.v_in = x  # one array, three uses
    R = rng.standard_normal(a.out.shape)

    def f():
        return float(np.sum(a.forward() * R))

    f()
    gr = a.backward(R)
    check_gradients(f, {"x": x}, {"x": gr["q_in"] + gr["k_in"] + gr["v_in"]})


def test_causality():
    rng = np.random.default_rng(5)
    B, T, D, H = 2, 6, 4, 2
    a = Attn(rng, B=B, Tq=T, Tk=T, Dq=D, Dk=D, Dv=D, D=D, H=H, causal=True)
    x = rng.standard_normal((B, T, D))
    a.q_in = a.k_in = a.v_in = x
    base = a.forward().copy()
    for t in range(T - 1):
        x[:, t + 1:] += rng.standard_normal((B, T - t - 1, D))
        out = a.forward()
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:])
        base = out.copy()
    with pytest.raises(ValueError):
        Attn(rng, B=1, Tq=2, Tk=3, Dq=2, Dk=2, Dv=2, D=2, H=1, causal=True).forward()
    with pytest.raises(ValueError):
        Attn(rng, B=1, Tq=2, Tk=3, Dq=2, Dk=2, Dv=2, D=6, H=4).forward()


def test_float32_matches_float64():
    rng = np.random.default_rng(6)
    for causal in (False, True):
        a64 = Attn(np.random.default_rng(7), B=2, Tq=5, Tk=5, Dq=6, Dk=4, Dv=3, D=8, H=2, causal=causal)
        a32 = Attn(np.random.default_rng(7), B=2, Tq=5, Tk=5, Dq=6, Dk=4, Dv=3, D=8, H=2, causal=causal,
                   dtype=np.float32)
        assert_f32_matches(a64.forward(), a32.forward())
        g = rng.standard_normal(a64.out.shape)
        g64, g32 = a64.backward(g), a32.backward(g.astype(np.float32))
        for n in g64:
            if n == "bk":  # exactly 0 in exact arithmetic: softmax ignores a per-query shift of the scores
                assert np.abs(g32[n]).max() < 1e-4 * np.abs(g32["bq"]).max()
                continue
            assert_f32_matches(g64[n], g32[n], rtol=1e-4)


def test_matches_pytorch_multihead_attention():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    B, Tq, Tk, Dq, Dk, Dv, D, H = 2, 4, 5, 8, 3, 6, 8, 2
    for causal in (False, True):
        Tk_ = Tq if causal else Tk
        a = Attn(rng, B=B, Tq=Tq, Tk=Tk_, Dq=Dq, Dk=Dk, Dv=Dv, D=D, H=H, causal=causal)
        m = torch.nn.MultiheadAttention(D, H, kdim=Dk, vdim=Dv, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            m.q_proj_weight.copy_(torch.from_numpy(a.wq))
            m.k_proj_weight.copy_(torch.from_numpy(a.wk))
            m.v_proj_weight.copy_(torch.from_numpy(a.wv))
            m.in_proj_bias.copy_(torch.from_numpy(np.concatenate([a.bq, a.bk, a.bv])))
            m.out_proj.weight.copy_(torch.from_numpy(a.wo))
            m.out_proj.bias.copy_(torch.from_numpy(a.bo))
        mask = torch.triu(torch.ones(Tq, Tk_, dtype=torch.bool), 1) if causal else None
        ref, _ = m(torch.from_numpy(a.q_in), torch.from_numpy(a.k_in), torch.from_numpy(a.v_in),
                   attn_mask=mask, need_weights=False)
        np.testing.assert_allclose(a.forward(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
