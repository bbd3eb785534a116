"""2-D convolution (cross-correlation, as PyTorch computes it) on the device: forward and backward.

Same functions, signatures and semantics as ``kernels/cpu/conv.py`` (the workspace helpers too), on device
arrays.

- forward: an implicit GEMM per group, ``out_g (K/g, B·P·Q) = W_g (K/g, C/g·kh·kw) @ cols (C/g·kh·kw, B·P·Q)``
  with the batch folded into the columns. The column matrix is never built: the kernel's shared-memory tile
  of it is gathered from the input (zero outside the padded input) as it is loaded. The bias is added on
  the store. One launch for every sample and group.
- weight gradient: the same implicit GEMM the other way, ``gW_g = gout_g (K/g, B·P·Q) @ cols^T``, summed
  over the batch inside the product.
- input gradient: for a 1×1, stride-1, unpadded conv it is the GEMM ``W_g^T @ gout_g`` batched over the
  samples; otherwise one thread per input element gathers its contributions (col2im fused with the product:
  the (k, i, j) that reach it), with no atomics and no workspace.
- bias gradient: a block reduction per output channel.

``ws`` is accepted for the CPU signature (the lowering sizes it for the CPU kernels) and not used.
"""

from __future__ import annotations

from numba import cuda

from ._common import _RECORD, SIM, TILE, TK, Mat, _record, flat, gemm, kernel, launch, scratch, sum_lines
from .util import zero


def conv2d_workspace_size(C, K, kh, kw, P, Q, groups=1, stride_h=1, stride_w=1, pad_h=0, pad_w=0,
                          dil_h=1, dil_w=1, lanes=None):
    """Elements of ``ws`` that ``conv2d_forward`` needs on the device: none (implicit GEMM; the CPU's lanes do
    not apply)."""
    return 0


def conv2d_backward_workspace_size(C, K, kh, kw, P, Q, groups=1, stride_h=1, stride_w=1, pad_h=0,
                                   pad_w=0, dil_h=1, dil_w=1, lanes=None):
    """Elements of ``ws`` that ``conv2d_backward`` needs on the device: none."""
    return 0


