"""The ``@triton.jit`` kernels of :mod:`torchlc.kernels.jets` (imported, and Triton with them, on the
first launch: see :mod:`torchlc.kernels._lazy`)."""

import triton
import triton.language as tl


@triton.jit
def _row_offsets(r, rows_inner, stride_outer, stride_inner):
    return (r // rows_inner).to(tl.int64) * stride_outer + (r % rows_inner).to(
        tl.int64
    ) * stride_inner


@triton.jit
def _unravel4(q, n1, n2, n3):
    # (i0, i1, i2, i3) of the flat index q = ((i0·n1 + i1)·n2 + i2)·n3 + i3
    i3 = q % n3
    q = q // n3
    i2 = q % n2
    q = q // n2
    return q // n1, q % n1, i2, i3


@triton.jit
def _softmax_jet_kernel(
    p_ptr,
    o_ptr,
    n,
    rows_inner,
    so,
    si,
    ps,
    oso,
    osi,
    ops,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = cols < n
    base = _row_offsets(r, rows_inner, so, si)
    a = tl.load(p_ptr + base + cols, mask=m, other=float("-inf")).to(ACC)
    b = tl.load(p_ptr + base + ps + cols, mask=m, other=0.0).to(ACC)
    e = tl.exp(a - tl.max(a, 0))
    s = e / tl.sum(e, 0)
    t = tl.sum(tl.where(m, s * b, 0.0), 0)
    obase = _row_offsets(r, rows_inner, oso, osi)
    tl.store(o_ptr + obase + cols, s.to(o_ptr.dtype.element_ty), mask=m)
    tl.store(o_ptr + obase + ops + cols, (s * (b - t)).to(o_ptr.dtype.element_ty), mask=m)

@triton.jit
def _layer_norm_jet_kernel(
    p_ptr,
    w_ptr,
    b_ptr,
    o_ptr,
    stats_ptr,
    res_ptr,
    bias0_ptr,
    R,
    n,
    eps,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    STATS: tl.constexpr,
    HAS_RES: tl.constexpr,
    HAS_BIAS0: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = cols < n
    base = r.to(tl.int64) * n
    plane = R.to(tl.int64) * n
    x0 = tl.load(p_ptr + base + cols, mask=m, other=0.0)
    x1 = tl.load(p_ptr + plane + base + cols, mask=m, other=0.0)
    # the encoder layer's  res + (P + bias on ε⁰)  before the norm, rounded in the planes' dtype
    # at each add as the separate torch adds would be (computed in ACC: float32 for half types)
    if HAS_BIAS0:
        x0 = (x0.to(ACC) + tl.load(bias0_ptr + cols, mask=m, other=0.0).to(ACC)).to(x0.dtype)
    if HAS_RES:
        x0 = (tl.load(res_ptr + base + cols, mask=m, other=0.0).to(ACC) + x0.to(ACC)).to(x0.dtype)
        x1 = (tl.load(res_ptr + plane + base + cols, mask=m, other=0.0).to(ACC) + x1.to(ACC)).to(x1.dtype)
    x0 = x0.to(ACC)
    x1 = x1.to(ACC)
    m0 = tl.sum(x0, 0) / n
    m1 = tl.sum(x1, 0) / n
    c0 = tl.where(m, x0 - m0, 0.0)
    c1 = tl.where(m, x1 - m1, 0.0)
    r0 = 1.0 / tl.sqrt(tl.sum(c0 * c0, 0) / n + eps)
    q = r0 * r0 * r0 * (tl.sum(c0 * c1, 0) / n)
    y0 = c0 * r0
    y1 = c1 * r0 - c0 * q
    if HAS_W:
        w = tl.load(w_ptr + cols, mask=m, other=0.0).to(ACC)
        y0 = y0 * w
        y1 = y1 * w
    if HAS_B:
        y0 = y0 + tl.load(b_ptr + cols, mask=m, other=0.0).to(ACC)
    tl.store(o_ptr + base + cols, y0.to(o_ptr.dtype.element_ty), mask=m)
    tl.store(o_ptr + plane + base + cols, y1.to(o_ptr.dtype.element_ty), mask=m)
    if STATS:  # (mean planes, rstd planes) as (4, R): m0, m1, r0, −q
        tl.store(stats_ptr + r, m0.to(stats_ptr.dtype.element_ty))
        tl.store(stats_ptr + R + r, m1.to(stats_ptr.dtype.element_ty))
        tl.store(stats_ptr + 2 * R + r, r0.to(stats_ptr.dtype.element_ty))
        tl.store(stats_ptr + 3 * R + r, (-q).to(stats_ptr.dtype.element_ty))


@triton.jit
def _rows_copy_kernel(
    src_ptr,
    dst_ptr,
    bias_ptr,
    R,
    D,
    n1,
    n2,
    n3,
    n4,
    s0,
    s1,
    s2,
    s3,
    s4,
    c0,
    c1,
    c2,
    c3,
    c4,
    HAS_BIAS: tl.constexpr,
    PLANE_DIM: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # destination row r (contiguous, D values) is source row (i0, …, i4) of a 5-d strided view
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    q = r.to(tl.int64)
    i4 = q % n4
    i0, i1, i2, i3 = _unravel4(q // n4, n1, n2, n3)
    d = tl.arange(0, BLOCK_D)
    m = (r < R)[:, None] & (d < D)[None, :]
    x = tl.load(src_ptr + (i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3 + i4 * s4)[:, None] + d[None, :], mask=m)
    if HAS_BIAS:  # + bias on the rows of the ε⁰ plane, rounded once as torch's add
        if PLANE_DIM == 0:
            plane = i0
        elif PLANE_DIM == 1:
            plane = i1
        elif PLANE_DIM == 2:
            plane = i2
        elif PLANE_DIM == 3:
            plane = i3
        else:
            plane = i4
        bm = m & (plane == 0)[:, None]
        boff = (i0 * c0 + i1 * c1 + i2 * c2 + i3 * c3 + i4 * c4)[:, None] + d[None, :]
        b = tl.load(bias_ptr + boff, mask=bm, other=0.0)
        x = tl.where(bm, (x.to(ACC) + b.to(ACC)).to(x.dtype), x)
    tl.store(dst_ptr + r.to(tl.int64)[:, None] * D + d[None, :], x, mask=m)

@triton.jit
def _attention_jet_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    lse_ptr,
    L,
    S,
    H,
    REP,
    scale,
    sq_p,
    sq_b,
    sq_h,
    sq_r,
    sk_p,
    sk_b,
    sk_h,
    sk_r,
    sv_p,
    sv_b,
    sv_h,
    sv_r,
    so_p,
    so_b,
    so_h,
    so_r,
    mask_ptr,
    sm_b,
    sm_h,
    sm_r,
    sm_c,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PREC: tl.constexpr,
    HAS_MASK: tl.constexpr,
    MASK_BOOL: tl.constexpr,
    CAUSAL: tl.constexpr,
    KEYS: tl.constexpr,
    ZERO_DEAD: tl.constexpr,
    WRITE_LSE: tl.constexpr,
):
    # One (batch·head, block of query rows): the flash-attention loop over key blocks with the
    # first-order tangent carried along. With p = exp(s₀ − m) (online max m), l = Σp, u = Σ p·s₁:
    #   O₀ = Σ p v₀ / l,   O₁ = (Σ (p·s₁) v₀ + Σ p v₁) / l − (u / l)·O₀
    # which is softmax's jet s(b − Σ s·b) pushed through the second product, without writing
    # the score or weight planes out; logsumexp's jet is (m + log l, u / l). A float mask is added
    # to s₀; a bool mask marks what to ignore. Causal: key j ≤ query i (top-left aligned, as
    # torch's is_causal), and key blocks past the row block are not visited. Key/value head h // REP
    # serves query head h (grouped-query attention). ZERO_DEAD: a row with no score left gives 0
    # (as torch's _safe_softmax), where softmax of −inf throughout would give NaN.
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    hk = h // REP
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.arange(0, D)
    rm = rows < L
    qb = q_ptr + b.to(tl.int64) * sq_b + h.to(tl.int64) * sq_h + rows[:, None].to(tl.int64) * sq_r + d[None, :]
    q0 = tl.load(qb, mask=rm[:, None], other=0.0)
    q1 = tl.load(qb + sq_p, mask=rm[:, None], other=0.0)
    m = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_sum = tl.zeros((BLOCK_M,), tl.float32)
    u = tl.zeros((BLOCK_M,), tl.float32)
    acc0 = tl.zeros((BLOCK_M, D), tl.float32)
    acc1 = tl.zeros((BLOCK_M, D), tl.float32)
    if KEYS == 0:
        end = S
        if CAUSAL:  # the mask below makes it causal; this skips the key blocks it would zero out
            end = tl.minimum(S, (tl.program_id(0) + 1) * BLOCK_M)
    else:  # interpreted, KEYS = S as a constant: Triton 3.6's interpreter with NumPy 2.5 cannot take a
        end = KEYS  # loop bound passed or computed at run time (a 1-element array, not a scalar)
    k_base = k_ptr + b.to(tl.int64) * sk_b + hk.to(tl.int64) * sk_h
    v_base = v_ptr + b.to(tl.int64) * sv_b + hk.to(tl.int64) * sv_h
    for start in range(0, end, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        cm = cols < S
        kb = k_base + cols[:, None].to(tl.int64) * sk_r + d[None, :]
        vb = v_base + cols[:, None].to(tl.int64) * sv_r + d[None, :]
        k0 = tl.load(kb, mask=cm[:, None], other=0.0)
        k1 = tl.load(kb + sk_p, mask=cm[:, None], other=0.0)
        v0 = tl.load(vb, mask=cm[:, None], other=0.0)
        v1 = tl.load(vb + sv_p, mask=cm[:, None], other=0.0)
        s0 = tl.dot(q0, tl.trans(k0), input_precision=PREC) * scale
        s1 = (tl.dot(q1, tl.trans(k0), input_precision=PREC) + tl.dot(q0, tl.trans(k1), input_precision=PREC)) * scale
        if HAS_MASK:
            mb = (mask_ptr + b.to(tl.int64) * sm_b + h.to(tl.int64) * sm_h + rows[:, None].to(tl.int64) * sm_r
                  + cols[None, :].to(tl.int64) * sm_c)
            mv = tl.load(mb, mask=rm[:, None] & cm[None, :], other=0)
            if MASK_BOOL:  # added as −inf, not substituted: a NaN score stays NaN, as in torch
                s0 = s0 + tl.where(mv != 0, float("-inf"), 0.0)
            else:
                s0 = s0 + mv.to(tl.float32)
        if CAUSAL:
            s0 = s0 + tl.where(cols[None, :] <= rows[:, None], 0.0, float("-inf"))
        s0 = tl.where(cm[None, :], s0, float("-inf"))
        s1 = tl.where(cm[None, :], s1, 0.0)
        m_new = tl.maximum(m, tl.max(s0, 1))
        # rows with no score yet keep a finite reference, so that exp(−inf − ref) = 0 (not NaN)
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m - m_ref)
        p = tl.exp(s0 - m_ref[:, None])
        ps1 = p * s1
        l_sum = l_sum * alpha + tl.sum(p, 1)
        u = u * alpha + tl.sum(ps1, 1)
        pv = p.to(v0.dtype)
        acc0 = acc0 * alpha[:, None] + tl.dot(pv, v0, input_precision=PREC)
        acc1 = acc1 * alpha[:, None] + tl.dot(ps1.to(v0.dtype), v0, input_precision=PREC) + tl.dot(
            pv, v1, input_precision=PREC
        )
        m = m_new
    o0 = acc0 / l_sum[:, None]
    w1 = u / l_sum
    o1 = acc1 / l_sum[:, None] - w1[:, None] * o0
    if ZERO_DEAD:  # only rows with no score left: a NaN row (NaN inputs) stays NaN
        dead = l_sum == 0
        o0 = tl.where(dead[:, None], 0.0, o0)
        o1 = tl.where(dead[:, None], 0.0, o1)
        w1 = tl.where(dead, 0.0, w1)
    ob = o_ptr + b.to(tl.int64) * so_b + h.to(tl.int64) * so_h + rows[:, None].to(tl.int64) * so_r + d[None, :]
    tl.store(ob, o0.to(o_ptr.dtype.element_ty), mask=rm[:, None])
    tl.store(ob + so_p, o1.to(o_ptr.dtype.element_ty), mask=rm[:, None])
    if WRITE_LSE:  # planes (2, B·H, L), float32
        lb = lse_ptr + bh.to(tl.int64) * L + rows
        tl.store(lb, m + tl.log(l_sum), mask=rm)
        tl.store(lb + tl.num_programs(1).to(tl.int64) * L, w1, mask=rm)


@triton.jit
def _max_pool2d_jet_kernel(
    p_ptr, o_ptr, i_ptr, n_out, plane, C, H, W, OH, OW, sN, sC, sH, sW,
    KH, KW, SH, SW, PH, PW, DH, DW,
    CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr,
):
    # one output element per lane: its window scanned in torch's order (row by row), keeping the
    # first maximum in the field's order (ε⁰, then ε¹ on a tie); an element with a NaN coefficient
    # wins its window, the last such, as torch's `val > max || isnan(val)` scan picks it. Lanes walk
    # the outputs in their memory order (channels fastest for channels-last planes, whose reads are
    # then coalesced across channels); the input is read through its strides
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n_out
    if CHANNELS_LAST:
        n, oh, ow, c = _unravel4(offs, OH, OW, C)
    else:
        n, c, oh, ow = _unravel4(offs, C, OH, OW)
    base = n * sN + c * sC
    neg = float("-inf")
    best0 = tl.full((BLOCK,), neg, p_ptr.dtype.element_ty)
    best1 = tl.full((BLOCK,), neg, p_ptr.dtype.element_ty)
    bidx = tl.zeros((BLOCK,), tl.int64)
    have = tl.zeros((BLOCK,), tl.int1)
    nan = tl.zeros((BLOCK,), tl.int1)
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        for kw in range(KW):
            iw = ow * SW - PW + kw * DW
            ok = m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            idx = ih * W + iw
            at = base + ih * sH + iw * sW
            a0 = tl.load(p_ptr + at, mask=ok, other=neg)
            a1 = tl.load(p_ptr + plane + at, mask=ok, other=neg)
            is_nan = ok & ((a0 != a0) | (a1 != a1))
            better = ok & ~nan & ((a0 > best0) | ((a0 == best0) & (a1 > best1)) | ~have)
            take = is_nan | better
            best0 = tl.where(take, a0, best0)
            best1 = tl.where(take, a1, best1)
            bidx = tl.where(take, idx, bidx)
            have = have | ok
            nan = nan | is_nan
    tl.store(o_ptr + offs, best0, mask=m)
    tl.store(o_ptr + n_out + offs, best1, mask=m)
    tl.store(i_ptr + offs, bidx, mask=m)
