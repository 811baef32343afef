"""First-order jets on coefficient planes: the exact ε¹ formulas of composite layers.

An LCTensor computed from ``x.nonstd(v)`` has two planes, P = (a, b) for a + bε, truncated at order 1.
For that case a layer's result is f(a) + f'(a)·b ε (every ε² term is beyond the truncation), so a
composite op can be computed on the planes with plain torch ops — one GEMM over both planes where the
op is linear, the product rule where it is bilinear, the derivative formula elsewhere — instead of
dispatching every primitive of its decomposition through the LC rules. The rules for ``_softmax``,
``_log_softmax``, ``native_layer_norm`` and PyTorch's fused transformer kernels use these functions
for first-order inputs and their general decompositions otherwise; tests check both paths agree.

Every function takes and returns planes tensors of shape (2, *shape). softmax, log_softmax and
layer_norm compute in float32 for half/bfloat16 planes (as torch's kernels) and return the input's
dtype; on CUDA softmax and layer_norm are one Triton launch each (``torchlc.kernels.jets``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _algebra, _taylor
from ._algebra import FIRST_ORDER, Series
from ._context import grad_free as _grad_free
from ._context import inner_is_plain as _inner_is_plain
from ._context import is_wrapped as _is_wrapped
from ._context import tracing as _tracing
from .kernels import jets as _fused
from .kernels import relu2, usable

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in torch's computation dtype: float32 for half/bfloat16 (as its decompositions and its
    attention kernels' accumulators), unchanged otherwise."""
    return t.float() if t.dtype in _LOW_PRECISION else t


def add_to_plane(Y, i, T):
    """Y[i] + T as planes: in place on plain tensors; out of place for functorch wrappers (vmap
    cannot write a batched value into an unbatched tensor)."""
    if _is_wrapped(Y) or _is_wrapped(T) or _tracing():
        planes = list(Y.unbind(0))
        planes[i] = planes[i] + T
        return torch.stack(planes)
    Y[i].add_(T)
    return Y



def splits_bias(P, weight, bias) -> bool:
    """Whether :func:`linear` runs two GEMMs, the bias in the ε⁰ one's epilogue (see there)."""
    return bias is not None and P.is_cuda and P.dtype in _LOW_PRECISION and _grad_free(P, weight, bias)


def linear(P, weight, bias=None):
    """(a + bε)·Wᵀ + bias: one GEMM over both planes (planes fold into the batch), bias on ε⁰.

    With a bias on CUDA in half precision (eager, no autograd) it is two GEMMs into one output
    instead: ε⁰ rows through addmm, whose epilogue adds the bias, and ε¹ rows through mm. A separate
    bias pass reads and writes the whole ε⁰ plane once more: in the bf16 encoder layer on an H100
    the split took the jet from 772 to 679 µs of GPU time. In float32 (no tensor cores) the two
    half-height GEMMs cost more than the bias pass saves (2955 → 2986 µs), so float32 keeps one GEMM."""
    if not splits_bias(P, weight, bias):
        Y = F.linear(P, weight)
        return Y if bias is None else add_to_plane(Y, 0, bias)
    K, N = P.shape[-1], weight.shape[0]
    return split_bias_gemm(P.reshape(2, -1, K), weight.t(), bias).view(*P.shape[:-1], N)


def split_bias_gemm(P, wt, bias):
    """Planes P (2, M, K) times wt (K, N) plus bias on ε⁰, as two GEMMs into one output: addmm (the
    bias in its epilogue) for the ε⁰ rows, mm for the ε¹ rows. Few tensor calls: on a host-bound
    GPU forward each costs microseconds."""
    p0, p1 = P.unbind(0)
    Y = P.new_empty((2, P.shape[1], wt.shape[1]))
    y0, y1 = Y.unbind(0)
    torch.addmm(bias, p0, wt, out=y0)
    torch.mm(p1, wt, out=y1)
    return Y


def matmul(P, Q):
    """(a + bε)(c + dε) = ac + (bc + ad)ε: one batched matmul for both planes of P against c, one
    more for a·d."""
    return add_to_plane(torch.matmul(P, Q[0]), 1, torch.matmul(P[0], Q[1]))


