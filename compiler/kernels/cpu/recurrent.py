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
    LSTM  saveG (B, T, 4H): gate activations [f | i | o | g] per step;  saveC (B, T, H): cell states c_t
    GRU   saveG (B, T, 3H): gate activations [z | r | n] per step
    RNN   none (tanh' comes from ys)

Strategy: the input term of every gate at every step is one GEMM, (B*T, D) @ Wx.T, written straight into the
gate save buffer (for the RNN into ys), where each step then adds its recurrent GEMM h_{t-1} @ Wh.T and
applies the gate arithmetic in one fused loop, in place. The gate weights are packed into stacked contiguous
matrices in ``ws`` (Wh (G*H, H) and Wx (G*H, D)) so both GEMMs cover all gates at once. Backward walks the
steps in reverse processing order, keeps dh/dc per step, stores the pre-activation gradients of every step
and then forms all weight gradients and the xs gradient with a few GEMMs over B*T rows (which split their
rows: ``_common.pdot``). The LSTM's steps run in parallel within each step: its recurrent GEMM covers the
whole batch with its rows (gates) split over the lanes, then the lanes split the batch for the gate loops.
(Lanes that each ran the whole recurrence of a share of the batch, with no sync between steps, were 1.5-2x
slower: a GEMM of a few rows runs at a fraction of BLAS's rate.)
"""


import numpy as np
from numba import njit, prange

from . import fastmath as fm
from ._common import _SPLIT_MACS, LANES, add_bias, bias_grad, carve, pdot, pdot_tn

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
    # rows k*H.. of gWh (G*H, H) and gWx (G*H, D) -> gate weight gradient gw (H, H + D)
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

def lstm_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_forward``: packed Wh (4H, H) and Wx (4H, D), one step's recurrent term
    gate-major and batch-major."""
    return 4 * H * H + 4 * H * D + 8 * B * H


def lstm_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_backward``: packed weights (Wh also transposed) and their gradients, the
    gate gradients and previous states of every step, and one step's dgates, dh, dc and dh gate-major."""
    return 2 * (4 * H * H + 4 * H * D) + 4 * H * H + 4 * B * T * H + B * T * H + 4 * B * H + 3 * B * H


@njit(cache=True, error_model="numpy")
def _step_lanes(B, H):
    # lanes of one recurrent step: its GEMM (B, H) x (H, 4H) must give each lane enough work for a launch
    return max(1, min(LANES, (4 * H * H * B) // _SPLIT_MACS))


@njit(cache=True, error_model="numpy")
def _lstm_pack(wf, wi, wo, wg, H, Wh, Wx):
    # Wh (4H, H) and Wx (4H, D) rows [f|i|o|g] of the h and x columns
    _pack(wf, 0, H, Wh, Wx)
    _pack(wi, 1, H, Wh, Wx)
    _pack(wo, 2, H, Wh, Wx)
    _pack(wg, 3, H, Wh, Wx)


@njit(cache=True, error_model="numpy")
def lstm_forward(xs, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC, ws):
    # xs (B, T, D), h0/c0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H), hT/cT (B, H),
    # saveG (B, T, 4H) gate activations [f|i|o|g], saveC (B, T, H) cell states; ws lstm_forward_workspace_size
    B, T, D = xs.shape
    H = h0.shape[1]
    _check_gate(wf, H, D)
    _check_gate(wi, H, D)
    _check_gate(wo, H, D)
    _check_gate(wg, H, D)
    H4 = 4 * H
    Wh, o = carve(ws, 0, (H4, H))
    Wx, o = carve(ws, o, (H4, D))
    recT, o = carve(ws, o, (H4, B))
    rec = carve(ws, o, (B, H4))[0]
    _lstm_pack(wf, wi, wo, wg, H, Wh, Wx)
    G2 = saveG.reshape(B * T, H4)
    pdot(xs.reshape(B * T, D), Wx.T, G2)  # input term of every gate and step at once
    add_bias(G2, bf, 0, H)
    add_bias(G2, bi, 1, H)
    add_bias(G2, bo, 2, H)
    add_bias(G2, bg, 3, H)
    _copy2(h0, hT)  # the running state lives in hT / cT
    _copy2(c0, cT)
    _lstm_fwd_steps(_step_lanes(B, H), reverse, Wh, saveG, saveC, ys, hT, cT, recT, rec)


@njit(cache=True, error_model="numpy")
def _lstm_fwd_steps(nl, reverse, Wh, saveG, saveC, ys, h, c, recT, rec):
    # Wh (4H, H), saveG (B, T, 4H) holding the input terms, h/c (B, H) the running state -> every step in place.
    # Each step's recurrent GEMM covers the whole batch, gate-major (Wh @ h.T, its rows split over the lanes),
    # then the lanes split the batch for the gate arithmetic. For the char-LSTM (B 32, H 256, T 64) on 2
    # cores: 19 ms, where lanes each running the whole recurrence of half the batch took 28-32 ms (GEMMs of 16
    # rows run at a third of the rate) and one thread 30 ms.
    fast = saveG.itemsize == 4  # a constant of the compiled kernel, so the loops vectorise
    B, T = saveG.shape[0], saveG.shape[1]
    for s in range(T):
        t = T - 1 - s if reverse else s
        if nl <= 1:
            np.dot(Wh, h.T, recT)
            _lstm_fwd_gates(0, B, t, saveG, saveC, ys, h, c, recT, rec, fast)
        else:
            _lstm_fwd_step_lanes(nl, t, Wh, saveG, saveC, ys, h, c, recT, rec, fast)


@njit(cache=True, error_model="numpy", parallel=True)
def _lstm_fwd_step_lanes(nl, t, Wh, saveG, saveC, ys, h, c, recT, rec, fast):
    H4 = Wh.shape[0]
    B = h.shape[0]
    for lane in prange(nl):
        r0 = lane * H4 // nl
        r1 = (lane + 1) * H4 // nl
        np.dot(Wh[r0:r1], h.T, recT[r0:r1])
    for lane in prange(nl):
        _lstm_fwd_gates(lane * B // nl, (lane + 1) * B // nl, t, saveG, saveC, ys, h, c, recT, rec, fast)


@njit(cache=True, error_model="numpy")
def _lstm_fwd_gates(b0, b1, t, saveG, saveC, ys, h, c, recT, rec, fast):
    # step t of examples b0 .. b1-1: recT (4H, B) recurrent term -> their rows of saveG, saveC, ys, h, c.
    # recT is copied batch-major first: the gate loops reading it strided were the slower half of a step.
    H = h.shape[1]
    for k in range(4 * H):
        for b in range(b0, b1):
            rec[b, k] = recT[k, b]
    for b in range(b0, b1):
        # a few arrays per loop, so LLVM can rule out aliasing and vectorise (one fused loop over nine
        # arrays ran scalar: 17 ms of a 35 ms char-LSTM forward)
        g = saveG[b, t]
        r = rec[b]
        for j in range(3 * H):
            g[j] = fm.sigmoid(g[j] + r[j], fast)
        gg = g[3 * H:]  # a view from 0: LLVM vectorises range(n) but not range(lo, hi) here
        rg = r[3 * H:]
        for j in range(H):
            gg[j] = fm.tanh(gg[j] + rg[j], fast)
        cb = c[b]
        sc = saveC[b, t]
        for j in range(H):
            cn = g[j] * cb[j] + g[H + j] * g[3 * H + j]
            cb[j] = cn
            sc[j] = cn
        hb = h[b]
        yb = ys[b, t]
        for j in range(H):
            hn = g[2 * H + j] * fm.tanh(sc[j], fast)
            hb[j] = hn
            yb[j] = hn


@njit(cache=True, error_model="numpy")
def lstm_backward(gys, ghT, gcT, xs, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse,
                  gxs, gh0, gc0, gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT/gcT (B, H); xs, h0, c0, w*, ys, saveG, saveC as in forward
    # -> gxs (B, T, D), gh0/gc0 (B, H), gw* (H, H + D), gb* (H,) or (0,); ws lstm_backward_workspace_size
    B, T, D = xs.shape
    H = h0.shape[1]
    H4 = 4 * H
    Wh, o = carve(ws, 0, (H4, H))
    Wx, o = carve(ws, o, (H4, D))
    WhT, o = carve(ws, o, (H, H4))
    gWh, o = carve(ws, o, (H4, H))
    gWx, o = carve(ws, o, (H4, D))
    dG, o = carve(ws, o, (B, T, H4))
    Hp, o = carve(ws, o, (B, T, H))
    dcur, o = carve(ws, o, (B, H4))
    dh, o = carve(ws, o, (B, H))
    dhT, o = carve(ws, o, (H, B))
    dc = carve(ws, o, (B, H))[0]
    _lstm_pack(wf, wi, wo, wg, H, Wh, Wx)
    _copy2(Wh.T, WhT)
    _copy2(ghT, dh)
    _copy2(gcT, dc)
    _lstm_bwd_steps(_step_lanes(B, H), reverse, gys, c0, WhT, saveG, saveC, dG, dcur, dh, dc, dhT)
    if need_gh0:
        _copy2(dh, gh0)
        _copy2(dc, gc0)
    _prev_states(ys, h0, reverse, Hp)
    dG2 = dG.reshape(B * T, H4)
    pdot_tn(dG2, Hp.reshape(B * T, H), gWh)
    pdot_tn(dG2, xs.reshape(B * T, D), gWx)
    _unpack(gWh, gWx, 0, H, gwf)
    _unpack(gWh, gWx, 1, H, gwi)
    _unpack(gWh, gWx, 2, H, gwo)
    _unpack(gWh, gWx, 3, H, gwg)
    bias_grad(dG2, 0, H, gbf)
    bias_grad(dG2, 1, H, gbi)
    bias_grad(dG2, 2, H, gbo)
    bias_grad(dG2, 3, H, gbg)
    if need_gx:
        pdot(dG2, Wx, gxs.reshape(B * T, D))


@njit(cache=True, error_model="numpy")
def _lstm_bwd_steps(nl, reverse, gys, c0, WhT, saveG, saveC, dG, dcur, dh, dc, dhT):
    # BPTT of the whole batch: dh/dc (B, H) hold the gradients of the final state and are left holding those
    # of the initial one; dG (B, T, 4H) gets every step's pre-activation gradients. As in the forward, each
    # step's GEMM covers the whole batch, gate-major (dhT = Wh.T @ dcur.T, its rows split over the lanes),
    # and the lanes split the batch for the gate arithmetic: 13 ms for the char-LSTM on 2 cores, where
    # lanes of half the batch took 24-32 ms and one thread 29 ms.
    fast = saveG.itemsize == 4  # a constant of the compiled kernel, so the loops vectorise
    one = np.ones(1, saveG.dtype)[0]  # 1 in the data's dtype: a float64 1.0 would widen the float32 loops
    B, T = saveG.shape[0], saveG.shape[1]
    H = dh.shape[1]
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        tp = t + 1 if reverse else t - 1
        first = s == T - 1  # dh holds the final state's gradient; later steps take theirs from dhT
        if nl <= 1:
            _lstm_bwd_gates(0, B, t, tp, first, gys, c0, saveG, saveC, dG, dcur, dh, dc, dhT, fast, one)
            np.dot(WhT, dcur.T, dhT)
        else:
            _lstm_bwd_step_lanes(nl, t, tp, first, gys, c0, WhT, saveG, saveC, dG, dcur, dh, dc, dhT, fast, one)
    for j in range(H):
        for b in range(B):
            dh[b, j] = dhT[j, b]


@njit(cache=True, error_model="numpy", parallel=True)
def _lstm_bwd_step_lanes(nl, t, tp, first, gys, c0, WhT, saveG, saveC, dG, dcur, dh, dc, dhT, fast, one):
    B, H = dh.shape
    for lane in prange(nl):
        _lstm_bwd_gates(lane * B // nl, (lane + 1) * B // nl, t, tp, first, gys, c0, saveG, saveC, dG, dcur, dh,
                        dc, dhT, fast, one)
    for lane in prange(nl):
        r0 = lane * H // nl
        r1 = (lane + 1) * H // nl
        np.dot(WhT[r0:r1], dcur.T, dhT[r0:r1])  # every gate's pre-activation holds h_prev @ Wh_k.T


@njit(cache=True, error_model="numpy")
def _lstm_bwd_gates(b0, b1, t, tp, first, gys, c0, saveG, saveC, dG, dcur, dh, dc, dhT, fast, one):
    # step t of examples b0 .. b1-1: dhT (H, B) the gradient of their h_t from step t+1 (unless first)
    # -> their rows of dcur (B, 4H) and dG[:, t], dc
    T = saveG.shape[1]
    H = dh.shape[1]
    if not first:
        for j in range(H):
            for b in range(b0, b1):
                dh[b, j] = dhT[j, b]
    for b in range(b0, b1):
        # two loops over a few arrays each (see the forward): the output gate and the cell gradient, then
        # the forget, input and candidate gates; dcur is written once and copied into dG
        g = saveG[b, t]
        sc = saveC[b, t]
        cprev = saveC[b, tp] if 0 <= tp < T else c0[b]
        d = dcur[b]
        gy = gys[b, t]
        dhb = dh[b]
        dcb = dc[b]
        for j in range(H):
            ov = g[2 * H + j]
            tc = fm.tanh(sc[j], fast)
            dht = dhb[j] + gy[j]
            d[2 * H + j] = dht * tc * ov * (one - ov)
            dcb[j] = dcb[j] + dht * ov * (one - tc * tc)
        for j in range(H):
            fv = g[j]
            iv = g[H + j]
            gv = g[3 * H + j]
            dct = dcb[j]
            d[j] = dct * cprev[j] * fv * (one - fv)
            d[H + j] = dct * gv * iv * (one - iv)
            d[3 * H + j] = dct * iv * (one - gv * gv)
            dcb[j] = dct * fv
        dGr = dG[b, t]
        for k in range(4 * H):
            dGr[k] = d[k]


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
