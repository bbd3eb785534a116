"""An LSTM fed by an embedding, as one kernel pair (``recurrent.lstm_embed_forward`` / ``_backward``): what
lowering emits for ``ids -> embedding(V, D) -> lstm(H)`` when nothing else reads the embedding's vectors
(compiler/fused_rnn.py). It computes exactly ``lstm_forward(table[ids], ...)`` and its gradients, the table's
included (recurrent_lstm.py documents the cell, the layout and the lanes).

Why: every input term of the LSTM is a column of one small matrix. x_t = table[id], so the gates' input term
Wx x_t + b is column id of P = Wx table^T + b (4H, V). With fewer tokens in the vocabulary than in the batch
(V <= T·B) the kernels form P once, 4H·D·V multiply-adds instead of 4H·D·T·B, and each step's GEMM is the
recurrent term alone (K = H instead of H + D + 1). The backward mirrors it: the gate gradients of every
example add into its token's column of S (4H, V) as the steps form them, and then
    gWx = S @ table (4H, D),  gtable = S^T @ Wx (V, D),
in place of the input gradient's GEMM (T·B, 4H) x (4H, D), its scatter into the table and the x columns of
the weight gradient's GEMM. For the char-LSTM (V 65, D 64, H 256, T 64, B 32) that is 400 M of its 2.0 G
multiply-adds per training step. With more tokens in the vocabulary than in the batch, the kernels gather
table[ids] into their workspace and run the plain LSTM kernels (and the embedding's scatter).

Arguments: as lstm_forward / lstm_backward with ``xs`` replaced by ``ids (B, T)`` int64 and ``table (V, D)``,
and ``gxs`` / ``need_gx`` by ``gtable (V, D)`` / ``need_gtable`` (the table's gradient, overwritten).
"""

import numpy as np
from numba import njit

from ._common import carve
from .blas import gemm_ld
from .embed import embedding_backward, embedding_forward
from .recurrent_lstm import (
    GATE_PAD,
    _bwd_prologue,
    _check_gates,
    _lstm_bwd_steps,
    _lstm_fwd_steps,
    _pack_lanes,
    _prev_inputs,
    _step_lanes,
    _transpose_into,
    _write_states,
    gate_chunk,
    lstm_backward,
    lstm_backward_workspace_size,
    lstm_forward,
    lstm_forward_workspace_size,
)


def lstm_embed_workspace_parts(T: int, V: int, D: int, H: int, backward: bool) -> tuple[int, int]:
    """(per-example part, constant part) of the workspace: the larger of each over the two paths, so that
    ``B * per + const`` elements hold either path at any batch B."""
    if backward:
        table = (T * (H + 1) + 4 * H * T + 4 * H + T * H + 3 * H,
                 4 * H * H + 2 * 4 * H * D + 4 * H * (H + 1) + 4 * H * V + 4 * H * GATE_PAD)
        plain = (2 * T * D + lstm_backward_workspace_size(1, T, D, H) - lstm_backward_workspace_size(0, T, D, H),
                 lstm_backward_workspace_size(0, T, D, H))
    else:
        table = ((T + 1) * H + 5 * H, 4 * H * (H + D + 1) + 4 * H * V)
        plain = (T * D + lstm_forward_workspace_size(1, T, D, H) - lstm_forward_workspace_size(0, T, D, H),
                 lstm_forward_workspace_size(0, T, D, H))
    return max(table[0], plain[0]), max(table[1], plain[1])


def lstm_embed_forward_workspace_size(B, T, V, D, H):
    """Elements of ``ws`` for ``lstm_embed_forward`` (either path)."""
    per, const = lstm_embed_workspace_parts(T, V, D, H, False)
    return B * per + const


def lstm_embed_backward_workspace_size(B, T, V, D, H):
    """Elements of ``ws`` for ``lstm_embed_backward`` (either path)."""
    per, const = lstm_embed_workspace_parts(T, V, D, H, True)
    return B * per + const


@njit(cache=True, error_model="numpy")
def _table_path(B, T, V):
    # the table costs 4H·D·V multiply-adds where the inputs' GEMM costs 4H·D·T·B
    return V <= T * B


@njit(cache=True, error_model="numpy")
def _ids_by_step(ids, V):
    # ids (B, T) -> (T, B), the lanes' order, checked: numba does no bounds checks, and a bad id would read
    # foreign memory instead of failing
    B, T = ids.shape
    idsT = np.empty((T, B), np.int64)
    for b in range(B):
        for t in range(T):
            k = ids[b, t]
            if k < 0 or k >= V:
                raise IndexError("embedding: token id out of range")
            idsT[t, b] = k
    return idsT