def bmm(P, Q):
    """(a + bε)(c + dε) = ac + (bc + ad)ε for batched matrices, planes P (2, B, M, K) and Q (2, B, K, N):
    a·c and b·c in one batched GEMM (c broadcast over the planes), a·d accumulated into the ε¹ plane
    (two GEMMs instead of three, no add and no stack). The result planes (2, B, M, N) are laid out as
    torch's bmm result (each plane contiguous), so views that work on torch's result work on it."""
    Y = torch.matmul(P, Q[0])
    if Y.is_cuda:  # cuBLAS accumulates into the ε¹ plane directly
        Y[1].baddbmm_(P[0], Q[1])
    else:  # the CPU kernel would loop over the batch and copy: one bmm, one add instead
        Y[1].add_(torch.bmm(P[0], Q[1]))
    return Y


def attention(Q, K, V, scale, mask=None, *, zero_dead_rows=False):
    """softmax(q·kᵀ·scale + mask)·v on first-order planes Q (2, *batch, L, E), K (2, *batch, S, E),
    V (2, *batch, S, Ev), with a float additive ``mask`` broadcastable to (*batch, L, S). Returns the
    output, attention-weight and (masked) score planes. With ``zero_dead_rows`` a row whose scores are
    all −inf gets zero attention weights (as PyTorch's ``_safe_softmax``), so its output is 0·v.

    Eager on plain tensors the planes are *interleaved* per batch element — each element's ε⁰ rows
    followed by its ε¹ rows, (N, 2L, ·) — so (a; b)·c is one batched GEMM and a·d one more, accumulated
    in place into the ε¹ rows (the scale is the GEMMs' alpha); the softmax jet reads and writes that
    layout. Two GEMMs per product, no broadcast copies, and no stacking."""
    if torch.compiler.is_compiling() or any(_is_wrapped(t) for t in (Q, K, V, mask) if t is not None):
        scores = matmul(Q * scale, K.transpose(-2, -1))
        if mask is not None:
            scores = torch.stack([scores[0] + mask, scores[1]])
        attn = softmax(scores, -1)
        if zero_dead_rows:
            attn = attn.masked_fill((scores[0] == float("-inf")).all(-1, keepdim=True), 0.0)
        return matmul(attn, V), attn, scores
    batch, L, S = Q.shape[1:-2], Q.shape[-2], K.shape[-2]
    scores = _interleaved_bmm(_interleaved(Q), _flat(K[0]).transpose(1, 2), _flat(K[1]).transpose(1, 2), scale)
    scores = scores.view(*batch, 2, L, S).movedim(-3, 0)
    if mask is not None:
        scores[0].add_(mask)
    attn = softmax(scores, -1)
    if zero_dead_rows:  # in place: attn is this function's own (interleaved) buffer
        attn.masked_fill_((scores[0] == float("-inf")).all(-1, keepdim=True), 0.0)
    o = _interleaved_bmm(_interleaved(attn), _flat(V[0]), _flat(V[1]))
    return o.view(*batch, 2, L, -1).movedim(-3, 0), attn, scores


def qkv_planes(Y, heads, bias0=None):
    """The q, k, v planes (2, B, H, L, D) of an in-projection output Y (2, B, L, 3E), from one copy
    into a (3, B, H, 2, L, D) buffer: q is then interleaved and k, v fold their batch dims (no further
    copies in :func:`attention`). The in-projection's ``bias0`` (3E) is added to the ε⁰ plane in that
    copy when no autograd is recording."""
    _, B, L, E3 = Y.shape
    D = E3 // (3 * heads)
    fused_bias = bias0 is not None and _grad_free(Y, bias0)
    if bias0 is not None and not fused_bias:
        Y = add_to_plane(Y, 0, bias0)
    src = Y.view(2, B, L, 3, heads, D).permute(3, 1, 4, 0, 2, 5)
    buf = _fused.contiguous_rows(src, bias0.view(3, 1, heads, 1, 1, D) if fused_bias else None, plane_dim=3)
    if buf is None and not fused_bias:
        buf = src.contiguous()
    elif buf is None:
        buf = torch.empty(src.shape, dtype=Y.dtype, device=Y.device)
        torch.add(src[:, :, :, 0], bias0.view(3, 1, heads, 1, D), out=buf[:, :, :, 0])
        buf[:, :, :, 1].copy_(src[:, :, :, 1])
    return tuple(buf[i].movedim(-3, 0) for i in range(3))


