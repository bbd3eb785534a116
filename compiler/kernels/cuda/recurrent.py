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


def _carve(w, o, *sizes):
    """Consecutive views of the flat workspace ``w`` from offset ``o``, one of each size (host code)."""
    views = []
    for n in sizes:
        views.append(w[o:o + n])
        o += n
    return views


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
    dA, Hp, dh, da = _carve(w, 0, B * T * H, B * T * H, B * H, B * H)
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
# The CPU kernel's layout (kernels/cpu/recurrent_lstm.py): every per-step array is unit-major, (units, B), and
# indexed by processing step s; W (4H, H + D) packs the gate weights gate-major, Z (T+1, H + D, B) holds
# h_{s-1} on top of x_t, so each step is one GEMM W @ Z[s] and one pointwise kernel per (unit, example).

def lstm_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_forward``: the CPU kernel's (lowering sizes one workspace for both
    backends); this kernel uses W (4H, H + D), the bias (4H,), Z (T+1, H + D, B) and one step's GEMM output."""
    return 4 * H * (H + D + 1) + (T + 1) * (H + D + 1) * B + 5 * H * B


def lstm_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_backward``: the CPU kernel's, as for the forward; this kernel uses W, the
    weight and bias gradients (4H, H + D + 1), Zc (T·B, H + D + 1), dG (4H, T·B), gx (T·B, D), dh and dc."""
    return (4 * H * H + 4 * H * D + 4 * H * (H + D + 1) + T * B * (H + D + 1) + 4 * H * (T * B + 16)
            + 4 * H * B + T * H * B + T * B * D + 3 * H * B)


@kernel
def _lstm_pack(w, b, k, H, HD, W, bias, n):
    # gate k's weight w (H, H + D) -> rows k*H.. of W (4H, H + D); its bias b (H,) or (0,) -> bias[k*H..]
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        W[k * H * HD + e] = w[e]
        if e < H:
            bias[k * H + e] = b[e] if b.size > 0 else 0.0


@kernel
def _lstm_fill(xs, h0, c0, Z, c0T, T, D, H, B, reverse, n):
    # xs (B, T, D) -> the x rows of Z (T+1, H + D, B); h0 (B, H) -> Z[0, :H]; c0 (B, H) -> c0T (H, B)
    HD = H + D
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        b = e % B
        r = e // B
        if r < T * D:
            s = r // D
            d = r - s * D
            t = T - 1 - s if reverse else s
            Z[(s * HD + H + d) * B + b] = xs[(b * T + t) * D + d]
        else:
            j = r - T * D
            Z[j * B + b] = h0[b * H + j]
            c0T[j * B + b] = c0[b * H + j]


@kernel
def _lstm_step(rec, bias, G, C, c0T, Z, ys, hT, cT, s, t, T, H, HD, B, n):
    # rec (4H, B) = W @ Z[s]: gates of step s -> G[s] (4H, B), C[s] (H, B), h_s into Z[s+1] and ys[:, t]
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = e // B
        b = e - j * B
        g = s * 4 * H * B + j * B + b
        fv = _sigmoid(rec[j * B + b] + bias[j])
        iv = _sigmoid(rec[(H + j) * B + b] + bias[H + j])
        ov = _sigmoid(rec[(2 * H + j) * B + b] + bias[2 * H + j])
        gv = math.tanh(rec[(3 * H + j) * B + b] + bias[3 * H + j])
        G[g] = fv
        G[g + H * B] = iv
        G[g + 2 * H * B] = ov
        G[g + 3 * H * B] = gv
        cp = C[((s - 1) * H + j) * B + b] if s > 0 else c0T[e]
        cn = fv * cp + iv * gv
        C[(s * H + j) * B + b] = cn
        hn = ov * math.tanh(cn)
        Z[((s + 1) * HD + j) * B + b] = hn
        ys[(b * T + t) * H + j] = hn
        if s == T - 1:
            hT[b * H + j] = hn
            cT[b * H + j] = cn


@kernel
def _transpose(src, dst, R, C, n):
    # src (R, C) -> dst (C, R): the (B, H) states to the kernels' unit-major (H, B) and back
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        c = e // R
        r = e - c * R
        dst[e] = src[r * C + c]


@kernel
def _lstm_step_bwd(G, C, c0T, gys, dh, dc, dG, s, t, T, H, B, n):
    # step s's gate pre-activation gradients -> column block s of dG (4H, T*B); dc (H, B) to the step before
    TB = T * B
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = e // B
        b = e - j * B
        g = s * 4 * H * B + j * B + b
        fv = G[g]
        iv = G[g + H * B]
        ov = G[g + 2 * H * B]
        gv = G[g + 3 * H * B]
        cp = C[((s - 1) * H + j) * B + b] if s > 0 else c0T[e]
        tc = math.tanh(C[(s * H + j) * B + b])
        dht = dh[e] + gys[(b * T + t) * H + j]
        dct = dc[e] + dht * ov * (1.0 - tc * tc)
        col = s * B + b
        dG[j * TB + col] = dct * cp * fv * (1.0 - fv)
        dG[(H + j) * TB + col] = dct * gv * iv * (1.0 - iv)
        dG[(2 * H + j) * TB + col] = dht * tc * ov * (1.0 - ov)
        dG[(3 * H + j) * TB + col] = dct * iv * (1.0 - gv * gv)
        dc[e] = dct * fv


@kernel
def _lstm_prev_inputs(xs, ys, h0, Zc, T, D, H, B, reverse, n):
    # Zc (T*B, H + D + 1): row s*B + b is [h_{s-1}, x_t, 1] of example b
    W1 = H + D + 1
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        row = e // W1
        c = e - row * W1
        s = row // B
        b = row - s * B
        t = T - 1 - s if reverse else s
        if c < H:
            tp = t + 1 if reverse else t - 1
            Zc[e] = ys[(b * T + tp) * H + c] if s > 0 else h0[b * H + c]
        elif c < H + D:
            Zc[e] = xs[(b * T + t) * D + c - H]
        else:
            Zc[e] = 1.0


@kernel
def _lstm_unpack(gW, k, H, HD, gw, gb, n):
    # rows k*H.. of gW (4H, H + D + 1) -> gw (H, H + D) and the last column -> gb (H,) (when present)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = e // HD
        c = e - j * HD
        gw[e] = gW[(k * H + j) * (HD + 1) + c]
        if c == 0 and gb.size > 0:
            gb[j] = gW[(k * H + j) * (HD + 1) + HD]


@kernel
def _lstm_scatter_gx(gx, gxs, T, D, B, reverse, n):
    # gx (T*B, D) by processing step -> gxs (B, T, D)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = e % D
        row = e // D
        s = row // B
        b = row - s * B
        t = T - 1 - s if reverse else s
        gxs[(b * T + t) * D + d] = gx[e]


def _lstm_pack_all(ws, wb, H, D):
    HD = H + D
    w = flat(ws)
    W = w[:4 * H * HD]
    bias = w[4 * H * HD:4 * H * HD + 4 * H]
    for k, (wgate, b) in enumerate(wb):
        launch(_lstm_pack, H * HD, flat(wgate), flat(b), k, H, HD, W, bias, H * HD)
    return w, W, bias


def lstm_forward(xs, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC, ws):
    # xs (B, T, D), h0/c0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H), hT/cT (B, H),
    # saveG (T, 4H, B) gate activations, saveC (T, H, B) cell states by processing step (as the CPU kernel)
    B, T, D = xs.shape
    H = h0.shape[1]
    for wgate in (wf, wi, wo, wg):
        _check_gate(wgate, H, D)
    HD = H + D
    w, W, bias = _lstm_pack_all(ws, [(wf, bf), (wi, bi), (wo, bo), (wg, bg)], H, D)
    Z, rec, c0T = _carve(w, 4 * H * HD + 4 * H, (T + 1) * HD * B, 4 * H * B, H * B)
    n = (T * D + H) * B
    launch(_lstm_fill, n, flat(xs), flat(h0), flat(c0), Z, c0T, T, D, H, B, bool(reverse), n)
    G, C = flat(saveG), flat(saveC)
    for s in range(T):
        gemm(mat(W, ld=HD), mat(Z, off=s * HD * B, ld=B), mat(rec, ld=B), 4 * H, B, HD)
        launch(_lstm_step, H * B, rec, bias, G, C, c0T, Z, flat(ys), flat(hT), flat(cT), s, _step(s, T, reverse),
               T, H, HD, B, H * B)


def lstm_backward(gys, ghT, gcT, xs, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse,
                  gxs, gh0, gc0, gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT/gcT (B, H); xs, h0, c0, w*, ys, saveG, saveC as in forward
    # -> gxs (B, T, D), gh0/gc0 (B, H), gw* (H, H + D), gb* (H,) or (0,)
    B, T, D = xs.shape
    H = h0.shape[1]
    HD = H + D
    TB = T * B
    nb = gbf[:0]
    w, W, _ = _lstm_pack_all(ws, [(x, nb) for x in (wf, wi, wo, wg)], H, D)
    gW, Zc, dG, gx, dh, dc, c0T = _carve(
        w, 4 * H * HD + 4 * H, 4 * H * (HD + 1), TB * (HD + 1), 4 * H * TB, TB * D, H * B, H * B, H * B
    )
    HB = H * B
    launch(_transpose, HB, flat(ghT), dh, B, H, HB)
    launch(_transpose, HB, flat(gcT), dc, B, H, HB)
    launch(_transpose, HB, flat(c0), c0T, B, H, HB)
    G, C = flat(saveG), flat(saveC)
    for i in range(T + 1 if need_gh0 else T):
        s = T - 1 - i  # i == T only forms dh of the initial state
        if i > 0:  # dh = Wh^T @ (step s+1's gate gradients): Wh^T is W's first H columns, transposed
            gemm(mat(W, trans=True, ld=HD), mat(dG, off=(s + 1) * B, ld=TB), mat(dh, ld=B), H, B, 4 * H)
        if i < T:
            launch(_lstm_step_bwd, HB, G, C, c0T, flat(gys), dh, dc, dG, s, _step(s, T, reverse), T, H, B, HB)
    if need_gh0:
        launch(_transpose, HB, dh, flat(gh0), H, B, HB)
        launch(_transpose, HB, dc, flat(gc0), H, B, HB)
    n = TB * (HD + 1)
    launch(_lstm_prev_inputs, n, flat(xs), flat(ys), flat(h0), Zc, T, D, H, B, bool(reverse), n)
    gemm(mat(dG, ld=TB), mat(Zc, ld=HD + 1), mat(gW, ld=HD + 1), 4 * H, HD + 1, TB)  # weights; biases last
    for k, (gw, gb) in enumerate(((gwf, gbf), (gwi, gbi), (gwo, gbo), (gwg, gbg))):
        launch(_lstm_unpack, gw.size, gW, k, H, HD, flat(gw), flat(gb), gw.size)
    if need_gx:
        gemm(mat(dG, trans=True, ld=TB), mat(W, off=H, ld=HD), mat(gx, ld=D), TB, D, 4 * H)
        launch(_lstm_scatter_gx, TB * D, gx, flat(gxs), T, D, B, bool(reverse), TB * D)


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
    Wx, Whzr, Whn, rec, rh, recn = _carve(w, 0, H3 * D, 2 * H * H, H * H, 2 * B * H, B * H, B * H)
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
    Wx, Whzr, Whn, gWxzr, gWxn, gWhzr, gWhn, dZR, dN, Hp, RH, tmp, dzr, dn, drh, dh, dhd = _carve(
        w, 0, H3 * D, 2 * H * H, H * H, 2 * H * D, H * D, 2 * H * H, H * H, 2 * B * T * H, B * T * H,
        B * T * H, B * T * H, B * T * D, 2 * B * H, B * H, B * H, B * H, B * H
    )
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


# the LSTM fed by an embedding (recurrent.lstm_embed_*), composed from the embedding's and the LSTM's kernels
from .recurrent_embed import (  # noqa: F401 - re-exported with the cells (it imports the LSTM's from here)
    lstm_embed_backward,
    lstm_embed_backward_workspace_size,
    lstm_embed_forward,
    lstm_embed_forward_workspace_size,
)
