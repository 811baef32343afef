"""One-launch row kernels for the first-order softmax and layer-norm jets (``torchlc._jet``), and a
tiled row copy for the attention jet's head split and merge (:func:`contiguous_rows`).

The torch formulas of these jets take 6 (softmax) and 12 (layer norm) kernels, each a Python call
that costs more host time than the kernel's GPU time at transformer sizes; the encoder layer's jet ran
~60 launches per layer against ~20 for PyTorch's fused kernel. Here each jet is one program per row:
both planes of the row are loaded once, the statistics are reduced in registers (float32, or float64
for float64 inputs) and both output planes are written once. The formulas are those of ``_jet``.

Rows are addressed as ``row_offset(r) = (r // rows_inner) * stride_outer + (r % rows_inner) *
stride_inner`` with the ε¹ plane at ``+ plane_stride``, so the planes may be stacked (2, R, n) or
interleaved per attention head (BH, 2, L, n) without a copy.
"""

from __future__ import annotations

import torch

from .._context import grad_free as _grad_free
from .elementwise import _DTYPES, HAVE_TRITON, INTERPRET
from .launch import launch

MAX_ROW = 8192  # longer rows (a register-resident row would spill) use the torch formulas

if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _row_offsets(r, rows_inner, stride_outer, stride_inner):
        return (r // rows_inner).to(tl.int64) * stride_outer + (r % rows_inner).to(
            tl.int64
        ) * stride_inner

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
        q = q // n4
        i3 = q % n3
        q = q // n3
        i2 = q % n2
        q = q // n2
        i1 = q % n1
        i0 = q // n1
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
        end = S
        if CAUSAL:
            end = tl.minimum(S, (tl.program_id(0) + 1) * BLOCK_M)
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


