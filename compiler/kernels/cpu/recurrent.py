"""Fused whole-sequence recurrences for the built-in cells rnn, lstm and gru: forward and BPTT backward.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, batch axis first; float32 or float64 (one dtype per call, ``ws`` included).
- Backward kernels OVERWRITE their gradient outputs. ``need_gx`` skips the gradient of ``xs`` and
  ``need_gh0`` the gradients of the initial states (outputs then zero-size placeholders of the right rank);
  weight and bias gradients are always written. An absent bias is a zero-length array (and its gradient).
- Scratch memory is a 1-D ``ws``, sized by the pure-Python ``<op>_forward_workspace_size`` /
  ``<op>_backward_workspace_size`` helpers.

The kernels compute exactly the prelude cells (``dense(v)`` is ``v @ W.T + b`` with ``W (out, in)``;
``concat(h, x)`` puts h first, so a gate weight's first H columns multiply h and the remaining D multiply x):
    RNN   h' = tanh(x @ wx.T + bx + h @ wh.T)                     wx (H, D), bx (H,), wh (H, H)
    LSTM  z = [h, x]; f = σ(z wf.T + bf), i = σ(z wi.T + bi), o = σ(z wo.T + bo), g = tanh(z wg.T + bg)
          c' = f * c + i * g; h' = o * tanh(c')                   w* (H, H + D), b* (H,)
    GRU   z = σ([h, x] wz.T + bz), r = σ([h, x] wr.T + br), n = tanh([r * h, x] wn.T + bn)
          h' = (1 - z) * h + z * n                                w* (H, H + D), b* (H,)
          (``wn``/``bn`` are the cell's dense labelled ``h``: ``h.weight``, ``h.bias``.)
The output at each step is the new h. Layout is batch-major: xs (B, T, D) -> ys (B, T, H); h0, c0, hT, cT
(B, H). ``reverse`` runs t = T-1 .. 0 with outputs time-aligned (ys[:, t] belongs to xs[:, t]); the final
state is then the state after step 0. ``hT`` / ``cT`` may alias ``h0`` / ``c0`` (they are the running state).

Save buffers (forward writes them, backward reads them, together with ``xs``, ``h0``/``c0`` and ``ys`` — so
ys must not be overwritten in place between forward and backward):
    LSTM  saveG (T, 4H, B): gate activations [f | i | o | g] by processing step s, unit-major;
          saveC (T, H, B): cell states c_s (the buffers are allocated (B, T, 4H) / (B, T, H); recurrent_lstm.py
          reinterprets their memory)
    GRU   saveG (B, T, 3H): gate activations [z | r | n] per step
    RNN   none (tanh' comes from ys)

Strategy (RNN, GRU): the input term of every gate at every step is one GEMM, (B*T, D) @ Wx.T, written
straight into the gate save buffer (for the RNN into ys), where each step then adds its recurrent GEMM
h_{t-1} @ Wh.T and applies the gate arithmetic in one fused loop, in place. The gate weights are packed into
stacked contiguous matrices in ``ws`` (Wh (G*H, H) and Wx (G*H, D)) so both GEMMs cover all gates at once.
Backward walks the steps in reverse processing order, keeps dh per step, stores the pre-activation gradients
of every step and then forms all weight gradients and the xs gradient with a few GEMMs over B*T rows (which
split their rows: ``_common.pdot``). The LSTM (recurrent_lstm.py, which documents it) works unit-major
instead: one fused GEMM per step, (4H, H + D) @ (H + D, B), with the lanes splitting the hidden units.
"""


import numpy as np
from numba import njit

from . import fastmath as fm
from ._common import add_bias, bias_grad, carve, pdot, pdot_tn
from .recurrent_embed import (  # noqa: F401 - the LSTM fed by an embedding, re-exported with the cells
    lstm_embed_backward,
    lstm_embed_backward_workspace_size,
    lstm_embed_forward,
    lstm_embed_forward_workspace_size,
)
from .recurrent_lstm import (  # noqa: F401 - the LSTM kernels, re-exported with the other cells
    lstm_backward,
    lstm_backward_workspace_size,
    lstm_forward,
    lstm_forward_workspace_size,
)

# ----------------------------------------------------------------------------------------------- helpers

