"""Small ``@njit`` helpers shared by the sequence kernels (recurrent.py, attention.py): carving a workspace into
buffers, adding a bias to columns and summing them into a bias gradient. None of them is an inner loop with a
float32 fast path; those stay in the kernels.

Numba's cache checks only the source file of the function it caches, and a cached kernel holds the code of the
helpers it calls: after editing this file (as after editing fastmath.py), delete the kernels' cache
(``__pycache__/*.nbi``, ``*.nbc`` here, or NUMBA_CACHE_DIR), or the callers keep running the old helpers.
"""

from numba import njit


@njit(cache=True, error_model="numpy")
def carve(ws, o, shape):
    # ws (N,) -> (the prod(shape) elements of ws from offset o as a C-contiguous array of that shape,
    # the offset just after them)
    n = 1
    for s in shape:
        n *= s
    return ws[o:o + n].reshape(shape), o + n


@njit(cache=True, error_model="numpy")
def add_bias(G2, b, k, H):
    # G2 (N, G*H) columns k*H.. += b (H,) (nothing for an absent bias)
    if b.shape[0] > 0:
        for n in range(G2.shape[0]):
            for j in range(H):
                G2[n, k * H + j] += b[j]


@njit(cache=True, error_model="numpy")
def bias_grad(dG2, k, H, gb):
    # gb (H,) = column sums of dG2 (N, G*H) columns k*H.. (nothing for an absent bias)
    if gb.shape[0] > 0:
        for j in range(H):
            gb[j] = 0.0
        for n in range(dG2.shape[0]):
            for j in range(H):
                gb[j] += dG2[n, k * H + j]