def _acc(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _ok(t: torch.Tensor, n: int, *params) -> bool:
    """Whether the kernel applies: a supported device and dtype, a row that fits, and nothing that
    autograd would have to record (the kernels have no backward: those cases use the torch formulas)."""
    return (
        HAVE_TRITON
        and (t.is_cuda or (INTERPRET and t.device.type == "cpu"))
        and t.dtype in _DTYPES
        and 0 < n <= MAX_ROW
        and _grad_free(t, *(p for p in params if p is not None))
    )


def _block(n):
    return max(16, triton.next_power_of_2(n))


def _warps(block):
    return 1 if block <= 256 else (4 if block <= 2048 else 8)


def softmax_jet(P: torch.Tensor):
    """softmax(a + bε) over the last dim = s + s·(b − Σ s·b)ε, s = softmax(a), computed in float32 (or
    float64): output planes of ``P``'s shape and dtype, or None when the kernel does not apply. ``P``
    is (2, *rows, n) with contiguous rows; the planes may be a view into an interleaved (…, 2, L, n)
    layout (as ``torchlc._jet.attention`` builds), which the output keeps."""
    n = P.shape[-1]
    if not _ok(P, n) or P.stride(-1) != 1:
        return None
    lay = _rows(P)
    if lay is None:
        return None
    R, inner, so, si, ps = lay
    # same strides as P where P is dense (interleaved planes stay interleaved), else contiguous
    out = torch.empty_like(P)
    _, _, oso, osi, ops = _rows(out)
    block = _block(n)
    launch(
        _softmax_jet_kernel,
        (R,),
        P,
        out,
        n,
        inner,
        so,
        si,
        ps,
        oso,
        osi,
        ops,
        ACC=_acc(P.dtype),
        BLOCK=block,
        num_warps=_warps(block),
    )
    return out


def layer_norm_jet(P: torch.Tensor, weight, bias, eps: float, *, stats: bool = False, residual=None, bias0=None):
    """Layer norm over the last dim of first-order planes ``P`` (2, *rows, n), contiguous, with the
    formulas of ``_jet.layer_norm``: output planes, or (out, mean planes, rstd planes) with
    ``stats``; None when the kernel does not apply. With ``residual`` planes (P's shape) and/or a
    ``bias0`` of n values it normalises residual + (P + bias0 on the ε⁰ plane), the sum rounded in
    P's dtype as by separate adds, without writing it out (the encoder layer's add & norm)."""
    n = P.shape[-1]
    if not _ok(P, n, weight, bias, residual, bias0) or not P.is_contiguous() or eps <= 0:
        return None
    if residual is not None and (residual.shape != P.shape or residual.dtype != P.dtype or not residual.is_contiguous()):
        return None
    for t in (weight, bias, bias0):
        if t is not None and (t.numel() != n or not t.is_contiguous() or t.device != P.device):
            return None
    R = P[0].numel() // n
    out = torch.empty_like(P)
    acc = torch.float64 if P.dtype == torch.float64 else torch.float32
    st = torch.empty((4, R), dtype=acc, device=P.device) if stats else out
    block = _block(n)
    launch(
        _layer_norm_jet_kernel,
        (R,),
        P,
        weight if weight is not None else P,
        bias if bias is not None else P,
        out,
        st,
        residual if residual is not None else P,
        bias0 if bias0 is not None else P,
        R,
        n,
        float(eps),
        HAS_W=weight is not None,
        HAS_B=bias is not None,
        STATS=stats,
        HAS_RES=residual is not None,
        HAS_BIAS0=bias0 is not None,
        ACC=_acc(P.dtype),
        BLOCK=block,
        num_warps=_warps(block),
    )
    if not stats:
        return out
    shape = (2, *P.shape[1:-1], 1)
    return out, st[:2].view(shape), st[2:].view(shape)


def _rows(P):
    """(rows, rows_inner, stride_outer, stride_inner, plane_stride) addressing every row of both planes
    of P (2, *rows, n), or None when the row dims do not follow that two-level pattern."""
    dims = P.shape[1:-1]
    strides = P.stride()[1:-1]
    n = P.shape[-1]
    if not dims:
        return 1, 1, 0, 0, P.stride(0)
    # the innermost row dim and everything outside it must each be regular
    inner, si = dims[-1], strides[-1]
    outer_dims, outer_strides = dims[:-1], strides[:-1]
    so = outer_strides[-1] if outer_dims else 0
    expect = so
    for d, s in zip(reversed(outer_dims), reversed(outer_strides)):
        if d != 1 and s != expect:
            return None
        expect = s * d
    rows = inner
    for d in outer_dims:
        rows *= d
    if si < n and inner > 1:
        return None
    return rows, inner, so, si, P.stride(0)


def contiguous_rows(src: torch.Tensor, bias=None, plane_dim: int = 0):
    """``src.contiguous()`` for a strided view of up to 6 dims whose last dim is contiguous, in one
    tiled copy. torch copies such permuted views (an attention layer's head split and merge) with its
    generic unvectorised kernel, at about a third of the bandwidth on an H100. With ``bias``
    (broadcastable to ``src``'s shape) it adds the bias, rounded once as torch's add, where index
    ``plane_dim`` of ``src`` is 0: on the ε⁰ plane. None when the kernel does not apply."""
    D, nd = src.shape[-1], src.dim()
    params = () if bias is None else (bias,)
    if not _ok(src, D, *params) or src.stride(-1) != 1 or not 2 <= nd <= 6:
        return None
    pad = 6 - nd
    outer = (1,) * pad + tuple(src.shape[:-1])
    strides = (0,) * pad + tuple(src.stride()[:-1])
    bstrides = (0,) * 5
    if bias is not None:
        if bias.dtype != src.dtype or bias.device != src.device:
            return None
        b = bias.expand(src.shape)
        if b.stride(-1) != 1:
            return None
        bstrides = (0,) * pad + tuple(b.stride()[:-1])
    dst = torch.empty(src.shape, dtype=src.dtype, device=src.device)
    R = dst.numel() // max(D, 1)
    if R == 0 or D == 0:
        return dst
    block_d = max(16, triton.next_power_of_2(D))
    # ~1024 values per program with 2 warps: on the H100, bf16 head split of the benchmark's encoder
    # 7.3 µs (torch's copy and add: 22 µs; 4096 values and 4 warps: 17.6 µs), head merge 3.8 µs (7.8)
    block_r = max(1, 1024 // block_d)
    launch(
        _rows_copy_kernel,
        (triton.cdiv(R, block_r),),
        src,
        dst,
        bias if bias is not None else src,
        R,
        D,
        *outer[1:],
        *strides,
        *bstrides,
        HAS_BIAS=bias is not None,
        PLANE_DIM=plane_dim + pad,
        ACC=_acc(src.dtype),
        BLOCK_R=block_r,
        BLOCK_D=block_d,
        num_warps=2,
    )
    return dst


_ATTENTION_DTYPES = (torch.float16, torch.bfloat16)


def attention_merged(Q, K, V, scale: float, mask=None):
    """First-order softmax(q·kᵀ·scale + mask)·v with heads merged: planes Q (2, B, H, L, D), K and V
    (2, B, H, S, D), to output planes (2, B, L, H·D), the out-projection's input. ``mask`` is
    MultiheadAttention's: bool marks what to ignore (a row with nothing left gives 0), float is added
    to the scores. :func:`flash_attention` with ``merge_heads``; None where it does not apply."""
    res = flash_attention(Q, K, V, scale, mask, merge_heads=True,
                          zero_dead_rows=mask is not None and mask.dtype == torch.bool)
    return None if res is None else res[0]


def attention_applies(Q, K, V, mask=None) -> bool:
    """Whether :func:`flash_attention` takes these planes, from their metadata alone (so traced code
    can decide too); autograd recording is checked separately."""
    if not (HAVE_TRITON and Q.dim() == K.dim() == V.dim() == 5):
        return False
    _, B, H, L, D = Q.shape
    Hk, S = K.shape[2], K.shape[3]
    interpreted = INTERPRET and Q.device.type == "cpu" and Q.dtype == torch.float32
    if not ((Q.is_cuda and Q.dtype in _ATTENTION_DTYPES) or interpreted) or not K.dtype == Q.dtype == V.dtype:
        return False
    if D not in (16, 32, 64, 128) or L == 0 or S == 0 or K.shape != (2, B, Hk, S, D) or V.shape != K.shape:
        return False
    if Hk == 0 or H % Hk or B * H > 65535 or any(t.stride(-1) != 1 for t in (Q, K, V)):  # grid's y limit
        return False
    if mask is not None:
        if mask.device != Q.device or not (mask.dtype == torch.bool or mask.dtype.is_floating_point):
            return False
        try:  # the mask must expand to the scores' shape (not merely broadcast with it)
            if torch.broadcast_shapes(mask.shape, (B, H, L, S)) != (B, H, L, S):
                return False
        except RuntimeError:
            return False
    return True


def flash_attention(Q, K, V, scale: float, mask=None, *, is_causal=False, merge_heads=False,
                    zero_dead_rows=False, logsumexp=False):
    """First-order softmax(q·kᵀ·scale + mask)·v in one flash-style launch: planes Q (2, B, H, L, D), K
    and V (2, B, Hk, S, D) with H a multiple of Hk (grouped-query attention) and a dense head dim.
    Returns (output planes, logsumexp planes or None): the output is (2, B, H, L, D), or (2, B, L,
    H·D) with ``merge_heads``; the logsumexp (with ``logsumexp``) is (2, B, H, L) in float32, its ε¹
    plane Σ softmax·s₁. The score and weight planes never reach memory (the torch path writes both
    and runs the softmax jet between its GEMMs). None when the kernel does not apply (then use the
    torch path).

    ``mask`` (broadcastable to (B, H, L, S)): bool marks what to *ignore*, float is added to the
    scores. ``is_causal``: query i sees keys j ≤ i (torch's top-left alignment). ``zero_dead_rows``: a
    row with no score left gives 0, as torch's ``_safe_softmax`` (else NaN, as softmax).

    Half precision only on a GPU: float32 products in full precision (torch's default) run on FMA
    units in Triton, and the encoder benchmark's float32 forward took 14.0 ms instead of 2.8 ms with
    cuBLAS. Under the CPU interpreter float32 is taken too, so that tests can check the kernel."""
    if not (attention_applies(Q, K, V, mask) and _ok(Q, Q.shape[-1], K, V, mask)):
        return None
    _, B, H, L, D = Q.shape
    Hk, S = K.shape[2], K.shape[3]
    if mask is not None:
        mask = mask.expand(B, H, L, S)
    if merge_heads:
        out = torch.empty(2, B, L, H * D, dtype=Q.dtype, device=Q.device)
        so = (out.stride(0), out.stride(1), D, out.stride(2))
    else:
        out = torch.empty(2, B, H, L, D, dtype=Q.dtype, device=Q.device)
        so = out.stride()[:4]
    lse = torch.empty(2, B, H, L, dtype=torch.float32, device=Q.device) if logsumexp else None
    # a sweep on the H100 (bf16, D 64; BLOCK_M 64/128, BLOCK_N 32/64/128, 4/8 warps, 2/3 stages) found
    # none more than 3% faster for causal L 1024 and 4096; the encoder's L 128 is launch-bound
    block_m = 64
    launch(
        _attention_jet_kernel,
        (triton.cdiv(L, block_m), B * H),
        Q,
        K,
        V,
        out,
        lse if lse is not None else out,
        L,
        S,
        H,
        H // Hk,
        float(scale),
        *(st for t in (Q, K, V) for st in t.stride()[:4]),
        *so,
        mask if mask is not None else Q,
        *(mask.stride() if mask is not None else (0, 0, 0, 0)),
        D=D,
        BLOCK_M=block_m,
        BLOCK_N=64,
        PREC="ieee" if Q.dtype == torch.float32 else "tf32",  # float32 products in full precision, as torch's
        HAS_MASK=mask is not None,
        MASK_BOOL=mask is not None and mask.dtype == torch.bool,
        CAUSAL=bool(is_causal),
        ZERO_DEAD=bool(zero_dead_rows),
        WRITE_LSE=lse is not None,
        num_warps=4,
        num_stages=3,
    )
    return out, lse
