"""The fused LSTM recurrence (``recurrent.lstm_forward`` / ``recurrent.lstm_backward``; recurrent.py
documents the cells, the conventions and the arguments).

Layout: inside the kernels every per-step array is unit-major, (units, batch), so each step's GEMM runs
weight rows x batch — BLAS ran (4H, H + D) x (H + D, B) at 1.5x the rate of (B, H + D) x (H + D, 4H) (78
against 50 GFLOP/s on one core for the char-LSTM) — and the gate arithmetic then walks rows of B contiguous
elements with nothing to transpose. The steps are indexed by processing step s (t = T-1-s when reversed):
    Z     (T+1, H + D + 1, B)  the GEMM operand of step s: h_{s-1} on top of x_t on top of ones (the x rows
                               and the ones filled up front)
    saveG (T, 4H, B)           the gate activations of step s, rows [f|i|o|g] by unit (the save buffer's memory)
    saveC (T, H, B)            the cell states c_s
so the input term and the bias of each gate come out of the step's one GEMM with the recurrent term (Z holds
all three, the packed weight's last column the biases), and the gate arithmetic is pointwise.

Parallelism: the lanes split the hidden units. Lane l owns units j0 .. j1-1; its rows of the packed weight
W (4H, H + D + 1) are [f|i|o|g] of those units, so its share of the step's GEMM gives exactly what its gate
arithmetic needs and a step is one parallel region (no barrier between the GEMM and the gates). The next
step's GEMM reads all of h_s, which the region's end guarantees. The backward mirrors it: lane l forms its
units' dh from all of the previous step's gate gradients, then its units' gate gradients, in flat loops into
a (4H, B) scratch and from there into a matrix of a chunk of steps, dG (4H, chunk·B + pad), step s in its
columns (s % chunk)·B .. +B-1, where the next step's dh GEMM reads them in place (blas.gemm_ld: BLAS with
leading dimensions). When a chunk is complete, one GEMM adds dG x [h_prev, x, 1] of its steps (rows of Zc
(T·B, H + D + 1)) to the weight and bias gradients, and another forms its rows of the input gradient,
dG^T x Wx, while dG is in cache. Measured on the char-LSTM's 20 ms backward: the gate gradients kept as
(T, 4H, B) and transposed for a TN GEMM cost 0.8 ms of transposes and 0.7 ms of the slower GEMM; all steps'
(4H, T·B) at once, written a row of B at a time, 0.9 ms of write misses; the gate loops writing straight
into rows of B (no scratch), 3.5 ms, as they no longer vectorised.
"""

import numpy as np
from numba import njit, prange

from . import fastmath as fm
from ._common import _SPLIT_MACS, LANES, carve
from .blas import gemm_ld, gemm_rows


