"""Triton kernel bodies (decorated lazily by :mod:`torchlc_geo.kernels.ops`).

Feature-major layout: ``x`` is ``(n_in, B)`` row-major, ``idx``/``w`` are ``(n_out, K)`` with int32
indices; ``y`` is ``(n_out, B)``.  Accumulation is fp32 whatever the storage dtype.
"""

import triton.language as tl


def geo_gather_fwd(x_ptr, idx_ptr, w_ptr, eid_ptr, b_ptr, y_ptr, n_out, B, stride_x, stride_y,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, W_EID: tl.constexpr, BLOCK_O: tl.constexpr,
                   BLOCK_B: tl.constexpr):
    # y[o, b] = sum_j w[o, j] * x[idx[o, j], b] (+ bias[o]); idx < 0 marks padding (skipped).
    # W_EID: the weight of slot (o, j) is w[eid[o, j]] (flat index), which lets the input gradient
    # run over the fan-out table without materialising the permuted weights.
    po = tl.program_id(0)
    pb = tl.program_id(1)
    o = po * BLOCK_O + tl.arange(0, BLOCK_O)
    bb = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    mo = o < n_out
    mb = bb < B
    acc = tl.zeros((BLOCK_O, BLOCK_B), dtype=tl.float32)
    if W_EID:
        # input gradient: K is the (padded) fan-out; a rolled loop measured faster here (H100)
        for j in range(K):
            src = tl.load(idx_ptr + o * K + j, mask=mo, other=-1)
            valid = mo & (src >= 0)
            e = tl.load(eid_ptr + o * K + j, mask=valid, other=0)
            w = tl.load(w_ptr + e, mask=valid, other=0.0).to(tl.float32)
            srcc = tl.where(valid, src, 0).to(tl.int64)
            xv = tl.load(x_ptr + srcc[:, None] * stride_x + bb[None, :], mask=valid[:, None] & mb[None, :],
                         other=0.0)
            acc += w[:, None] * xv.to(tl.float32)
    else:
        # forward: unrolled, so that all K row loads of a tile are in flight at once
        for j in tl.static_range(K):
            src = tl.load(idx_ptr + o * K + j, mask=mo, other=-1)
            valid = mo & (src >= 0)
            w = tl.load(w_ptr + o * K + j, mask=valid, other=0.0).to(tl.float32)
            srcc = tl.where(valid, src, 0).to(tl.int64)
            xv = tl.load(x_ptr + srcc[:, None] * stride_x + bb[None, :], mask=valid[:, None] & mb[None, :],
                         other=0.0)
            acc += w[:, None] * xv.to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + o, mask=mo, other=0.0).to(tl.float32)
        acc += bias[:, None]
    optr = y_ptr + o[:, None].to(tl.int64) * stride_y + bb[None, :]
    tl.store(optr, acc.to(y_ptr.dtype.element_ty), mask=mo[:, None] & mb[None, :])