@njit(cache=True, error_model="numpy")
def _copy2(src, dst):
    # src, dst (M, N) -> dst = src (a no-op when they alias)
    M, N = dst.shape
    for m in range(M):
        for n in range(N):
            dst[m, n] = src[m, n]


@njit(cache=True, error_model="numpy")
def _pack(w, k, H, Wh, Wx):
    # gate weight w (H, H + D) -> rows k*H.. of Wh (G*H, H) (its h columns) and Wx (G*H, D) (its x columns)
    D = Wx.shape[1]
    for r in range(H):
        for c in range(H):
            Wh[k * H + r, c] = w[r, c]
        for c in range(D):
            Wx[k * H + r, c] = w[r, H + c]


@njit(cache=True, error_model="numpy")
def _unpack(gWh, gWx, k, H, gw):
    # rows k*H.. of gWh (G*H, H) and gWx (G*H, D) -> gate weight gradient gw (H, H + D) (none when frozen)
    if gw.shape[0] == 0:
        return
    D = gWx.shape[1]
    for r in range(H):
        for c in range(H):
            gw[r, c] = gWh[k * H + r, c]
        for c in range(D):
            gw[r, H + c] = gWx[k * H + r, c]


@njit(cache=True, error_model="numpy")
def _prev_states(ys, h0, reverse, Hp):
    # ys (B, T, H), h0 (B, H) -> Hp (B, T, H): the state each step t started from
    B, T, H = ys.shape
    for b in range(B):
        for t in range(T):
            tp = t + 1 if reverse else t - 1
            src = ys[b, tp] if 0 <= tp < T else h0[b]
            d = Hp[b, t]
            for j in range(H):
                d[j] = src[j]


@njit(cache=True, error_model="numpy")
def _check_gate(w, H, D):
    if w.shape[0] != H or w.shape[1] != H + D:
        raise ValueError("recurrent: gate weight must be (hidden, hidden + input)")


# ------------------------------------------------------------------------------------------------- RNN

def rnn_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``rnn_forward``: the recurrent term of one step."""
    return B * H


def rnn_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``rnn_backward``: pre-activation gradients and previous states of every step,
    plus dh and da of one step."""
    return 2 * B * T * H + 2 * B * H


@njit(cache=True, error_model="numpy")
def rnn_forward(xs, h0, wx, bx, wh, reverse, ys, hT, ws):
    fast = xs.itemsize == 4  # float32: vectorisable tanh/sigmoid (fastmath.py)
    # xs (B, T, D), h0 (B, H), wx (H, D), bx (H,) or (0,), wh (H, H) -> ys (B, T, H), hT (B, H);
    # ws rnn_forward_workspace_size elements
    B, T, D = xs.shape
    H = wx.shape[0]
    if wx.shape[1] != D or wh.shape[0] != H or wh.shape[1] != H:
        raise ValueError("rnn: weight shapes disagree with the input / hidden widths")
    ys2 = ys.reshape(B * T, H)
    pdot(xs.reshape(B * T, D), wx.T, ys2)  # input term of every step at once
    add_bias(ys2, bx, 0, H)
    h = hT  # the running state lives in hT
    _copy2(h0, h)
    rec = ws[0:B * H].reshape(B, H)
    for s in range(T):
        t = T - 1 - s if reverse else s
        np.dot(h, wh.T, rec)
        for b in range(B):
            y = ys[b, t]
            for j in range(H):
                v = fm.tanh(y[j] + rec[b, j], fast)
                y[j] = v
                h[b, j] = v


