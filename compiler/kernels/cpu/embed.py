"""Token and position kernels: embedding, unembed (tied logits), positional_encoding, positional_embedding.

Conventions (shared by every family in ``compiler/kernels/cpu``):
- ``<op>_forward`` / ``<op>_backward`` are ``@njit(cache=True, error_model="numpy")``, write into preallocated outputs and return
  nothing. Arrays are C-contiguous, batch axis first; float32 or float64 (one dtype per call); token ids are
  int64.
- Backward kernels OVERWRITE their gradient outputs; ``need_*`` flags skip gradients nobody uses (their
  output may then be a zero-size placeholder of the right rank).

Views the caller passes:
- embedding / unembed work on flattened token positions: ids ``(N,)`` with N = B*T (or B), vectors ``(N, D)``.
- positional_* work on ``(B, T, D)``; ``T <= max_len`` is the caller's shape check (the kernels re-check it
  where a table is indexed).

Tying: ``unembed(E)`` multiplies by the weight of the embedding ``E``. ``unembed_backward`` writes only its own
contribution ``gw``; the caller adds it to the embedding's weight gradient (the usual fan-out accumulation).

The sinusoidal table is computed in float64 (angles reach ``max_len`` radians, where float32 would lose the
low-order bits) and cast on the final add. ``sinusoid_table`` returns exactly the values the kernel adds.
"""

import numpy as np
from numba import njit

from ._common import copy_flat


@njit(cache=True, error_model="numpy")
def embedding_forward(ids, w, out):
    # ids (N,) int64, w (V, D) -> out (N, D) = w[ids]
    N = ids.shape[0]
    V, D = w.shape
    for n in range(N):
        k = ids[n]
        # numba does no bounds checks: a bad id would read foreign memory instead of failing
        if k < 0 or k >= V:
            raise IndexError("embedding: token id out of range")
        wr = w[k]
        o = out[n]
        for d in range(D):
            o[d] = wr[d]


@njit(cache=True, error_model="numpy")
def embedding_backward(gout, ids, gw):
    # gout (N, D), ids (N,) int64 -> gw (V, D): zeroed, then row ids[n] += gout[n] (repeated ids add up)
    N = ids.shape[0]
    V, D = gw.shape
    for v in range(V):
        for d in range(D):
            gw[v, d] = 0.0
    for n in range(N):
        k = ids[n]
        if k < 0 or k >= V:
            raise IndexError("embedding: token id out of range")
        g = gout[n]
        r = gw[k]
        for d in range(D):
            r[d] += g[d]


@njit(cache=True, error_model="numpy")
def unembed_forward(x, w, out):
    # x (N, D), w (V, D) = the tied embedding's weight -> out (N, V) = x @ w.T
    np.dot(x, w.T, out)


@njit(cache=True, error_model="numpy")
def unembed_backward(gout, x, w, gx, gw, need_gx, need_gw):
    # gout (N, V), x (N, D), w (V, D) -> gx (N, D), gw (V, D) (this use's share only: the caller adds it to
    # the embedding's weight gradient)
    if need_gx:
        np.dot(gout, w, gx)
    if need_gw:
        np.dot(gout.T, x, gw)


@njit(cache=True, error_model="numpy")
def _sinusoid_fill(table):
    # table (T, D) float64: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D))
    T, D = table.shape
    for d in range(D):
        div = 10000.0 ** ((d - d % 2) / D)  # one frequency per (sin, cos) pair
        for t in range(T):
            a = t / div
            table[t, d] = np.sin(a) if d % 2 == 0 else np.cos(a)


def sinusoid_table(T, D):
    """The float64 ``(T, D)`` sinusoidal position table that ``positional_encoding_forward`` adds."""
    table = np.empty((T, D), np.float64)
    _sinusoid_fill(table)
    return table


@njit(cache=True, error_model="numpy")
def positional_encoding_forward(x, out):
    # x (B, T, D) -> out (B, T, D) = x + PE[:T]; out may alias x. The table row is computed once per step
    # (in float64) and added to every batch row, so the cost is T*D transcendentals whatever B is.
    B, T, D = x.shape
    row = np.empty(D, np.float64)
    div = np.empty(D, np.float64)
    for d in range(D):
        div[d] = 10000.0 ** ((d - d % 2) / D)
    for t in range(T):
        for d in range(D):
            a = t / div[d]
            row[d] = np.sin(a) if d % 2 == 0 else np.cos(a)
        for b in range(B):
            xr = x[b, t]
            o = out[b, t]
            for d in range(D):
                o[d] = xr[d] + row[d]


@njit(cache=True, error_model="numpy")
def positional_encoding_backward(gout, gx):
    # gout (B, T, D) -> gx (B, T, D) = gout (the table is a constant)
    copy_flat(gout, gx)


@njit(cache=True, error_model="numpy")
def positional_embedding_forward(x, table, out):
    # x (B, T, D), table (max_len, D) -> out (B, T, D) = x + table[:T]; out may alias x
    B, T, D = x.shape
    if T > table.shape[0]:
        raise ValueError("positional_embedding: sequence longer than max_len")
    for b in range(B):
        for t in range(T):
            xr = x[b, t]
            tr = table[t]
            o = out[b, t]
            for d in range(D):
                o[d] = xr[d] + tr[d]


@njit(cache=True, error_model="numpy")
def positional_embedding_backward(gout, gx, gtable, need_gx):
    # gout (B, T, D) -> gx (B, T, D) = gout, gtable (max_len, D): rows < T the batch sum of gout, the rest 0
    B, T, D = gout.shape
    L = gtable.shape[0]
    if T > L:
        raise ValueError("positional_embedding: sequence longer than max_len")
    for t in range(L):
        for d in range(D):
            gtable[t, d] = 0.0
    for b in range(B):
        for t in range(T):
            g = gout[b, t]
            r = gtable[t]
            for d in range(D):
                r[d] += g[d]
    if need_gx:
        copy_flat(gout, gx)