def merge_heads(P):
    """Attention output planes (2, B, H, L, D) as (2, B, L, H·D), the out-projection's input: one copy."""
    _, B, H, L, D = P.shape
    T = P.transpose(2, 3)
    merged = _fused.contiguous_rows(T)
    return (T if merged is None else merged).reshape(2, B, L, H * D)


def _flat(t):
    """(*batch, M, K) as (N, M, K): a view when the batch dims merge, else a copy."""
    return t.reshape(math.prod(t.shape[:-2]), *t.shape[-2:])  # explicit: any size may be 0


def _interleaved(P):
    """Planes P (2, *batch, M, K) as (N, 2M, K) with each batch element's ε⁰ rows then its ε¹ rows:
    a view for planes that are already interleaved, else one copy."""
    return P.movedim(0, -3).reshape(math.prod(P.shape[1:-2]), 2 * P.shape[-2], P.shape[-1])  # sizes may be 0


def _interleaved_bmm(Pcat, c, d, alpha=1.0):
    """(a + bε)(c + dε) with a, b interleaved in Pcat (N, 2M, K): one GEMM gives a·c and b·c, a second
    adds a·d into the ε¹ rows. Result interleaved, (N, 2M, Nc)."""
    M = Pcat.shape[1] // 2
    Y = torch.empty(Pcat.shape[0], 2 * M, c.shape[-1], dtype=Pcat.dtype, device=Pcat.device)
    Y.baddbmm_(Pcat, c, beta=0, alpha=alpha)  # beta = 0: Y's uninitialised values are ignored
    if Y.is_cuda:  # cuBLAS accumulates into the strided ε¹ rows directly
        Y[:, M:].baddbmm_(Pcat[:, :M], d, alpha=alpha)
    else:  # the CPU kernel would loop over the batch and copy: one bmm, one add instead
        Y[:, M:].add_(torch.bmm(Pcat[:, :M], d), alpha=alpha)
    return Y


def softmax(P, dim):
    """softmax(a + bε) = s + s·(b − Σ s·b) ε with s = softmax(a)."""
    if dim in (-1, P.dim() - 2) and (fused := _fused.softmax_jet(P)) is not None:
        return fused
    a, b = upcast(P)
    s = torch.softmax(a, dim)
    if s.is_floating_point() and _inner_is_plain(P):  # the backward kernel is this jvp (symmetric Jacobian)
        t = torch._softmax_backward_data(b, s, dim, s.dtype)
        if s.dtype == P.dtype:
            return _planes_like(P, s, t)
        # half precision: the ε⁰ plane as the plain softmax rounds it, the tangent from float32
        return _planes_like(P, torch.softmax(P[0], dim), t.to(P.dtype))
    return torch.stack([s, s * (b - (s * b).sum(dim, keepdim=True))]).to(P.dtype)


def _planes_like(P, *planes):
    """``torch.stack(planes)`` laid out as P where no autograd records: ``torch.empty_like`` keeps a
    dense P's strides, so the planes of :func:`attention`'s interleaved scores come back interleaved
    and the product that reads them needs no copy (two copies, the stack's bytes in two kernels; the
    kernels' ``out=`` is not used: CPU softmax writes a strided ``out`` wrongly, torch 2.13)."""
    if P.is_contiguous() or not _grad_free(P, *planes):  # the stack's layout anyway: one kernel
        return torch.stack(planes)
    res = torch.empty_like(P)
    for i, plane in enumerate(planes):
        res[i].copy_(plane)
    return res