@njit(cache=True, error_model="numpy")
def rnn_backward(gys, ghT, xs, h0, wx, wh, ys, reverse, gxs, gh0, gwx, gbx, gwh, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT (B, H); xs, h0, wx, wh and the forward output ys as in forward
    # -> gxs (B, T, D), gh0 (B, H), gwx (H, D), gbx (H,) or (0,), gwh (H, H); ws rnn_backward_workspace_size
    B, T, D = xs.shape
    H = wx.shape[0]
    dA, o = carve(ws, 0, (B, T, H))
    Hp, o = carve(ws, o, (B, T, H))
    dh, o = carve(ws, o, (B, H))
    da = carve(ws, o, (B, H))[0]
    _copy2(ghT, dh)
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        for b in range(B):
            y = ys[b, t]
            g = gys[b, t]
            for j in range(H):
                a = (dh[b, j] + g[j]) * (1.0 - y[j] * y[j])
                da[b, j] = a
                dA[b, t, j] = a
        np.dot(da, wh, dh)  # the pre-activation holds h_prev @ wh.T
    if need_gh0:
        _copy2(dh, gh0)
    _prev_states(ys, h0, reverse, Hp)
    dA2 = dA.reshape(B * T, H)
    pdot_tn(dA2, xs.reshape(B * T, D), gwx)
    pdot_tn(dA2, Hp.reshape(B * T, H), gwh)
    bias_grad(dA2, 0, H, gbx)
    if need_gx:
        pdot(dA2, wx, gxs.reshape(B * T, D))


# ------------------------------------------------------------------------------------------------ LSTM
# lstm_forward / lstm_backward and their workspace helpers live in recurrent_lstm.py (imported above)

# ------------------------------------------------------------------------------------------------- GRU

def gru_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``gru_forward``: packed Wx (3H, D), Wh of z|r (2H, H) and of n (H, H), and one
    step's recurrent terms and r * h."""
    return 3 * H * D + 3 * H * H + 4 * B * H


def gru_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``gru_backward``: packed weights and their gradients, the z|r and n gradients,
    previous states and r * h of every step, the (B*T, D) second term of gxs, and one step's vectors."""
    return 2 * (3 * H * D + 3 * H * H) + 5 * B * T * H + B * T * D + 6 * B * H


@njit(cache=True, error_model="numpy")
def _gru_pack(wz, wr, wn, H, Wx, Whzr, Whn):
    # Wx (3H, D) rows [z|r|n] of the x columns; Whzr (2H, H) rows [z|r] and Whn (H, H) of the h columns
    _pack(wz, 0, H, Whzr, Wx[0:2 * H])
    _pack(wr, 1, H, Whzr, Wx[0:2 * H])
    _pack(wn, 0, H, Whn, Wx[2 * H:3 * H])


@njit(cache=True, error_model="numpy")
def gru_forward(xs, h0, wz, bz, wr, br, wn, bn, reverse, ys, hT, saveG, ws):
    fast = xs.itemsize == 4  # float32: vectorisable tanh/sigmoid (fastmath.py)
    # xs (B, T, D), h0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H), hT (B, H),
    # saveG (B, T, 3H) gate activations [z|r|n]; ws gru_forward_workspace_size elements
    B, T, D = xs.shape
    H = h0.shape[1]
    _check_gate(wz, H, D)
    _check_gate(wr, H, D)
    _check_gate(wn, H, D)
    H3 = 3 * H
    Wx, o = carve(ws, 0, (H3, D))
    Whzr, o = carve(ws, o, (2 * H, H))
    Whn, o = carve(ws, o, (H, H))
    rec, o = carve(ws, o, (B, 2 * H))
    rh, o = carve(ws, o, (B, H))
    recn = carve(ws, o, (B, H))[0]
    _gru_pack(wz, wr, wn, H, Wx, Whzr, Whn)
    G2 = saveG.reshape(B * T, H3)
    pdot(xs.reshape(B * T, D), Wx.T, G2)  # input term of every gate and step at once
    add_bias(G2, bz, 0, H)
    add_bias(G2, br, 1, H)
    add_bias(G2, bn, 2, H)
    h = hT
    _copy2(h0, h)
    for s in range(T):
        t = T - 1 - s if reverse else s
        np.dot(h, Whzr.T, rec)
        for b in range(B):
            g = saveG[b, t]
            for j in range(H):
                zv = fm.sigmoid(g[j] + rec[b, j], fast)
                rv = fm.sigmoid(g[H + j] + rec[b, H + j], fast)
                g[j] = zv
                g[H + j] = rv
                rh[b, j] = rv * h[b, j]
        np.dot(rh, Whn.T, recn)  # the candidate sees r * h, so its recurrent GEMM waits for r
        for b in range(B):
            g = saveG[b, t]
            for j in range(H):
                nv = fm.tanh(g[2 * H + j] + recn[b, j], fast)
                g[2 * H + j] = nv
                zv = g[j]
                hn = (1.0 - zv) * h[b, j] + zv * nv
                h[b, j] = hn
                ys[b, t, j] = hn


@njit(cache=True, error_model="numpy")
def gru_backward(gys, ghT, xs, h0, wz, wr, wn, ys, saveG, reverse,
                 gxs, gh0, gwz, gbz, gwr, gbr, gwn, gbn, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT (B, H); xs, h0, w*, ys, saveG as in forward
    # -> gxs (B, T, D), gh0 (B, H), gw* (H, H + D), gb* (H,) or (0,); ws gru_backward_workspace_size elements
    B, T, D = xs.shape
    H = h0.shape[1]
    H3 = 3 * H
    Wx, o = carve(ws, 0, (H3, D))
    Whzr, o = carve(ws, o, (2 * H, H))
    Whn, o = carve(ws, o, (H, H))
    gWxzr, o = carve(ws, o, (2 * H, D))
    gWxn, o = carve(ws, o, (H, D))
    gWhzr, o = carve(ws, o, (2 * H, H))
    gWhn, o = carve(ws, o, (H, H))
    dZR, o = carve(ws, o, (B, T, 2 * H))
    dN, o = carve(ws, o, (B, T, H))
    Hp, o = carve(ws, o, (B, T, H))
    RH, o = carve(ws, o, (B, T, H))
    tmp, o = carve(ws, o, (B * T, D))
    dzr, o = carve(ws, o, (B, 2 * H))
    dn, o = carve(ws, o, (B, H))
    drh, o = carve(ws, o, (B, H))
    dh, o = carve(ws, o, (B, H))
    dhd = carve(ws, o, (B, H))[0]
    _gru_pack(wz, wr, wn, H, Wx, Whzr, Whn)
    _prev_states(ys, h0, reverse, Hp)
    _copy2(ghT, dh)
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        for b in range(B):
            g = saveG[b, t]
            hp = Hp[b, t]
            gy = gys[b, t]
            for j in range(H):
                zv = g[j]
                nv = g[2 * H + j]
                dht = dh[b, j] + gy[j]
                dhd[b, j] = dht * (1.0 - zv)  # h' = (1 - z) h + z n: the direct path to h
                dzr[b, j] = dht * (nv - hp[j]) * zv * (1.0 - zv)
                a = dht * zv * (1.0 - nv * nv)
                dn[b, j] = a
                dN[b, t, j] = a
        np.dot(dn, Whn, drh)  # gradient of r * h
        for b in range(B):
            g = saveG[b, t]
            hp = Hp[b, t]
            for j in range(H):
                rv = g[H + j]
                dzr[b, H + j] = drh[b, j] * hp[j] * rv * (1.0 - rv)
                dhd[b, j] += drh[b, j] * rv
            dr = dZR[b, t]
            for k in range(2 * H):
                dr[k] = dzr[b, k]
        np.dot(dzr, Whzr, dh)  # z and r see h through Whzr
        for b in range(B):
            for j in range(H):
                dh[b, j] += dhd[b, j]
    if need_gh0:
        _copy2(dh, gh0)
    for b in range(B):
        for t in range(T):
            for j in range(H):
                RH[b, t, j] = saveG[b, t, H + j] * Hp[b, t, j]
    dZR2 = dZR.reshape(B * T, 2 * H)
    dN2 = dN.reshape(B * T, H)
    xs2 = xs.reshape(B * T, D)
    pdot_tn(dZR2, xs2, gWxzr)
    pdot_tn(dN2, xs2, gWxn)
    pdot_tn(dZR2, Hp.reshape(B * T, H), gWhzr)
    pdot_tn(dN2, RH.reshape(B * T, H), gWhn)
    _unpack(gWhzr, gWxzr, 0, H, gwz)
    _unpack(gWhzr, gWxzr, 1, H, gwr)
    _unpack(gWhn, gWxn, 0, H, gwn)
    bias_grad(dZR2, 0, H, gbz)
    bias_grad(dZR2, 1, H, gbr)
    bias_grad(dN2, 0, H, gbn)
    if need_gx:
        gx2 = gxs.reshape(B * T, D)
        pdot(dZR2, Wx[0:2 * H], gx2)
        pdot(dN2, Wx[2 * H:H3], tmp)
        for n in range(B * T):
            for c in range(D):
                gx2[n, c] += tmp[n, c]
