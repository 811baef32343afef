"""Triton kernel bodies (decorated lazily by :mod:`torchlc_geo.kernels.ops`).

Feature-major layout: ``x`` is ``(n_in, B)`` row-major, ``idx``/``w`` are ``(n_out, K)`` with int32
indices; ``y`` is ``(n_out, B)``.  Accumulation is fp32 whatever the storage dtype.
"""

import triton.language as tl


def geo_gather_fwd(x_ptr, idx_ptr, w_ptr, b_ptr, y_ptr, n_out, B, stride_x, stride_y,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_O: tl.constexpr,
                   BLOCK_B: tl.constexpr):
    # y[o, b] = sum_j w[o, j] * x[idx[o, j], b] (+ bias[o]); idx < 0 marks padding (skipped)
    po = tl.program_id(0)
    pb = tl.program_id(1)
    o = po * BLOCK_O + tl.arange(0, BLOCK_O)
    bb = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    mo = o < n_out
    mb = bb < B
    acc = tl.zeros((BLOCK_O, BLOCK_B), dtype=tl.float32)
    for j in range(K):
        src = tl.load(idx_ptr + o * K + j, mask=mo, other=-1)
        w = tl.load(w_ptr + o * K + j, mask=mo, other=0.0).to(tl.float32)
        valid = src >= 0
        srcc = tl.where(valid, src, 0).to(tl.int64)
        xv = tl.load(x_ptr + srcc[:, None] * stride_x + bb[None, :],
                     mask=(mo & valid)[:, None] & mb[None, :], other=0.0)
        acc += w[:, None] * xv.to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + o, mask=mo, other=0.0).to(tl.float32)
        acc += bias[:, None]
    optr = y_ptr + o[:, None].to(tl.int64) * stride_y + bb[None, :]
    tl.store(optr, acc.to(y_ptr.dtype.element_ty), mask=mo[:, None] & mb[None, :])


def geo_wgrad(x_ptr, idx_ptr, gy_ptr, gw_ptr, n_out, B, stride_x, stride_gy,
              K: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_B: tl.constexpr):
    # gw[o, j] = sum_b gy[o, b] * x[idx[o, j], b]; one program per (block of outputs, slot j)
    po = tl.program_id(0)
    j = tl.program_id(1)
    o = po * BLOCK_O + tl.arange(0, BLOCK_O)
    mo = o < n_out
    src = tl.load(idx_ptr + o * K + j, mask=mo, other=0).to(tl.int64)
    acc = tl.zeros((BLOCK_O,), dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        bb = b0 + tl.arange(0, BLOCK_B)
        m = mo[:, None] & (bb < B)[None, :]
        g = tl.load(gy_ptr + o[:, None].to(tl.int64) * stride_gy + bb[None, :], mask=m, other=0.0)
        xv = tl.load(x_ptr + src[:, None] * stride_x + bb[None, :], mask=m, other=0.0)
        acc += tl.sum(g.to(tl.float32) * xv.to(tl.float32), axis=1)
    tl.store(gw_ptr + o * K + j, acc.to(gw_ptr.dtype.element_ty), mask=mo)