def log_softmax(P, dim):
    """log_softmax(a + bε) = log_softmax(a) + (b − Σ softmax(a)·b) ε."""
    a, b = upcast(P)
    y = torch.log_softmax(a, dim)
    return torch.stack([y, b - (y.exp() * b).sum(dim, keepdim=True)]).to(P.dtype)


def layer_norm(P, n_dims, weight, bias, eps, *, stats=False, residual=None, bias0=None):
    """Layer norm over the last ``n_dims`` dims: the output planes, or (out, mean, rstd) planes with
    ``stats=True``.

    With centred c = c₀ + c₁ε and m = mean(c₀c₁): rstd = r₀ − q ε with r₀ = (mean(c₀²) + eps)^(-1/2)
    and q = r₀³·m, so out = c₀r₀ + (c₁r₀ − c₀q)ε. Needs eps > 0 (else a constant row's variance starts
    at ε²). One Triton launch on CUDA, else PyTorch's layer-norm kernels (4 for the output, see
    :func:`_layer_norm_kernels`; these formulas, 12 kernels, in traces and under vmap); the mean and
    rstd planes only when asked for. The statistics are in the computation dtype (float32 for
    half/bfloat16), the output in P's.

    With ``residual`` planes and/or ``bias0`` (added to the ε⁰ plane: a linear layer's bias) it is the
    layer norm of residual + (P + bias0), the add & norm of a transformer layer, in one launch on CUDA
    with the same roundings as the separate adds (elsewhere bias0 is added to P in place: P is a fresh
    GEMM output of the caller's)."""
    if (fused := _layer_norm_fused(P, n_dims, weight, bias, eps, stats, residual, bias0)) is not None:
        return fused
    if bias0 is not None:
        P = add_to_plane(P, 0, bias0)
    if residual is not None:
        P = residual + P
    dt, P = P.dtype, upcast(P)
    dims = tuple(range(P.dim() - n_dims, P.dim()))
    if P.is_cuda and _tracing() and not _is_wrapped(P):
        return _layer_norm_traced(P, dims, weight, bias, eps, stats, dt)
    if _inner_is_plain(P) and P.is_floating_point():
        return _layer_norm_kernels(P, n_dims, weight, bias, eps, stats, dt)
    mean = P.mean(dims, keepdim=True)
    C = P - mean
    m = (C * C[0]).mean(dims, keepdim=True)  # [mean(c₀²), mean(c₀c₁)]
    r0 = (m[0] + eps).rsqrt()
    q = r0.pow(3) * m[1]
    res = _addcmul_to_plane(C * r0, 1, C[0], q, -1)
    if weight is not None:
        res = res * weight
    if bias is not None:
        res = add_to_plane(res, 0, bias)
    if not stats:
        return res.to(dt)
    return res.to(dt), mean, torch.stack([r0, -q])


def _layer_norm_kernels(P, n_dims, weight, bias, eps, stats, dt):
    """The same jet through PyTorch's layer-norm kernels (eager, with or without autograd: the backward
    kernel has a derivative, gradcheck'd in tests/ops/test_first_order_kernels.py): 4 kernels for the output
    instead of 12. The normalisation's Jacobian J = r₀(I − 11ᵀ/n − x̂x̂ᵀ/n) is symmetric, so the
    backward kernel without a weight, applied to the ε¹ plane, is its jvp: out = LN(c₀; w, β) +
    w·(J c₁) ε, the ε⁰ plane computed as the plain layer norm computes it. The statistics' planes
    (mean(c₁), and −q as above) cost 7 more kernels, only with ``stats``."""
    a, b = P
    shape = a.shape[a.dim() - n_dims:]
    # the parameters in the computation dtype (P was upcast from half precision)
    weight, bias = (t.to(a.dtype) if t is not None else None for t in (weight, bias))
    y0, mean0, r0 = torch.native_layer_norm(a, shape, weight, bias, eps)
    t = torch.ops.aten.native_layer_norm_backward.default(b, a, shape, mean0, r0, None, None,
                                                          [True, False, False])[0]
    if weight is not None:
        t = t * weight
    res = torch.stack([y0, t]).to(dt)
    if not stats:
        return res
    dims = tuple(range(a.dim() - n_dims, a.dim()))
    q = r0.pow(3) * ((a - mean0) * b).mean(dims, keepdim=True)
    return res, torch.stack([mean0, b.mean(dims, keepdim=True)]), torch.stack([r0, -q])


