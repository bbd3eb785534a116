"""Fused whole-sequence recurrences for the built-in cells rnn, lstm and gru on the device: forward and BPTT.

Same functions, signatures, save buffers, workspace layouts and semantics as ``kernels/cpu/recurrent.py``
(which documents the cells), on device arrays. The structure is the CPU's with every loop a kernel:
- the input term of every gate at every step is one tiled GEMM, (B·T, D) @ Wx^T, into the gate save buffer;
- a loop on the host over the steps launches, per step, the recurrent GEMM h_{t-1} @ Wh^T and one
  pointwise kernel for the gate arithmetic (one thread per (b, j));
- backward walks the steps in reverse processing order the same way (gate gradients kernel, then the
  gradient GEMM into dh), stores every step's pre-activation gradients, and forms all weight gradients and
  the input gradient with a few GEMMs over B·T rows; bias gradients are column sums by block reduction.
Gate weights are packed into stacked matrices in ``ws`` (one pointwise kernel) so each GEMM covers all gates.
"""

from __future__ import annotations

import math

from numba import cuda

from ._common import device, flat, gemm, kernel, launch, mat, sum_lines
from .util import copy as _copy


@device
def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@kernel
def _pack(w, k, H, D, Wh, Wx, n):
    # gate weight w (H, H + D) -> rows k*H.. of Wh (G*H, H) (its h columns) and Wx (G*H, D) (its x columns)
    HD = H + D
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // HD
        c = e - r * HD
        if c < H:
            Wh[(k * H + r) * H + c] = w[e]
        else:
            Wx[(k * H + r) * D + c - H] = w[e]


@kernel
def _unpack(gWh, gWx, k, H, D, gw, n):
    # rows k*H.. of gWh (G*H, H) and gWx (G*H, D) -> gate weight gradient gw (H, H + D)
    HD = H + D
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // HD
        c = e - r * HD
        if c < H:
            gw[e] = gWh[(k * H + r) * H + c]
        else:
            gw[e] = gWx[(k * H + r) * D + c - H]


def _pack_gate(w, k, H, D, Wh, Wx):
    launch(_pack, w.size, flat(w), k, H, D, flat(Wh), flat(Wx), w.size)


def _unpack_gate(gWh, gWx, k, H, D, gw):
    launch(_unpack, gw.size, flat(gWh), flat(gWx), k, H, D, flat(gw), gw.size)


@kernel
def _add_bias(G, b, k, H, G_width, n):
    # G (N, G_width) columns k*H.. += b (H,)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // H
        j = e - r * H
        G[r * G_width + k * H + j] += b[j]


def _bias(G2, b, k, H):
    if b.size > 0:
        N, width = G2.shape
        launch(_add_bias, N * H, flat(G2), flat(b), k, H, width, N * H)


def _bias_grad(dG2, k, H, gb):
    if gb.size > 0:
        N, width = dG2.shape
        sum_lines(dG2, N, width, 1, gb, l0=k * H, n=H)


def _check_gate(w, H, D):
    if w.shape[0] != H or w.shape[1] != H + D:
        raise ValueError("recurrent: gate weight must be (hidden, hidden + input)")


