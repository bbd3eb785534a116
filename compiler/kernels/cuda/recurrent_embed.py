"""CUDA kernels of the LSTM fed by an embedding (``recurrent.lstm_embed_forward`` / ``_backward``): the CPU
kernels' arguments (kernels/cpu/recurrent_embed.py); here the embedding's and the LSTM's device kernels run as
they are, the vectors gathered into the workspace. Re-exported by recurrent.py with the other cells."""

from __future__ import annotations

from ._common import flat
from .embed import embedding_backward, embedding_forward
from .recurrent import lstm_backward, lstm_forward  # defined before recurrent.py imports this module


def lstm_embed_forward_workspace_size(B, T, V, D, H):
    """Elements of ``ws`` for ``lstm_embed_forward``: the CPU kernel's (lowering sizes one workspace for both
    backends), which holds what this one uses: the vectors gathered, then the plain kernel's workspace."""
    from ..cpu.recurrent_embed import lstm_embed_forward_workspace_size as cpu_size

    return cpu_size(B, T, V, D, H)


def lstm_embed_backward_workspace_size(B, T, V, D, H):
    """Elements of ``ws`` for ``lstm_embed_backward``: the CPU kernel's; this one uses the vectors and their
    gradients, then the plain kernel's workspace."""
    from ..cpu.recurrent_embed import lstm_embed_backward_workspace_size as cpu_size

    return cpu_size(B, T, V, D, H)


def lstm_embed_forward(ids, table, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC,
                       ws):
    # ids (B, T) int64, table (V, D) -> as lstm_forward(table[ids], ...). The CPU kernel's table of input terms
    # is a saving of multiply-adds on a CPU; here the embedding's and the LSTM's kernels run as they are
    B, T = ids.shape
    D = table.shape[1]
    n = B * T * D
    w = flat(ws)
    xs = w[:n].reshape(B, T, D)
    embedding_forward(flat(ids), table, xs.reshape(B * T, D))
    lstm_forward(xs, h0, c0, wf, bf, wi, bi, wo, bo, wg, bg, reverse, ys, hT, cT, saveG, saveC, w[n:])


def lstm_embed_backward(gys, ghT, gcT, ids, table, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse,
                        gtable, gh0, gc0, gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gtable, need_gh0, ws):
    # as lstm_backward, the vectors' gradients then scattered into gtable (V, D) (when need_gtable)
    B, T = ids.shape
    D = table.shape[1]
    n = B * T * D
    w = flat(ws)
    xs = w[:n].reshape(B, T, D)
    gxs = w[n:2 * n].reshape(B, T, D)
    embedding_forward(flat(ids), table, xs.reshape(B * T, D))
    lstm_backward(gys, ghT, gcT, xs, h0, c0, wf, wi, wo, wg, ys, saveG, saveC, reverse, gxs, gh0, gc0,
                  gwf, gbf, gwi, gbi, gwo, gbo, gwg, gbg, need_gtable, need_gh0, w[2 * n:])
    if need_gtable:
        embedding_backward(gxs.reshape(B * T, D), flat(ids), gtable)