def _layer_norm_traced(P, dims, weight, bias, eps, stats, dt):
    """The same formulas on the two planes as separate tensors, for Inductor on CUDA: every reduction
    is then over one (rows, n) tensor and fuses better (the 4-layer encoder's compiled LC forward on
    an H100: 114 → 100–105 kernels, bf16 GPU time −4%; on CPU Inductor it made more kernels, so CPU
    traces keep the stacked form)."""
    a, b = P.unbind(0)
    rd = tuple(d - 1 for d in dims)
    ma, mb = a.mean(rd, keepdim=True), b.mean(rd, keepdim=True)
    ca, cb = a - ma, b - mb
    r0 = ((ca * ca).mean(rd, keepdim=True) + eps).rsqrt()
    q = r0.pow(3) * (ca * cb).mean(rd, keepdim=True)
    o0, o1 = ca * r0, cb * r0 - ca * q
    if weight is not None:
        o0, o1 = o0 * weight, o1 * weight
    if bias is not None:
        o0 = o0 + bias
    res = torch.stack([o0, o1]).to(dt)
    return res if not stats else (res, torch.stack([ma, mb]), torch.stack([r0, -q]))


def _layer_norm_fused(P, n_dims, weight, bias, eps, stats, residual=None, bias0=None):
    rows = P.shape[1 : P.dim() - n_dims]
    if not (P.is_contiguous() and (residual is None or residual.is_contiguous())):
        # rows that are not contiguous (convnext's layer norm after a permute): one copy for the one
        # launch, as torch's own layer norm copies its input, where the kernel applies (else none:
        # the formulas below read the planes as they are)
        if not _fused.applies(P, math.prod(P.shape[P.dim() - n_dims :]), weight, bias, residual, bias0):
            return None
        P = P.contiguous()
        residual = None if residual is None else residual.contiguous()
    w, b, b0 = (None if t is None else t.reshape(-1) for t in (weight, bias, bias0))
    n = math.prod(P.shape[P.dim() - n_dims :])  # explicit: -1 is ambiguous when there are no rows
    R = None if residual is None else residual.view(2, *rows, n)
    res = _fused.layer_norm_jet(P.view(2, *rows, n), w, b, eps, stats=stats, residual=R, bias0=b0)
    if res is None or not stats:
        return res if res is None else res.view(P.shape)
    o, mean, rstd = res
    ones = (1,) * n_dims
    return o.view(P.shape), mean.view(2, *rows, *ones), rstd.view(2, *rows, *ones)


def _addcmul_to_plane(Y, i, a, b, value):
    """Y[i] + value·a·b as planes: one in-place kernel on plain tensors (else as add_to_plane)."""
    if _is_wrapped(Y) or _is_wrapped(a) or _is_wrapped(b) or _tracing():
        return add_to_plane(Y, i, value * a * b)
    Y[i].addcmul_(a, b, value=value)
    return Y


def relu(P, bias0=None):
    """relu by the sign of the leading coefficient (the first-order rule of ``aten.relu``); with
    ``bias0``, of P with bias0 added to its ε⁰ plane (one Triton pass on CUDA; elsewhere bias0 is
    added to P in place: P is a fresh GEMM output of the caller's)."""
    if bias0 is not None:
        if (usable(P) and bias0.dtype == P.dtype and bias0.is_contiguous() and bias0.numel() == P.shape[-1]
                and _grad_free(bias0)):
            return relu2(P, bias0)
        P = add_to_plane(P, 0, bias0)
    return _algebra.relu(Series(P, FIRST_ORDER)).planes


def gelu(P, approximate="none"):
    """gelu(a) + gelu'(a)·b ε."""
    taylor = _taylor.taylor_gelu if approximate == "none" else _taylor.taylor_gelu_tanh
    return _algebra.analytic(Series(P, FIRST_ORDER, 1), taylor, "gelu").planes