@kernel
def _prev_states(ys, h0, Hp, T, H, reverse, n):
    # Hp[b, t] = the state step t started from (ys at the previous step, or h0)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = e % H
        t = (e // H) % T
        b = e // (T * H)
        tp = t + 1 if reverse else t - 1
        if tp >= 0 and tp < T:
            Hp[e] = ys[(b * T + tp) * H + j]
        else:
            Hp[e] = h0[b * H + j]


def _prev(ys, h0, reverse, Hp):
    _, T, H = ys.shape
    launch(_prev_states, ys.size, flat(ys), flat(h0), flat(Hp), T, H, bool(reverse), ys.size)


def _step(s, T, reverse):
    return T - 1 - s if reverse else s


# ------------------------------------------------------------------------------------------------- RNN

def rnn_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``rnn_forward``: the recurrent term of one step."""
    return B * H


def rnn_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``rnn_backward``."""
    return 2 * B * T * H + 2 * B * H


@kernel
def _rnn_step(ys, rec, h, t, T, H, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        k = (b * T + t) * H + j
        v = math.tanh(ys[k] + rec[e])
        ys[k] = v
        h[e] = v


@kernel
def _rnn_step_bwd(ys, gys, dh, da, dA, t, T, H, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        k = (b * T + t) * H + j
        y = ys[k]
        a = (dh[e] + gys[k]) * (1.0 - y * y)
        da[e] = a
        dA[k] = a


def rnn_forward(xs, h0, wx, bx, wh, reverse, ys, hT, ws):
    # xs (B, T, D), h0 (B, H), wx (H, D), bx (H,) or (0,), wh (H, H) -> ys (B, T, H), hT (B, H)
    B, T, D = xs.shape
    H = wx.shape[0]
    if wx.shape[1] != D or wh.shape[0] != H or wh.shape[1] != H:
        raise ValueError("rnn: weight shapes disagree with the input / hidden widths")
    gemm(mat(xs), mat(wx, trans=True), mat(ys), B * T, H, D, bias=bx)
    h = hT
    _copy(h, h0)
    rec = flat(ws)[0:B * H]
    for s in range(T):
        t = _step(s, T, reverse)
        gemm(mat(h), mat(wh, trans=True), mat(rec, ld=H), B, H, H)
        launch(_rnn_step, B * H, flat(ys), rec, flat(h), t, T, H, B * H)


def rnn_backward(gys, ghT, xs, h0, wx, wh, ys, reverse, gxs, gh0, gwx, gbx, gwh, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT (B, H); xs, h0, wx, wh and the forward output ys as in forward
    # -> gxs (B, T, D), gh0 (B, H), gwx (H, D), gbx (H,) or (0,), gwh (H, H)
    B, T, D = xs.shape
    H = wx.shape[0]
    w = flat(ws)
    o = 0
    dA = w[o:o + B * T * H]
    o += B * T * H
    Hp = w[o:o + B * T * H]
    o += B * T * H
    dh = w[o:o + B * H]
    o += B * H
    da = w[o:o + B * H]
    _copy(dh, flat(ghT))
    for s in range(T - 1, -1, -1):
        t = _step(s, T, reverse)
        launch(_rnn_step_bwd, B * H, flat(ys), flat(gys), dh, da, dA, t, T, H, B * H)
        gemm(mat(da, ld=H), mat(wh), mat(dh, ld=H), B, H, H)  # the pre-activation holds h_prev @ wh.T
    if need_gh0:
        _copy(flat(gh0), dh)
    _prev(ys, h0, reverse, Hp)
    gemm(mat(dA, trans=True, ld=H), mat(xs), mat(gwx), H, D, B * T)
    gemm(mat(dA, trans=True, ld=H), mat(Hp, ld=H), mat(gwh), H, H, B * T)
    if gbx.size > 0:
        sum_lines(dA, B * T, H, 1, gbx)
    if need_gx:
        gemm(mat(dA, ld=H), mat(wx), mat(gxs), B * T, D, H)


# ------------------------------------------------------------------------------------------------ LSTM

def lstm_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_forward``: the CPU kernel's size (lowering sizes one workspace for both
    backends); this kernel uses its start, packed Wh (4H, H) and Wx (4H, D) and one step's recurrent term."""
    return 4 * H * H + 4 * H * D + 8 * B * H


def lstm_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_backward``: the CPU kernel's size, as for the forward; this kernel uses
    2(4H·H + 4H·D) + 4BTH + BTH + 4BH + 2BH of it (it keeps no transposed Wh)."""
    return 2 * (4 * H * H + 4 * H * D) + 4 * H * H + 4 * B * T * H + B * T * H + 4 * B * H + 3 * B * H


@kernel
def _lstm_step(G, rec, h, c, ys, saveC, t, T, H, n):
    # G = saveG (B, T, 4H) holding the input terms, rec (B, 4H): gates of step t, new c and h
    H4 = 4 * H
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        g = (b * T + t) * H4
        r = b * H4
        fv = _sigmoid(G[g + j] + rec[r + j])
        iv = _sigmoid(G[g + H + j] + rec[r + H + j])
        ov = _sigmoid(G[g + 2 * H + j] + rec[r + 2 * H + j])
        gv = math.tanh(G[g + 3 * H + j] + rec[r + 3 * H + j])
        G[g + j] = fv
        G[g + H + j] = iv
        G[g + 2 * H + j] = ov
        G[g + 3 * H + j] = gv
        cn = fv * c[e] + iv * gv
        c[e] = cn
        k = (b * T + t) * H + j
        saveC[k] = cn
        hn = ov * math.tanh(cn)
        h[e] = hn
        ys[k] = hn


@kernel
def _lstm_step_bwd(G, saveC, c0, gys, dh, dc, dcur, dG, t, tp, T, H, n):
    H4 = 4 * H
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        g = (b * T + t) * H4
        fv = G[g + j]
        iv = G[g + H + j]
        ov = G[g + 2 * H + j]
        gv = G[g + 3 * H + j]
        k = (b * T + t) * H + j
        cprev = saveC[(b * T + tp) * H + j] if tp >= 0 and tp < T else c0[e]
        tc = math.tanh(saveC[k])
        dht = dh[e] + gys[k]
        dct = dc[e] + dht * ov * (1.0 - tc * tc)
        d0 = dct * cprev * fv * (1.0 - fv)
        d1 = dct * gv * iv * (1.0 - iv)
        d2 = dht * tc * ov * (1.0 - ov)
        d3 = dct * iv * (1.0 - gv * gv)
        r = b * H4
        dcur[r + j] = d0
        dcur[r + H + j] = d1
        dcur[r + 2 * H + j] = d2
        dcur[r + 3 * H + j] = d3
        dG[g + j] = d0
        dG[g + H + j] = d1
        dG[g + 2 * H + j] = d2
        dG[g + 3 * H + j] = d3
        dc[e] = dct * fv


def lstm_forward(xs, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC, ws):
    # xs (B, T, D), h0/c0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H), hT/cT (B, H),
    # saveG (B, T, 4H) gate activations [f|i|o|g], saveC (B, T, H) cell states
    B, T, D = xs.shape
    H = h0.shape[1]
    for wgate in (wf, wi, wo, wg):
        _check_gate(wgate, H, D)
    H4 = 4 * H
    w = flat(ws)
    o = 0
    Wh = w[o:o + H4 * H]
    o += H4 * H
    Wx = w[o:o + H4 * D]
    o += H4 * D
    rec = w[o:o + B * H4]
    for k, wgate in enumerate((wf, wi, wo, wg)):
        _pack_gate(wgate, k, H, D, Wh, Wx)
    G2 = saveG.reshape(B * T, H4)
    gemm(mat(xs), mat(Wx, trans=True, ld=D), mat(G2), B * T, H4, D)  # input term of every gate and step
    for k, b in enumerate((bf, bi, bo, bg)):
        _bias(G2, b, k, H)
    _copy(hT, h0)
    _copy(cT, c0)
    for s in range(T):
        t = _step(s, T, reverse)
        gemm(mat(hT), mat(Wh, trans=True, ld=H), mat(rec, ld=H4), B, H4, H)
        launch(_lstm_step, B * H, flat(saveG), rec, flat(hT), flat(cT), flat(ys), flat(saveC), t, T, H, B * H)


def lstm_backward(gys, ghT, gcT, xs, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse,
                  gxs, gh0, gc0, gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT/gcT (B, H); xs, h0, c0, w*, ys, saveG, saveC as in forward
    # -> gxs (B, T, D), gh0/gc0 (B, H), gw* (H, H + D), gb* (H,) or (0,)
    B, T, D = xs.shape
    H = h0.shape[1]
    H4 = 4 * H
    w = flat(ws)
    o = 0
    Wh = w[o:o + H4 * H]
    o += H4 * H
    Wx = w[o:o + H4 * D]
    o += H4 * D
    gWh = w[o:o + H4 * H]
    o += H4 * H
    gWx = w[o:o + H4 * D]
    o += H4 * D
    dG = w[o:o + B * T * H4]
    o += B * T * H4
    Hp = w[o:o + B * T * H]
    o += B * T * H
    dcur = w[o:o + B * H4]
    o += B * H4
    dh = w[o:o + B * H]
    o += B * H
    dc = w[o:o + B * H]
    for k, wgate in enumerate((wf, wi, wo, wg)):
        _pack_gate(wgate, k, H, D, Wh, Wx)
    _copy(dh, flat(ghT))
    _copy(dc, flat(gcT))
    for s in range(T - 1, -1, -1):
        t = _step(s, T, reverse)
        tp = t + 1 if reverse else t - 1
        launch(_lstm_step_bwd, B * H, flat(saveG), flat(saveC), flat(c0), flat(gys), dh, dc, dcur, dG, t, tp, T,
               H, B * H)
        gemm(mat(dcur, ld=H4), mat(Wh, ld=H), mat(dh, ld=H), B, H, H4)  # every gate holds h_prev @ Wh_k.T
    if need_gh0:
        _copy(flat(gh0), dh)
        _copy(flat(gc0), dc)
    _prev(ys, h0, reverse, Hp)
    gemm(mat(dG, trans=True, ld=H4), mat(Hp, ld=H), mat(gWh, ld=H), H4, H, B * T)
    gemm(mat(dG, trans=True, ld=H4), mat(xs), mat(gWx, ld=D), H4, D, B * T)
    for k, gw in enumerate((gwf, gwi, gwo, gwg)):
        _unpack_gate(gWh, gWx, k, H, D, gw)
    dG2 = dG.reshape(B * T, H4)
    for k, gb in enumerate((gbf, gbi, gbo, gbg)):
        _bias_grad(dG2, k, H, gb)
    if need_gx:
        gemm(mat(dG, ld=H4), mat(Wx, ld=D), mat(gxs), B * T, D, H4)


# ------------------------------------------------------------------------------------------------- GRU

def gru_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``gru_forward``."""
    return 3 * H * D + 3 * H * H + 4 * B * H


def gru_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``gru_backward``."""
    return 2 * (3 * H * D + 3 * H * H) + 5 * B * T * H + B * T * D + 6 * B * H


@kernel
def _gru_zr(G, rec, h, rh, t, T, H, n):
    # z, r of step t (G = saveG (B, T, 3H) with the input terms, rec (B, 2H)); rh = r * h
    H3 = 3 * H
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        g = (b * T + t) * H3
        zv = _sigmoid(G[g + j] + rec[b * 2 * H + j])
        rv = _sigmoid(G[g + H + j] + rec[b * 2 * H + H + j])
        G[g + j] = zv
        G[g + H + j] = rv
        rh[e] = rv * h[e]


@kernel
def _gru_n(G, recn, h, ys, t, T, H, n):
    H3 = 3 * H
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        g = (b * T + t) * H3
        nv = math.tanh(G[g + 2 * H + j] + recn[e])
        G[g + 2 * H + j] = nv
        zv = G[g + j]
        hn = (1.0 - zv) * h[e] + zv * nv
        h[e] = hn
        ys[(b * T + t) * H + j] = hn


def gru_forward(xs, h0, wz, bz, wr, br, wn, bn, reverse, ys, hT, saveG, ws):
    # xs (B, T, D), h0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H), hT (B, H),
    # saveG (B, T, 3H) gate activations [z|r|n]
    B, T, D = xs.shape
    H = h0.shape[1]
    for wgate in (wz, wr, wn):
        _check_gate(wgate, H, D)
    H3 = 3 * H
    w = flat(ws)
    o = 0
    Wx = w[o:o + H3 * D]
    o += H3 * D
    Whzr = w[o:o + 2 * H * H]
    o += 2 * H * H
    Whn = w[o:o + H * H]
    o += H * H
    rec = w[o:o + 2 * B * H]
    o += 2 * B * H
    rh = w[o:o + B * H]
    o += B * H
    recn = w[o:o + B * H]
    _gru_pack(wz, wr, wn, H, D, Wx, Whzr, Whn)
    G2 = saveG.reshape(B * T, H3)
    gemm(mat(xs), mat(Wx, trans=True, ld=D), mat(G2), B * T, H3, D)
    for k, b in enumerate((bz, br, bn)):
        _bias(G2, b, k, H)
    h = hT
    _copy(h, h0)
    for s in range(T):
        t = _step(s, T, reverse)
        gemm(mat(h), mat(Whzr, trans=True, ld=H), mat(rec, ld=2 * H), B, 2 * H, H)
        launch(_gru_zr, B * H, flat(saveG), rec, flat(h), rh, t, T, H, B * H)
        gemm(mat(rh, ld=H), mat(Whn, trans=True, ld=H), mat(recn, ld=H), B, H, H)  # waits for r
        launch(_gru_n, B * H, flat(saveG), recn, flat(h), flat(ys), t, T, H, B * H)


def _gru_pack(wz, wr, wn, H, D, Wx, Whzr, Whn):
    # Wx (3H, D) rows [z|r|n] of the x columns; Whzr (2H, H) rows [z|r] and Whn (H, H) of the h columns
    _pack_gate(wz, 0, H, D, Whzr, Wx)
    _pack_gate(wr, 1, H, D, Whzr, Wx)
    _pack_gate(wn, 0, H, D, Whn, Wx[2 * H * D:])


@kernel
def _gru_bwd_a(G, Hp, gys, dh, dhd, dzr, dn, dN, t, T, H, n):
    H3 = 3 * H
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        g = (b * T + t) * H3
        k = (b * T + t) * H + j
        zv = G[g + j]
        nv = G[g + 2 * H + j]
        dht = dh[e] + gys[k]
        dhd[e] = dht * (1.0 - zv)  # h' = (1 - z) h + z n: the direct path to h
        dzr[b * 2 * H + j] = dht * (nv - Hp[k]) * zv * (1.0 - zv)
        a = dht * zv * (1.0 - nv * nv)
        dn[e] = a
        dN[k] = a


@kernel
def _gru_bwd_b(G, Hp, drh, dhd, dzr, dZR, t, T, H, n):
    H3 = 3 * H
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e // H
        j = e - b * H
        g = (b * T + t) * H3
        k = (b * T + t) * H + j
        rv = G[g + H + j]
        dzr[b * 2 * H + H + j] = drh[e] * Hp[k] * rv * (1.0 - rv)
        dhd[e] += drh[e] * rv
        o = (b * T + t) * 2 * H
        dZR[o + j] = dzr[b * 2 * H + j]
        dZR[o + H + j] = dzr[b * 2 * H + H + j]


@kernel
def _add(dst, src, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] += src[i]


@kernel
def _gru_rh(G, Hp, RH, T, H, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = e % H
        bt = e // H
        RH[e] = G[bt * 3 * H + H + j] * Hp[e]


def gru_backward(gys, ghT, xs, h0, wz, wr, wn, ys, saveG, reverse,
                 gxs, gh0, gwz, gbz, gwr, gbr, gwn, gbn, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT (B, H); xs, h0, w*, ys, saveG as in forward
    # -> gxs (B, T, D), gh0 (B, H), gw* (H, H + D), gb* (H,) or (0,)
    B, T, D = xs.shape
    H = h0.shape[1]
    H3 = 3 * H
    w = flat(ws)
    o = 0
    Wx = w[o:o + H3 * D]
    o += H3 * D
    Whzr = w[o:o + 2 * H * H]
    o += 2 * H * H
    Whn = w[o:o + H * H]
    o += H * H
    gWxzr = w[o:o + 2 * H * D]
    o += 2 * H * D
    gWxn = w[o:o + H * D]
    o += H * D
    gWhzr = w[o:o + 2 * H * H]
    o += 2 * H * H
    gWhn = w[o:o + H * H]
    o += H * H
    dZR = w[o:o + 2 * B * T * H]
    o += 2 * B * T * H
    dN = w[o:o + B * T * H]
    o += B * T * H
    Hp = w[o:o + B * T * H]
    o += B * T * H
    RH = w[o:o + B * T * H]
    o += B * T * H
    tmp = w[o:o + B * T * D]
    o += B * T * D
    dzr = w[o:o + 2 * B * H]
    o += 2 * B * H
    dn = w[o:o + B * H]
    o += B * H
    drh = w[o:o + B * H]
    o += B * H
    dh = w[o:o + B * H]
    o += B * H
    dhd = w[o:o + B * H]
    _gru_pack(wz, wr, wn, H, D, Wx, Whzr, Whn)
    _prev(ys, h0, reverse, Hp)
    _copy(dh, flat(ghT))
    sg, sh, sy = flat(saveG), flat(Hp), flat(gys)
    for s in range(T - 1, -1, -1):
        t = _step(s, T, reverse)
        launch(_gru_bwd_a, B * H, sg, sh, sy, dh, dhd, dzr, dn, dN, t, T, H, B * H)
        gemm(mat(dn, ld=H), mat(Whn, ld=H), mat(drh, ld=H), B, H, H)  # gradient of r * h
        launch(_gru_bwd_b, B * H, sg, sh, drh, dhd, dzr, dZR, t, T, H, B * H)
        gemm(mat(dzr, ld=2 * H), mat(Whzr, ld=H), mat(dh, ld=H), B, H, 2 * H)  # z and r see h through Whzr
        launch(_add, B * H, dh, dhd, B * H)
    if need_gh0:
        _copy(flat(gh0), dh)
    launch(_gru_rh, B * T * H, sg, sh, RH, T, H, B * T * H)
    gemm(mat(dZR, trans=True, ld=2 * H), mat(xs), mat(gWxzr, ld=D), 2 * H, D, B * T)
    gemm(mat(dN, trans=True, ld=H), mat(xs), mat(gWxn, ld=D), H, D, B * T)
    gemm(mat(dZR, trans=True, ld=2 * H), mat(Hp, ld=H), mat(gWhzr, ld=H), 2 * H, H, B * T)
    gemm(mat(dN, trans=True, ld=H), mat(RH, ld=H), mat(gWhn, ld=H), H, H, B * T)
    _unpack_gate(gWhzr, gWxzr, 0, H, D, gwz)
    _unpack_gate(gWhzr, gWxzr, 1, H, D, gwr)
    _unpack_gate(gWhn, gWxn, 0, H, D, gwn)
    dZR2 = dZR.reshape(B * T, 2 * H)
    _bias_grad(dZR2, 0, H, gbz)
    _bias_grad(dZR2, 1, H, gbr)
    _bias_grad(dN.reshape(B * T, H), 0, H, gbn)
    if need_gx:
        gemm(mat(dZR, ld=2 * H), mat(Wx, ld=D), mat(gxs), B * T, D, 2 * H)
        gemm(mat(dN, ld=H), Mat_rows(Wx, 2 * H, D), mat(tmp, ld=D), B * T, D, H)
        launch(_add, B * T * D, flat(gxs), tmp, B * T * D)


def Mat_rows(W, r0, ld):
    """Rows r0.. of a row-major matrix with row stride `ld`, as a GEMM operand."""
    return mat(W, off=r0 * ld, ld=ld)