@njit(cache=True, error_model="numpy")
def lstm_embed_forward(ids, table, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC,
                       ws):
    # ids (B, T) int64, table (V, D), h0/c0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H),
    # hT/cT (B, H), saveG (T, 4H, B), saveC (T, H, B), as lstm_forward(table[ids], ...)
    B, T = ids.shape
    V, D = table.shape
    H = h0.shape[1]
    idsT = _ids_by_step(ids, V)
    if not _table_path(B, T, V):
        xs, o = carve(ws, 0, (B, T, D))
        embedding_forward(ids.reshape(B * T), table, xs.reshape(B * T, D))
        lstm_forward(xs, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC, ws[o:])
        return
    _check_gates(wf, wi, wo, wg, H, D)
    HD = H + D
    nl = _step_lanes(B, H)
    Wp, o = carve(ws, 0, (4 * H, HD + 1))
    P, o = carve(ws, o, (4 * H, V))
    Z, o = carve(ws, o, (T + 1, H, B))
    rec, o = carve(ws, o, (4 * H, B))
    c0T = carve(ws, o, (H, B))[0]
    G = saveG.reshape(T, 4 * H, B)
    C = saveC.reshape(T, H, B)
    _pack_lanes(wf, bf, wi, bi, wo, bo, wg, bg, H, nl, Wp)
    # P = Wx table^T from Wp's x columns in place; the steps' GEMMs read its h columns in place too
    gemm_ld(False, True, 4 * H, V, D, Wp[:, H:], HD + 1, table, D, 0.0, P, V)
    for r in range(4 * H):
        bias = Wp[r, HD]
        pr = P[r]
        for v in range(V):
            pr[v] += bias
    _transpose_into(h0, Z[0])
    _transpose_into(c0, c0T)
    _lstm_fwd_steps(nl, Wp, Z, G, C, c0T, rec, P, idsT, reverse)
    _transpose_into(Z[T], hT)
    _transpose_into(C[T - 1], cT)
    _write_states(Z, reverse, ys)


@njit(cache=True, error_model="numpy")
def lstm_embed_backward(gys, ghT, gcT, ids, table, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse,
                        gtable, gh0, gc0, gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gtable, need_gh0, ws):
    # gys (B, T, H), ghT/gcT (B, H); ids, table, h0, c0, w*, ys, saveG, saveC as in forward
    # -> gtable (V, D) (when need_gtable), gh0/gc0 (B, H), gw* (H, H + D), gb* (H,) or (0,)
    B, T = ids.shape
    V, D = table.shape
    H = h0.shape[1]
    idsT = _ids_by_step(ids, V)
    if not _table_path(B, T, V):
        xs, o = carve(ws, 0, (B, T, D))
        gxs, o = carve(ws, o, (B, T, D))
        embedding_forward(ids.reshape(B * T), table, xs.reshape(B * T, D))
        lstm_backward(gys, ghT, gcT, xs, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse, gxs, gh0, gc0,
                      gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gtable, need_gh0, ws[o:])
        if need_gtable:
            embedding_backward(gxs.reshape(B * T, D), ids.reshape(B * T), gtable)
        return
    nl = _step_lanes(B, H)
    WhT, o = carve(ws, 0, (H, 4 * H))
    Wx, o = carve(ws, o, (4 * H, D))
    gW, o = carve(ws, o, (4 * H, H + 1))
    gWx, o = carve(ws, o, (4 * H, D))
    S, o = carve(ws, o, (4 * H, V))
    Zc, o = carve(ws, o, (T * B, H + 1))
    dG, o = carve(ws, o, (4 * H, gate_chunk(T, B, H) * B + GATE_PAD))
    cur, o = carve(ws, o, (4 * H, B))
    gyT, o = carve(ws, o, (T, H, B))
    dh, o = carve(ws, o, (H, B))
    dc, o = carve(ws, o, (H, B))
    c0T = carve(ws, o, (H, B))[0]
    G = saveG.reshape(T, 4 * H, B)
    C = saveC.reshape(T, H, B)
    for r in range(4 * H):
        for v in range(V):
            S[r, v] = 0.0
    _bwd_prologue(gys, reverse, gyT, wf, wi, wo, wg, H, nl, WhT, Wx)
    _transpose_into(ghT, dh)
    _transpose_into(gcT, dc)
    _transpose_into(c0, c0T)
    # the recurrent weights' and the biases' gradients, by chunks of steps: [h_prev, 1] of every step, as the
    # plain kernel's operand without its x columns (an input of width 0)
    _prev_inputs(carve(ws, 0, (B, T, 0))[0], ys, h0, reverse, Zc)
    _lstm_bwd_steps(nl, need_gh0, WhT, G, C, c0T, gyT, dG, cur, dh, dc, S, idsT, reverse, Zc, gW, Wx,
                    carve(ws, 0, (0, D))[0])
    if need_gh0:
        _transpose_into(dh, gh0)
        _transpose_into(dc, gc0)
    np.dot(S, table, gWx)
    if need_gtable:
        np.dot(S.T, Wx, gtable)
    _unpack_split(gW, gWx, H, nl, 0, gwf, gbf)
    _unpack_split(gW, gWx, H, nl, 1, gwi, gbi)
    _unpack_split(gW, gWx, H, nl, 2, gwo, gbo)
    _unpack_split(gW, gWx, H, nl, 3, gwg, gbg)


@njit(cache=True, error_model="numpy")
def _unpack_split(gW, gWx, H, nl, k, gw, gb):
    # gate k's rows of gW (4H, H + 1) [h columns | bias] and gWx (4H, D), in lane order (as _unpack_lanes)
    # -> gw (H, H + D), gb (H,) (if present)
    D = gWx.shape[1]
    if gw.shape[0] == 0:  # a frozen weight: no gradient (its bias's, if trained, is in gW's last column)
        for lane in range(nl):
            j0 = lane * H // nl
            n = (lane + 1) * H // nl - j0
            for jj in range(n):
                if gb.shape[0] > 0:
                    gb[j0 + jj] = gW[4 * j0 + k * n + jj, H]
        return
    for lane in range(nl):
        j0 = lane * H // nl
        n = (lane + 1) * H // nl - j0
        for jj in range(n):
            r = 4 * j0 + k * n + jj
            src = gW[r]
            srcx = gWx[r]
            dst = gw[j0 + jj]
            for c in range(H):
                dst[c] = src[c]
            for d in range(D):
                dst[H + d] = srcx[d]
            if gb.shape[0] > 0:
                gb[j0 + jj] = src[H]