@kernel
def _conv_fwd(x, w, b, out, B, C, H, W, K, Cg, kh, kw, P, Q, sh, sw, ph, pw, dh, dw, groups, zero):
    # per group g (grid z): out[n, g*Kg + k, p, q] = sum_r w[g*Kg + k, r] * cols_g[r, (n, p, q)] + b
    sA = cuda.shared.array((TILE, TK), dtype=w.dtype)
    sB = cuda.shared.array((TK, TILE), dtype=x.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    Kg = K // groups
    ck = Cg * kh * kw
    PQ = P * Q
    ncol = B * PQ
    ntm = (Kg + TILE - 1) // TILE
    ntn = (ncol + TILE - 1) // TILE
    for g in range(cuda.blockIdx.z, groups, cuda.gridDim.z):
        for ti in range(cuda.blockIdx.y, ntm, cuda.gridDim.y):
            i = ti * TILE + ty  # output channel within the group
            for tj in range(cuda.blockIdx.x, ntn, cuda.gridDim.x):
                j = tj * TILE + tx  # column (n, p, q)
                n = j // PQ
                p = (j // Q) % P
                q = j % Q
                acc = zero
                for r0 in range(0, ck, TK):
                    for l in range(tx, TK, TILE):
                        ra = r0 + l
                        if i < Kg and ra < ck:
                            sA[ty, l] = w[(g * Kg + i) * ck + ra]
                        else:
                            sA[ty, l] = 0
                    for l in range(ty, TK, TILE):  # the column matrix, gathered from x
                        rb = r0 + l
                        v = zero
                        if rb < ck and j < ncol:
                            c = rb // (kh * kw)
                            ii = (rb // kw) % kh
                            jj = rb % kw
                            h = p * sh - ph + ii * dh
                            ww = q * sw - pw + jj * dw
                            if h >= 0 and h < H and ww >= 0 and ww < W:
                                v = x[((n * C + g * Cg + c) * H + h) * W + ww]
                        sB[l, tx] = v
                    cuda.syncthreads()
                    for kk in range(TK):
                        acc += sA[ty, kk] * sB[kk, tx]
                    cuda.syncthreads()
                if i < Kg and j < ncol:
                    k = g * Kg + i
                    s = j - n * PQ
                    v2 = acc
                    if b.size > 0:
                        v2 += b[k]
                    out[(n * K + k) * PQ + s] = v2


@kernel
def _conv_wgrad(gout, x, gw, B, C, H, W, K, Cg, kh, kw, P, Q, sh, sw, ph, pw, dh, dw, groups, zero):
    # per group g: gw[g*Kg + k, r] = sum over columns (n, p, q) of gout[n, g*Kg + k, p, q] * cols_g[r, (n, p, q)]
    sA = cuda.shared.array((TILE, TK), dtype=gout.dtype)
    sB = cuda.shared.array((TK, TILE), dtype=x.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    Kg = K // groups
    ck = Cg * kh * kw
    PQ = P * Q
    ncol = B * PQ
    ntm = (Kg + TILE - 1) // TILE
    ntn = (ck + TILE - 1) // TILE
    for g in range(cuda.blockIdx.z, groups, cuda.gridDim.z):
        for ti in range(cuda.blockIdx.y, ntm, cuda.gridDim.y):
            i = ti * TILE + ty  # output channel within the group
            for tj in range(cuda.blockIdx.x, ntn, cuda.gridDim.x):
                r = tj * TILE + tx  # weight column (c, i, j)
                c = r // (kh * kw)
                ii = (r // kw) % kh
                jj = r % kw
                acc = zero
                for j0 in range(0, ncol, TK):
                    for l in range(tx, TK, TILE):
                        ja = j0 + l
                        if i < Kg and ja < ncol:
                            n = ja // PQ
                            sA[ty, l] = gout[(n * K + g * Kg + i) * PQ + ja - n * PQ]
                        else:
                            sA[ty, l] = 0
                    for l in range(ty, TK, TILE):  # the column matrix's transpose, gathered from x
                        jb = j0 + l
                        v = zero
                        if jb < ncol and r < ck:
                            n = jb // PQ
                            p = (jb // Q) % P
                            q = jb % Q
                            h = p * sh - ph + ii * dh
                            ww = q * sw - pw + jj * dw
                            if h >= 0 and h < H and ww >= 0 and ww < W:
                                v = x[((n * C + g * Cg + c) * H + h) * W + ww]
                        sB[l, tx] = v
                    cuda.syncthreads()
                    for kk in range(TK):
                        acc += sA[ty, kk] * sB[kk, tx]
                    cuda.syncthreads()
                if i < Kg and r < ck:
                    gw[(g * Kg + i) * ck + r] = acc


@kernel
def _conv_dgrad(gout, w, gx, C, H, W, K, Cg, kh, kw, P, Q, sh, sw, ph, pw, dh, dw, groups, n_total):
    # gx[n, c, h, w] = sum over k in c's group, (i, j) with h = p*sh - ph + i*dh, w = q*sw - pw + j*dw
    Kg = K // groups
    for e in range(cuda.grid(1), n_total, cuda.gridsize(1)):
        x_w = e % W
        x_h = (e // W) % H
        c = (e // (H * W)) % C
        n = e // (C * H * W)
        g = c // Cg
        cl = c - g * Cg
        acc = 0.0
        for i in range(kh):
            hp = x_h + ph - i * dh
            if hp < 0 or hp % sh != 0:
                continue
            p = hp // sh
            if p >= P:
                continue
            for j in range(kw):
                wq = x_w + pw - j * dw
                if wq < 0 or wq % sw != 0:
                    continue
                q = wq // sw
                if q >= Q:
                    continue
                for k in range(g * Kg, (g + 1) * Kg):
                    acc += float(w[((k * Cg + cl) * kh + i) * kw + j]) * float(gout[((n * K + k) * P + p) * Q + q])
        gx[e] = acc


def _geometry(x, w, out):
    B, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    P, Q = out.shape[2], out.shape[3]
    return B, C, H, W, K, Cg, kh, kw, P, Q


def _grid(M, N, Z):
    ntm, ntn = (M + TILE - 1) // TILE, (N + TILE - 1) // TILE
    if SIM:
        return (min(ntn, 2), min(ntm, 2), min(Z, 2))
    return (min(ntn, 2**31 - 1), min(ntm, 65535), min(Z, 65535))


def conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws):
    # x (B, C, H, W), w (K, C/g, kh, kw), b (K,) or (0,) -> out (B, K, P, Q); ws unused
    B, C, H, W, K, Cg, kh, kw, P, Q = _geometry(x, w, out)
    if out.size == 0:
        return
    args = (flat(x), flat(w), b, flat(out), B, C, H, W, K, Cg, kh, kw, P, Q, stride_h,
            stride_w, pad_h, pad_w, dil_h, dil_w, groups, out.dtype.type(0))
    if _RECORD:
        _record(_conv_fwd, args)
    _conv_fwd[_grid(K // groups, B * P * Q, groups), (TILE, TILE)](*args)


def conv2d_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                    gx, gw, gb, need_gx, need_gw, ws):
    # gout (B, K, P, Q), x (B, C, H, W), w (K, C/g, kh, kw) -> gx like x, gw like w, gb (K,) or (0,)
    B, C, H, W, K, Cg, kh, kw, P, Q = _geometry(x, w, gout)
    if gb.shape[0] > 0:
        sum_lines(gout, B, K, P * Q, gb)
    if need_gw:
        if gout.size == 0:
            zero(gw)
        else:
            args = (flat(gout), flat(x), flat(gw), B, C, H, W, K, Cg, kh, kw, P, Q, stride_h, stride_w, pad_h,
                    pad_w, dil_h, dil_w, groups, gw.dtype.type(0))
            if _RECORD:
                _record(_conv_wgrad, args)
            _conv_wgrad[_grid(K // groups, Cg * kh * kw, groups), (TILE, TILE)](*args)
    if need_gx:
        direct = kh == 1 and kw == 1 and stride_h == 1 and stride_w == 1 and pad_h == 0 and pad_w == 0
        if direct:
            # gx[n] (C, HW) per group = w_g^T (Cg, Kg) @ gout[n]_g (Kg, HW): batched over (n, g)
            Kg, HW = K // groups, H * W
            gemm(Mat(w, 0, 0, Kg * Cg, 0, 1, Cg), Mat(gout, 0, K * HW, Kg * HW, 0, HW, 1),
                 Mat(gx, 0, C * HW, Cg * HW, 0, HW, 1), Cg, HW, Kg, Z=B * groups, Z2=groups)
        else:
            launch(_conv_dgrad, gx.size, flat(gout), flat(w), flat(gx), C, H, W, K, Cg, kh, kw, P, Q, stride_h,
                   stride_w, pad_h, pad_w, dil_h, dil_w, groups, gx.size)



# The CPU lowering names its own kernels for 3×3 stride-1 layers (their Winograd path, compiled only where a
# network has such a layer) and for layers with few filters (conv_direct.py's loops and conv_few.py's transposed
# columns); on the device they are the same implicit GEMM as every other convolution.
conv2d_winograd_forward = conv2d_forward
conv2d_winograd_backward = conv2d_backward
conv2d_few_forward = conv2d_forward
conv2d_few_backward = conv2d_backward


# the CPU's direct kernels apply a fused activation (conv_direct.py's ACT_* codes: 1 relu, 2 tanh, 3 sigmoid)
def _act_kernels(act):
    from . import activation

    return {1: (activation.relu_forward, activation.relu_backward),
            2: (activation.tanh_forward, activation.tanh_backward),
            3: (activation.sigmoid_forward, activation.sigmoid_backward)}.get(act)


def conv2d_direct_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, act, out, ws):
    # out = act(conv2d_forward(...)): the activation in place (the pointwise kernels allow out aliasing x)
    conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, out, ws)
    pair = _act_kernels(act)
    if pair is not None:
        pair[0](out, out)


def conv2d_direct_backward(gout, y, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, act,
                           gx, gw, gb, need_gx, need_gw, ws):
    # gout is the gradient of y = act(conv): the convolution's own goes to a reused scratch buffer, then
    # conv2d_backward
    pair = _act_kernels(act)
    if pair is not None:
        g = scratch("conv_direct_gout", gout.size, gout.dtype).reshape(gout.shape)
        pair[1](gout, y, g)
        gout = g
    conv2d_backward(gout, x, w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, gx, gw, gb, need_gx,
                    need_gw, ws)
