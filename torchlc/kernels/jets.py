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

The ``@triton.jit`` bodies are in :mod:`torchlc.kernels._triton_jets`, imported (with Triton) by the
first launch; the checks of whether a kernel applies do not import Triton.
"""

from __future__ import annotations

import torch

from .._context import grad_free as _grad_free
from ._lazy import HAVE_TRITON, cdiv, kernels, next_power_of_2, triton_ready
from .elementwise import _DTYPES, INTERPRET, op_math
from .launch import launch

MAX_ROW = 8192  # longer rows (a register-resident row would spill) use the torch formulas

def _kernels():
    """The jitted kernels (:mod:`torchlc.kernels._triton_jets`; imports Triton)."""
    return kernels("_triton_jets")


def __getattr__(name: str):
    # the kernels by name (``jets._softmax_jet_kernel``), loaded on first access
    if name.startswith("_") and (name.endswith("_kernel") or name == "_row_offsets"):
        return getattr(_kernels(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def applies(t: torch.Tensor, n: int, *params) -> bool:
    """Whether the row kernels (softmax, layer norm) can take planes ``t`` with rows of ``n`` and these
    parameters, once made contiguous (see :func:`_ok`)."""
    return _ok(t, n, *params)


def _ok(t: torch.Tensor, n: int, *params) -> bool:
    """Whether the kernel applies: a supported device and dtype, a row that fits, and nothing that
    autograd would have to record (the kernels have no backward: those cases use the torch formulas)."""
    return (
        HAVE_TRITON
        and (t.is_cuda or (INTERPRET and t.device.type == "cpu"))
        and t.dtype in _DTYPES
        and 0 < n <= MAX_ROW
        and _grad_free(t, *(p for p in params if p is not None))
        and triton_ready()
    )


def _block(n):
    return max(16, next_power_of_2(n))


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
        _kernels()._softmax_jet_kernel,
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
        ACC=op_math(P.dtype),
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
        _kernels()._layer_norm_jet_kernel,
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
        ACC=op_math(P.dtype),
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
    block_d = max(16, next_power_of_2(D))
    # ~1024 values per program with 2 warps: on the H100, bf16 head split of the benchmark's encoder
    # 7.3 µs (torch's copy and add: 22 µs; 4096 values and 4 warps: 17.6 µs), head merge 3.8 µs (7.8)
    block_r = max(1, 1024 // block_d)
    launch(
        _kernels()._rows_copy_kernel,
        (cdiv(R, block_r),),
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
        ACC=op_math(src.dtype),
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
        _kernels()._attention_jet_kernel,
        (cdiv(L, block_m), B * H),
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
        # the key count as a loop bound fixed at compile time under the interpreter only (it cannot
        # take one given at run time); on CUDA one kernel serves every length
        KEYS=0 if Q.is_cuda else S,
        ZERO_DEAD=bool(zero_dead_rows),
        WRITE_LSE=lse is not None,
        num_warps=4,
        num_stages=3,
    )
    return out, lse


def max_pool2d_outputs(P: torch.Tensor, out_hw):
    """Empty (value planes, indices) for 2-d max pooling of planes ``P`` (T, N, C, H, W), and whether
    they are channels-last: so where ``P``'s planes are (as torch's pooling of a channels-last input
    is), contiguous otherwise."""
    T, N, C = P.shape[:3]
    OH, OW = out_hw
    cl = P.stride(0) == P[0].numel() and not P[0].is_contiguous() and P[0].is_contiguous(
        memory_format=torch.channels_last)
    if cl:
        vals = P.new_empty((T, N, OH, OW, C)).permute(0, 1, 4, 2, 3)
        ind = P.new_empty((N, OH, OW, C), dtype=torch.int64).permute(0, 3, 1, 2)
    else:
        vals = P.new_empty((T, N, C, OH, OW))
        ind = P.new_empty((N, C, OH, OW), dtype=torch.int64)
    return vals, ind, cl


def max_pool2d_jet(P: torch.Tensor, ks, st, pd, dl, out_hw):
    """First-order 2-d max pooling of planes ``P`` (2, N, C, H, W) in one pass: (value planes (2, N,
    C, OH, OW), indices (N, C, OH, OW) as torch's), by the field's order with torch's NaN rule (the
    formulas of ``ops.pool``: ``max_pool_planes`` then ``_nan_wins``), or None when the kernel does
    not apply. ``out_hw`` is torch's output size for these arguments. Channels-last planes are read
    in place and give channels-last results, as torch's pooling does; other layouts that are not
    contiguous are copied once. The formulas gather every window into a buffer of window size and
    reduce it in further passes, then search for NaN with torch's pooling over a map of positions."""
    # (a row length of 1: the kernel has no row to fit in registers)
    if not (P.dim() == 5 and P.shape[0] == 2 and _ok(P, 1)):
        return None
    _, N, C, H, W = P.shape
    OH, OW = out_hw
    vals, ind, cl = max_pool2d_outputs(P, out_hw)
    if not cl:
        P = P.contiguous()
    n_out = N * C * OH * OW
    if n_out:
        BLOCK = 256
        launch(_kernels()._max_pool2d_jet_kernel, (cdiv(n_out, BLOCK),), P, vals, ind, n_out, P[0].numel(),
               C, H, W, OH, OW, *P.stride()[1:], *ks, *st, *pd, *dl, CHANNELS_LAST=cl, BLOCK=BLOCK)
    return vals, ind