def lstm_forward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_forward``: packed W (4H, H + D + 1), biases in the last column, the GEMM
    operands Z of every step (T + 1, H + D + 1, B), ones in the last row, one step's GEMM output (4H, B) and
    c0 unit-major."""
    return 4 * H * (H + D + 1) + (T + 1) * (H + D + 1) * B + 5 * H * B


def lstm_backward_workspace_size(B, T, D, H):
    """Elements of ``ws`` for ``lstm_backward``: Wh^T (H, 4H) and Wx (4H, D) by lanes, the weight and bias
    gradients (4H, H + D + 1), the previous states and inputs of every step with a column of ones
    (T·B, H + D + 1), room for the gate gradients of every step (4H, T·B + GATE_PAD) (this kernel keeps a chunk
    of steps' there; the CUDA kernels, whose workspace lowering sizes with this, all) and those of one step
    (4H, B), the output gradients unit-major (T, H, B), the input gradients by step (T·B, D), and dh, dc and
    c0 unit-major."""
    return (4 * H * H + 4 * H * D + 4 * H * (H + D + 1) + T * B * (H + D + 1) + 4 * H * (T * B + GATE_PAD)
            + 4 * H * B + T * H * B + T * B * D + 3 * H * B)


# The backward keeps the gate gradients of a chunk of consecutive steps, (4H, chunk·B), at most GATE_SLOT
# elements (1 MiB in float32) or two steps', and adds the chunk's share to the weight (and input) gradients
# as soon as it is complete, while it is still in cache: the whole (4H, T·B) matrix, written a row of B at a
# time, 8 KiB apart, cost the char-LSTM 0.9 ms of write misses. Rows are padded by GATE_PAD elements: rows a
# multiple of 4 KiB apart would put a step's 4H rows, which the lanes write together, into the same few
# cache sets
GATE_SLOT = 1 << 18
GATE_PAD = 16


@njit(cache=True, error_model="numpy")
def gate_chunk(T, B, H):
    # steps per chunk of the backward's gate gradients: 4H·chunk·B <= max(2·4H·B, GATE_SLOT), and at least 2
    # steps (when T allows) so that a step's block is never the one the next step's lanes read while others
    # write theirs
    return max(min(T, 2), min(T, GATE_SLOT // (4 * H * B)))


@njit(cache=True, error_model="numpy")
def _step_lanes(B, H):
    # lanes of one recurrent step: its GEMM (4H, H) x (H, B) must give each lane enough work for a launch
    return max(1, min(LANES, H // 8, (4 * H * H * B) // _SPLIT_MACS))


@njit(cache=True, error_model="numpy")
def _check_gate(w, H, D):
    if w.shape[0] != H or w.shape[1] != H + D:
        raise ValueError("recurrent: gate weight must be (hidden, hidden + input)")


@njit(cache=True, error_model="numpy")
def _check_gates(wf, wi, wo, wg, H, D):
    _check_gate(wf, H, D)
    _check_gate(wi, H, D)
    _check_gate(wo, H, D)
    _check_gate(wg, H, D)


@njit(cache=True, error_model="numpy")
def _gate_row(wf, wi, wo, wg, k, j):
    # row j of gate k's weight (H + D,)
    if k == 0:
        return wf[j]
    if k == 1:
        return wi[j]
    if k == 2:
        return wo[j]
    return wg[j]


@njit(cache=True, inline="always", error_model="numpy")
def _lane_gate(task, H, nl):
    # the packing's task 4*lane + k -> (k, j0, n): gate k of the lane's units j0 .. j0+n-1
    lane = task // 4
    j0 = lane * H // nl
    return task % 4, j0, (lane + 1) * H // nl - j0


@njit(cache=True, error_model="numpy")
def _pack_lanes(wf, bf, wi, bi, wo, bo, wg, bg, H, nl, W):
    # w* (H, H + D), b* (H,) or (0,) -> W (4H, H + D + 1) rows by lanes: lane l's rows 4*j0 .. 4*j1-1 are
    # [f|i|o|g] of its units (a gate weight's row is already [h | x], as Z stacks them), the bias last (0 when
    # absent), multiplying Z's row of ones
    HD = W.shape[1] - 1
    for task in range(4 * nl):
        k, j0, n = _lane_gate(task, H, nl)
        bk = bf if k == 0 else bi if k == 1 else bo if k == 2 else bg
        for jj in range(n):
            r = 4 * j0 + k * n + jj
            src = _gate_row(wf, wi, wo, wg, k, j0 + jj)
            for c in range(HD):
                W[r, c] = src[c]
            W[r, HD] = bk[j0 + jj] if bk.shape[0] > 0 else 0.0


@njit(cache=True, error_model="numpy")
def _fill_inputs(xs, reverse, H, Z):
    # xs (B, T, D) -> the x rows of Z (T+1, H + D + 1, B): step s gets x_t; the last row of every step ones
    B, T, D = xs.shape
    for s in range(T + 1):
        ones = Z[s, H + D]
        for b in range(B):
            ones[b] = 1.0
    for s in range(T):
        t = T - 1 - s if reverse else s
        zs = Z[s]
        for b in range(B):
            x = xs[b, t]
            for d in range(D):
                zs[H + d, b] = x[d]


@njit(cache=True, error_model="numpy")
def _transpose_into(src, dst):
    # src (M, N) -> dst (N, M). A large matrix goes in 8 x 8 tiles. Otherwise one side is a compact block
    # (a step's (H, B) of Z or gyT) and the other rows far apart (a time step's rows of ys or gys, 64 KiB
    # apart, where more than 8 map to one L1 set): the loop runs along the far side's rows and strides through
    # the block in cache (3x faster than tiles for the LSTM's ys and gys)
    M, N = src.shape
    if M > 64 and N > 64:
        for m0 in range(0, M, 8):
            m1 = min(m0 + 8, M)
            for n0 in range(0, N, 8):
                n1 = min(n0 + 8, N)
                for n in range(n0, n1):
                    row = dst[n]
                    for m in range(m0, m1):
                        row[m] = src[m, n]
    elif src.strides[0] == N * src.itemsize:
        for n in range(N):
            row = dst[n]
            for m in range(M):
                row[m] = src[m, n]
    else:
        for m in range(M):
            srow = src[m]
            for n in range(N):
                dst[n, m] = srow[n]


@njit(cache=True, error_model="numpy")
def lstm_forward(xs, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC, ws):
    # xs (B, T, D), h0/c0 (B, H), w* (H, H + D), b* (H,) or (0,) -> ys (B, T, H), hT/cT (B, H),
    # saveG (T, 4H, B) gate activations, saveC (T, H, B) cell states by step; ws lstm_forward_workspace_size
    B, T, D = xs.shape
    H = h0.shape[1]
    _check_gates(wf, wi, wo, wg, H, D)
    HD = H + D
    nl = _step_lanes(B, H)
    W, o = carve(ws, 0, (4 * H, HD + 1))
    Z, o = carve(ws, o, (T + 1, HD + 1, B))
    rec, o = carve(ws, o, (4 * H, B))
    c0T = carve(ws, o, (H, B))[0]
    G = saveG.reshape(T, 4 * H, B)
    C = saveC.reshape(T, H, B)
    _pack_lanes(wf, bf, wi, bi, wo, bo, wg, bg, H, nl, W)
    _fill_inputs(xs, reverse, H, Z)
    _transpose_into(h0, Z[0, :H])
    _transpose_into(c0, c0T)
    P, ids = _no_table(ws)
    _lstm_fwd_steps(nl, W, Z, G, C, c0T, rec, P, ids, reverse)
    _transpose_into(Z[T, :H], hT)
    _transpose_into(C[T - 1], cT)
    _write_states(Z, reverse, ys)


@njit(cache=True, error_model="numpy", parallel=True)
def _write_states(Z, reverse, ys):
    # Z (T+1, H + D + 1, B) -> ys (B, T, H): h of step s is in Z[s + 1]; the steps split over the lanes
    T, H = ys.shape[1], ys.shape[2]
    for lane in prange(LANES):
        for s in range(lane * T // LANES, (lane + 1) * T // LANES):
            t = T - 1 - s if reverse else s
            _transpose_into(Z[s + 1, :H], ys[:, t])


@njit(cache=True, error_model="numpy")
def _no_table(ws):
    # (P or S, ids) of the lanes when every input term comes from the GEMM: (0, 0) both (only
    # recurrent_embed.py's table path has them; an array allocated here, not a global, so that both kernels
    # pass the same types and share one compiled step loop)
    return carve(ws, 0, (0, 0))[0], np.empty((0, 0), np.int64)


@njit(cache=True, error_model="numpy")
def _lstm_fwd_steps(nl, W, Z, G, C, c0T, rec, P, ids, reverse):
    # P (4H, V) and ids (T, B): the table path's input terms (recurrent_embed.py), else (0, 0) both
    fast = G.itemsize == 4  # float32: the vectorisable tanh/sigmoid (fastmath.py)
    T = G.shape[0]
    H = C.shape[1]
    for s in range(T):
        t = T - 1 - s if reverse else s
        if nl <= 1:
            _lstm_fwd_lane(0, H, s, t, W, Z, G, C, c0T, rec, P, ids, fast)
        else:
            _lstm_fwd_step_lanes(nl, s, t, W, Z, G, C, c0T, rec, P, ids, fast)


@njit(cache=True, error_model="numpy", parallel=True)
def _lstm_fwd_step_lanes(nl, s, t, W, Z, G, C, c0T, rec, P, ids, fast):
    H = C.shape[1]
    for lane in prange(nl):
        _lstm_fwd_lane(lane * H // nl, (lane + 1) * H // nl, s, t, W, Z, G, C, c0T, rec, P, ids, fast)


@njit(cache=True, error_model="numpy")
def _lstm_fwd_lane(j0, j1, s, t, W, Z, G, C, c0T, rec, P, ids, fast):
    # units j0 .. j1-1 at step s (time t): W rows 4*j0 .. 4*j1-1 (4n, K) x Z[s] (K, B) -> their rows of rec,
    # biases included, then of G[s] (4H, B), C[s] (H, B) and h_s in Z[s + 1]. Each gate's rows of the lane
    # are one contiguous block in rec, G, C and Z, so every loop runs flat over n·B elements (rows of B
    # elements each were loops of 32, whose set-up and alias checks cost more than their arithmetic). With a
    # table P (4H, V) the GEMM is the recurrent term alone and each example adds its token's column of P
    H = C.shape[1]
    B = C.shape[2]
    n = j1 - j0
    L = n * B
    r0 = 4 * j0
    # W's first K columns (K = Z's rows: all of them, or the table path's h columns only), in place
    gemm_ld(False, False, 4 * n, B, Z.shape[1], W[r0:], W.shape[1], Z[s], B, 0.0, rec[r0:], B)
    if P.shape[0] > 0:  # each example's input term (a pass of its own: inside the activations' loops, a row
        # of B at a time, the gather kept them from vectorising, 4.5 ms slower for the char-LSTM)
        it = ids[t]
        for r in range(r0, r0 + 4 * n):
            pr = P[r]
            rr = rec[r]
            for b in range(B):
                rr[b] += pr[it[b]]
    for k in range(3):
        _sigmoid_flat(rec[r0 + k * n:r0 + (k + 1) * n].reshape(L), G[s, k * H + j0:k * H + j1].reshape(L), fast)
    rg = rec[r0 + 3 * n:r0 + 4 * n].reshape(L)
    gg = G[s, 3 * H + j0:3 * H + j1].reshape(L)
    for e in range(L):
        gg[e] = fm.tanh(rg[e], fast)
    cp = (C[s - 1, j0:j1] if s > 0 else c0T[j0:j1]).reshape(L)
    gf = G[s, j0:j1].reshape(L)
    gi = G[s, H + j0:H + j1].reshape(L)
    cn = C[s, j0:j1].reshape(L)
    for e in range(L):
        cn[e] = gf[e] * cp[e] + gi[e] * gg[e]
    go = G[s, 2 * H + j0:2 * H + j1].reshape(L)
    hn = Z[s + 1, j0:j1].reshape(L)
    for e in range(L):
        hn[e] = go[e] * fm.tanh(cn[e], fast)


@njit(cache=True, inline="always", error_model="numpy")
def _sigmoid_flat(r, g, fast):
    for e in range(g.shape[0]):
        g[e] = fm.sigmoid(r[e], fast)


@njit(cache=True, error_model="numpy")
def lstm_backward(gys, ghT, gcT, xs, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse,
                  gxs, gh0, gc0, gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gx, need_gh0, ws):
    # gys (B, T, H), ghT/gcT (B, H); xs, h0, c0, w*, ys, saveG, saveC as in forward
    # -> gxs (B, T, D), gh0/gc0 (B, H), gw* (H, H + D), gb* (H,) or (0,); ws lstm_backward_workspace_size
    B, T, D = xs.shape
    H = h0.shape[1]
    HD = H + D
    nl = _step_lanes(B, H)
    WhT, o = carve(ws, 0, (H, 4 * H))
    Wx, o = carve(ws, o, (4 * H, D))
    gW, o = carve(ws, o, (4 * H, HD + 1))
    Zc, o = carve(ws, o, (T * B, HD + 1))
    dG, o = carve(ws, o, (4 * H, gate_chunk(T, B, H) * B + GATE_PAD))
    cur, o = carve(ws, o, (4 * H, B))
    gyT, o = carve(ws, o, (T, H, B))
    gx, o = carve(ws, o, (T * B, D))
    dh, o = carve(ws, o, (H, B))
    dc, o = carve(ws, o, (H, B))
    c0T = carve(ws, o, (H, B))[0]
    G = saveG.reshape(T, 4 * H, B)
    C = saveC.reshape(T, H, B)
    _bwd_prologue(gys, reverse, gyT, wf, wi, wo, wg, H, nl, WhT, Wx)
    _transpose_into(ghT, dh)
    _transpose_into(gcT, dc)
    _transpose_into(c0, c0T)
    S, ids = _no_table(ws)
    _prev_inputs(xs, ys, h0, reverse, Zc)
    # every weight gradient, and in the last column (Zc's ones) every bias gradient, rows in lane order, added
    # up by chunks of steps as the steps complete them; the input gradients by chunks too
    _lstm_bwd_steps(nl, need_gh0, WhT, G, C, c0T, gyT, dG, cur, dh, dc, S, ids, reverse, Zc, gW, Wx,
                    gx if need_gx else gx[:0])
    if need_gh0:
        _transpose_into(dh, gh0)
        _transpose_into(dc, gc0)
    _unpack_lanes(gW, H, nl, 0, gwf, gbf)
    _unpack_lanes(gW, H, nl, 1, gwi, gbi)
    _unpack_lanes(gW, H, nl, 2, gwo, gbo)
    _unpack_lanes(gW, H, nl, 3, gwg, gbg)
    if need_gx:
        for s in range(T):
            t = T - 1 - s if reverse else s
            for b in range(B):
                src = gx[s * B + b]
                dst = gxs[b, t]
                for d in range(D):
                    dst[d] = src[d]


@njit(cache=True, error_model="numpy", parallel=True)
def _bwd_prologue(gys, reverse, gyT, wf, wi, wo, wg, H, nl, WhT, Wx):
    # the backward's set-up, split over the lanes in one parallel region (a region of its own would cost
    # another ~2 s of cold compile): gys (B, T, H) -> gyT (T, H, B) by processing step, and the weights packed
    # for the steps (_pack_task)
    T = gyT.shape[0]
    for lane in prange(LANES):
        for s in range(lane * T // LANES, (lane + 1) * T // LANES):
            t = T - 1 - s if reverse else s
            _transpose_into(gys[:, t], gyT[s])
        for task in range(lane * 4 * nl // LANES, (lane + 1) * 4 * nl // LANES):
            _pack_task(task, wf, wi, wo, wg, H, nl, WhT, Wx)


@njit(cache=True, error_model="numpy")
def _pack_task(task, wf, wi, wo, wg, H, nl, WhT, Wx):
    # WhT (H, 4H): column 4*j0 + k*n + jj (lane order, as the backward's dgates rows) holds the h columns of
    # gate k's row j0 + jj, each gate's block of a lane transposed straight from its weight (packing the rows
    # first, as the forward does, and transposing the packed matrix cost a 1.3 MB copy more); Wx (4H, D) the
    # x columns of those rows, in the same order. This task's share: gate k of one lane (_lane_gate)
    D = Wx.shape[1]
    k, j0, n = _lane_gate(task, H, nl)
    wk = wf if k == 0 else wi if k == 1 else wo if k == 2 else wg
    r0 = 4 * j0 + k * n
    _transpose_into(wk[j0:j0 + n, :H], WhT[:, r0:r0 + n])
    for jj in range(n):
        src = wk[j0 + jj]
        row = Wx[r0 + jj]
        for d in range(D):
            row[d] = src[H + d]


@njit(cache=True, error_model="numpy")
def _prev_inputs(xs, ys, h0, reverse, Zc):
    # xs (B, T, D), ys (B, T, H), h0 (B, H) -> Zc (T*B, H + D + 1): row s*B + b is [h_{s-1}, x_t, 1] of
    # example b
    B, T, D = xs.shape
    H = ys.shape[2]
    for s in range(T):
        t = T - 1 - s if reverse else s
        tp = t + 1 if reverse else t - 1
        for b in range(B):
            z = Zc[s * B + b]
            hp = ys[b, tp] if s > 0 else h0[b]
            for j in range(H):
                z[j] = hp[j]
            x = xs[b, t]
            for d in range(D):
                z[H + d] = x[d]
            z[H + D] = 1.0


@njit(cache=True, error_model="numpy")
def _unpack_lanes(gW, H, nl, k, gw, gb):
    # gate k's rows of gW (4H, H + D + 1), in lane order (row 4*j0 + k*n + jj is unit j0 + jj of lane
    # j0 .. j0+n-1) -> gw (H, H + D) and the last column -> gb (H,) (if present)
    HD = gW.shape[1] - 1  # not gw's: a frozen weight's gradient is (0, 0), and its bias's may still be trained
    for lane in range(nl):
        j0 = lane * H // nl
        n = (lane + 1) * H // nl - j0
        for jj in range(n):
            src = gW[4 * j0 + k * n + jj]
            if gw.shape[0] > 0:
                dst = gw[j0 + jj]
                for c in range(HD):
                    dst[c] = src[c]
            if gb.shape[0] > 0:
                gb[j0 + jj] = src[HD]


@njit(cache=True, error_model="numpy")
def _lstm_bwd_steps(nl, need_gh0, WhT, G, C, c0T, gyT, dG, cur, dh, dc, S, ids, reverse, Zc, gW, Wx, gx):
    # BPTT, steps in reverse processing order: dh/dc (H, B) hold the gradients of the final state and are
    # left holding those of the initial one. dG (4H, chunk·B + pad) holds the pre-activation gradients of the
    # steps s of one chunk (s // chunk), rows in lane order, step s in columns (s % chunk)·B .. +B-1 (each
    # step's are the next one's GEMM operand, in place; a chunk's first step reads the previous chunk's last,
    # in columns 0 .. B-1, and overwrites other columns). A complete chunk adds its share to the weight
    # gradients gW (4H, K) = sum over steps of dG_s @ Zc_s (Zc (T·B, K) the GEMM operands by step) and
    # writes its rows of the input gradients gx (T·B, D) = dG_s^T @ Wx (when gx has rows). With ids (T, B)
    # (the table path, recurrent_embed.py) each example's gate gradients also add into its token's column of
    # S (4H, V)
    fast = G.itemsize == 4
    one = np.ones(1, G.dtype)[0]  # 1 in the data's dtype: a float64 1.0 would widen the float32 loops
    T = G.shape[0]
    H = dh.shape[0]
    B = dh.shape[1]
    ch = gate_chunk(T, B, H)
    for i in range(T + 1 if need_gh0 else T):
        s = T - 1 - i  # i == T only forms dh of the initial state
        t = T - 1 - s if reverse else s
        args = (s, t, i > 0, i < T, WhT, G, C, c0T, gyT, dG[:, ((s + 1) % ch) * B:],
                dG[:, (max(s, 0) % ch) * B:], cur, dh, dc, S, ids, fast, one)
        if nl <= 1:
            _lstm_bwd_lane(0, H, *args)
        else:
            _lstm_bwd_step_lanes(nl, *args)
        if i < T and s % ch == 0:  # the chunk of steps s .. s + n - 1 is complete
            n = min(ch, T - s)
            rows = Zc[s * B:(s + n) * B]
            gemm_rows(False, dG, rows, gW, 0.0 if s + n == T else 1.0)
            if gx.shape[0] > 0:
                gemm_rows(True, dG, Wx, gx[s * B:(s + n) * B], 0.0)


@njit(cache=True, error_model="numpy", parallel=True)
def _lstm_bwd_step_lanes(nl, s, t, chain, gates, WhT, G, C, c0T, gyT, dprev, dnext, cur, dh, dc, S, ids, fast,
                         one):
    H = dh.shape[0]
    for lane in prange(nl):
        _lstm_bwd_lane(lane * H // nl, (lane + 1) * H // nl, s, t, chain, gates, WhT, G, C, c0T, gyT, dprev,
                       dnext, cur, dh, dc, S, ids, fast, one)


@njit(cache=True, error_model="numpy")
def _lstm_bwd_lane(j0, j1, s, t, chain, gates, WhT, G, C, c0T, gyT, dprev, dnext, cur, dh, dc, S, ids, fast,
                   one):
    # units j0 .. j1-1 at step s: dprev (4H, B) the dgates of step s+1 by lanes (when chain; rows ld apart,
    # a block of dG) -> their rows of dh = WhT @ dprev; then (when gates) their dgates, by lanes, into cur
    # (4H, B) and from there into dnext (4H, B) (a block of dG too), and dc (and, with a table S, into the
    # tokens' columns of S). As in the forward, each gate's rows of the lane are contiguous in cur and the
    # saved states, so every loop runs flat over n·B elements; written straight into dG's rows of B, the
    # loops ran 3.5 ms slower for the char-LSTM
    H = dh.shape[0]
    B = dh.shape[1]
    n = j1 - j0
    L = n * B
    r0 = 4 * j0
    if chain:
        gemm_ld(False, False, n, B, 4 * H, WhT[j0:], 4 * H, dprev, dprev.strides[0] // dprev.itemsize, 0.0,
                dh[j0:], B)
    if not gates:
        return
    # the output gate and the cell gradient, then the forget, input and candidate gates
    dhj = dh[j0:j1].reshape(L)
    gy = gyT[s, j0:j1].reshape(L)
    go = G[s, 2 * H + j0:2 * H + j1].reshape(L)
    cn = C[s, j0:j1].reshape(L)
    dcj = dc[j0:j1].reshape(L)
    do = cur[r0 + 2 * n:r0 + 3 * n].reshape(L)
    for e in range(L):
        ov = go[e]
        tc = fm.tanh(cn[e], fast)
        dht = dhj[e] + gy[e]
        do[e] = dht * tc * ov * (one - ov)
        dcj[e] = dcj[e] + dht * ov * (one - tc * tc)
    cp = (C[s - 1, j0:j1] if s > 0 else c0T[j0:j1]).reshape(L)
    gf = G[s, j0:j1].reshape(L)
    df = cur[r0:r0 + n].reshape(L)
    for e in range(L):
        fv = gf[e]
        df[e] = dcj[e] * cp[e] * fv * (one - fv)
    gi = G[s, H + j0:H + j1].reshape(L)
    gg = G[s, 3 * H + j0:3 * H + j1].reshape(L)
    di = cur[r0 + n:r0 + 2 * n].reshape(L)
    dg = cur[r0 + 3 * n:r0 + 4 * n].reshape(L)
    for e in range(L):
        iv = gi[e]
        gv = gg[e]
        dct = dcj[e]
        di[e] = dct * gv * iv * (one - iv)
        dg[e] = dct * iv * (one - gv * gv)
    for e in range(L):
        dcj[e] = dcj[e] * gf[e]
    for r in range(r0, r0 + 4 * n):
        src = cur[r]
        dst = dnext[r]
        for b in range(B):
            dst[b] = src[b]
    if S.shape[0] > 0:
        it = ids[t]
        for r in range(r0, r0 + 4 * n):
            sr = S[r]
            dr = cur[r]
            for b in range(B):
                sr[it[b]] += dr[b]