def geo_wgrad(x_ptr, idx_ptr, gy_ptr, gw_ptr, gb_ptr, n_out, B, b_per_split, stride_x, stride_gy,
              K: tl.constexpr, K_P2: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_O: tl.constexpr,
              BLOCK_B: tl.constexpr):
    # gw[s, o, j] = sum_{b in split s} gy[o, b] * x[idx[o, j], b]   (and gb[s, o] = sum_b gy[o, b]).
    # One program per (block of outputs, batch split): the gy tile is read once for all K slots.
    po = tl.program_id(0)
    ps = tl.program_id(1)
    o = po * BLOCK_O + tl.arange(0, BLOCK_O)
    mo = o < n_out
    jj = tl.arange(0, K_P2)
    acc = tl.zeros((BLOCK_O, K_P2), dtype=tl.float32)
    accb = tl.zeros((BLOCK_O,), dtype=tl.float32)
    b_lo = ps * b_per_split
    b_hi = tl.minimum(b_lo + b_per_split, B)
    grow = gy_ptr + o[:, None].to(tl.int64) * stride_gy
    for b0 in range(b_lo, b_hi, BLOCK_B):
        bb = b0 + tl.arange(0, BLOCK_B)
        m = mo[:, None] & (bb < b_hi)[None, :]
        g = tl.load(grow + bb[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            accb += tl.sum(g, axis=1)
        for j in tl.static_range(K):
            src = tl.load(idx_ptr + o * K + j, mask=mo, other=0).to(tl.int64)
            xv = tl.load(x_ptr + src[:, None] * stride_x + bb[None, :], mask=m, other=0.0)
            s = tl.sum(g * xv.to(tl.float32), axis=1)
            acc += tl.where(jj[None, :] == j, s[:, None], 0.0)
    base = ps.to(tl.int64) * n_out
    optr = gw_ptr + (base + o[:, None]) * K + jj[None, :]
    tl.store(optr, acc.to(gw_ptr.dtype.element_ty), mask=mo[:, None] & (jj < K)[None, :])
    if HAS_BIAS:
        tl.store(gb_ptr + base + o, accb.to(gb_ptr.dtype.element_ty), mask=mo)


def geo_bwd(gy_ptr, x_ptr, ridx_ptr, reid_ptr, w_ptr, gx_ptr, idx_ptr, gw_ptr, gb_ptr, n_in, n_out, B,
            n_a, n_b, stride_gy, stride_x, stride_gx, F: tl.constexpr, K: tl.constexpr, K_P2: tl.constexpr,
            HAS_GX: tl.constexpr, HAS_GW: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_O: tl.constexpr,
            BLOCK_B: tl.constexpr):
    # The whole backward in one launch.  Programs alternate between
    #   input-gradient blocks: gx[i, :] = sum_f w.flat[reid[i, f]] * gy[ridx[i, f], :]  (fan-out table)
    #   weight-gradient blocks: gw[o, j] = sum_b gy[o, b] * x[idx[o, j], b], gb[o] = sum_b gy[o, b]
    # so that neighbouring blocks of both kinds, which read the same rows of gy, run at the same
    # time and share them through L2.
    # n_a / n_b: number of input-gradient / weight-gradient blocks (0 when not wanted)
    pid = tl.program_id(0)
    m = tl.minimum(n_a, n_b)
    inter = pid < 2 * m
    is_gx = tl.where(inter, pid % 2 == 0, n_a > n_b)
    blk = tl.where(inter, pid // 2, pid - m)
    r = blk * BLOCK_O + tl.arange(0, BLOCK_O)
    if is_gx:
        mr = r < n_in
        for b0 in range(0, B, BLOCK_B):
            bb = b0 + tl.arange(0, BLOCK_B)
            mb = bb < B
            acc = tl.zeros((BLOCK_O, BLOCK_B), dtype=tl.float32)
            for f in range(F):
                src = tl.load(ridx_ptr + r * F + f, mask=mr, other=-1)
                valid = mr & (src >= 0)
                e = tl.load(reid_ptr + r * F + f, mask=valid, other=0)
                w = tl.load(w_ptr + e, mask=valid, other=0.0).to(tl.float32)
                srcc = tl.where(valid, src, 0).to(tl.int64)
                g = tl.load(gy_ptr + srcc[:, None] * stride_gy + bb[None, :], mask=valid[:, None] & mb[None, :],
                            other=0.0)
                acc += w[:, None] * g.to(tl.float32)
            optr = gx_ptr + r[:, None].to(tl.int64) * stride_gx + bb[None, :]
            tl.store(optr, acc.to(gx_ptr.dtype.element_ty), mask=mr[:, None] & mb[None, :])
    else:
        mo = r < n_out
        jj = tl.arange(0, K_P2)
        accw = tl.zeros((BLOCK_O, K_P2), dtype=tl.float32)
        accb = tl.zeros((BLOCK_O,), dtype=tl.float32)
        grow = gy_ptr + r[:, None].to(tl.int64) * stride_gy
        for b0 in range(0, B, BLOCK_B):
            bb = b0 + tl.arange(0, BLOCK_B)
            mm = mo[:, None] & (bb < B)[None, :]
            g = tl.load(grow + bb[None, :], mask=mm, other=0.0).to(tl.float32)
            if HAS_BIAS:
                accb += tl.sum(g, axis=1)
            for j in tl.static_range(K):
                src = tl.load(idx_ptr + r * K + j, mask=mo, other=0).to(tl.int64)
                xv = tl.load(x_ptr + src[:, None] * stride_x + bb[None, :], mask=mm, other=0.0)
                s = tl.sum(g * xv.to(tl.float32), axis=1)
                accw += tl.where(jj[None, :] == j, s[:, None], 0.0)
        optr = gw_ptr + r[:, None].to(tl.int64) * K + jj[None, :]
        tl.store(optr, accw.to(gw_ptr.dtype.element_ty), mask=mo[:, None] & (jj < K)[None, :])
        if HAS_BIAS:
            tl.store(gb_ptr + r, accb.to(gb_ptr.dtype.element_ty), mask=mo)
