"""Attention: PyTorch's SDPA kernels (math, CPU flash, CUDA flash, memory-efficient, cuDNN) and the
fused multi-head attention fast path on LC inputs. First-order q, k, v take the attention jet
(torchlc._jet, one flash-style kernel where it applies, an opaque custom op when traced with grad off
on CUDA); other inputs run the same math through the LC rules."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _algebra as A
from .. import _jet
from .._algebra import Series
from .._context import is_wrapped as _is_wrapped
from .._context import tracing as _tracing
from .._dispatch import composite, decompose_composite, implements
from .._tensor import LCTensor
from ..kernels import jets as _jet_kernels
from ._util import check_as_torch, decomposed, first_order, is_lc, out, upcast

aten = torch.ops.aten


# -- multi-head attention: the fast path's math, unfused, and its jet ------------------------------------


def _expand_mask(mask, mask_type, B, H, L, S_):
    if mask is None:
        return None
    if mask_type == 1 or (mask_type is None and mask.dim() == 2 and mask.shape == (B, S_) and B != L):
        mask = mask.view(B, 1, 1, S_)
    elif mask.dim() == 3:
        mask = mask.view(B, -1, L, S_)
    return mask


def _mha_math(query, key, value, E, H, qkv_w, qkv_b, proj_w, proj_b, mask, mask_type):
    B, L, _ = query.shape
    S_ = key.shape[1]
    D = E // H
    if query is key and key is value:
        q, k, v = F.linear(query, qkv_w, qkv_b).chunk(3, dim=-1)
    else:
        wq, wk, wv = qkv_w.chunk(3)
        bq, bk, bv = qkv_b.chunk(3) if qkv_b is not None else (None, None, None)
        q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
    q = q.reshape(B, L, H, D).transpose(1, 2)
    k = k.reshape(B, S_, H, D).transpose(1, 2)
    v = v.reshape(B, S_, H, D).transpose(1, 2)
    scores = (q * (1.0 / D**0.5)) @ k.transpose(-2, -1)
    m = _expand_mask(mask, mask_type, B, H, L, S_)
    if m is not None and m.dtype == torch.bool:
        scores = scores.masked_fill(m, float("-inf"))
        attn = torch.softmax(scores, -1).masked_fill(m, 0.0)  # fully masked rows: 0, as _masked_softmax
    else:
        if m is not None:
            scores = scores + m
        attn = torch.softmax(scores, -1)
    o = (attn @ v).transpose(1, 2).reshape(B, L, E)
    return F.linear(o, proj_w, proj_b), attn


def _mha_jet(Pq, Pk, Pv, E, H, qkv_w, qkv_b, proj_w, proj_b, mask, mask_type, fused_qkv, need_weights=True):
    """_mha_math on first-order planes (2, B, L, E) with plain weights: plain torch ops throughout.
    With ``proj_b`` None the output projection's bias is left to the caller (to fuse). Without
    ``need_weights`` (the attention weights come back as None) attention is one flash-style kernel
    in half precision on CUDA."""
    _, B, L, _ = Pq.shape
    S_ = Pk.shape[2]
    D = E // H
    if fused_qkv:  # the in-projection's bias is added in the copy that splits the heads
        q, k, v = _jet.qkv_planes(_jet.linear(Pq, qkv_w), H, bias0=qkv_b)
    else:
        wq, wk, wv = qkv_w.chunk(3)
        bq, bk, bv = qkv_b.chunk(3) if qkv_b is not None else (None, None, None)
        q, k, v = _jet.linear(Pq, wq, bq), _jet.linear(Pk, wk, bk), _jet.linear(Pv, wv, bv)
        q = q.reshape(2, B, L, H, D).transpose(2, 3)
        k = k.reshape(2, B, S_, H, D).transpose(2, 3)
        v = v.reshape(2, B, S_, H, D).transpose(2, 3)
    m = _expand_mask(mask, mask_type, B, H, L, S_)
    if not need_weights and (o := _jet_kernels.attention_merged(q, k, v, 1.0 / D**0.5, m)) is not None:
        return _jet.linear(o, proj_w, proj_b), None
    if m is not None and m.dtype == torch.bool:
        m = ~m  # MHA masks mark what to ignore; SDPA masks what to attend to
    o, attn, _ = _sdpa_jet(q, k, v, m, False, None, False, zero_dead_rows=m is not None and m.dtype == torch.bool)
    return _jet.linear(_jet.merge_heads(o), proj_w, proj_b), attn


# -- scaled dot-product attention: the jet, the kernels' entry points, the opaque op ----------------------


def _sdpa_jet(Q, K, V, attn_mask, is_causal, scale, enable_gqa, *, zero_dead_rows=True):
    """softmax(q·kᵀ·scale + mask)·v on first-order planes (2, …, L, E), as PyTorch's math SDPA (a bool
    mask marks what to attend to; with ``zero_dead_rows``, rows that are entirely masked give 0, like
    ``_safe_softmax``; the scale multiplies the scores, where the math kernel scales q and k by √scale
    each: equal up to rounding). Returns output and attention-weight planes and the masked score
    planes.

    Grouped-query heads (Q (2, …, H, L, E), K and V (2, …, Hk, S, E), H = r·Hk) are computed per kv
    head: query heads g·r … g·r + r − 1 share kv head g, so their rows stack into one (r·L)-row
    product with k and v as they are (no copies of k and v to H heads, and r times taller GEMMs). The
    output then has Q's head layout; the weight and score planes come back grouped, (2, …, Hk, r, L, S)
    (merge dims −4 and −3 for (…, H, L, S): a copy, which only the callers that return them make)."""
    E, L, S_ = Q.shape[-1], Q.shape[-2], K.shape[-2]
    H, Hk = Q.shape[-3], K.shape[-3]
    rep = H // Hk if enable_gqa and H != Hk else 1
    if is_causal:
        # the additive form of the math kernel's tril mask in two kernels: −inf above the diagonal, 0 on
        # and below it (the bool mask's ones, ~, zeros and masked_fill would be five)
        attn_mask = torch.full((L, S_), float("-inf"), dtype=Q.dtype, device=Q.device).triu_(1)
    elif attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=Q.dtype, device=Q.device).masked_fill(~attn_mask, float("-inf"))
    # only an explicit mask can leave a row entirely −inf on finite inputs (a causal one never does)
    dead_rows = zero_dead_rows and attn_mask is not None and not is_causal
    scale = scale if scale is not None else 1.0 / E**0.5
    if rep == 1:
        return _jet.attention(Q, K, V, scale, attn_mask, zero_dead_rows=dead_rows)
    # (2, …, Hk, r·L, E) laid out as the jet's interleaved planes (each group's ε⁰ rows, then its ε¹ rows):
    # one copy, which the jet would otherwise make
    Qg = Q.unflatten(-3, (Hk, rep)).movedim(0, -4).reshape(*Q.shape[1:-3], Hk, 2, rep * L, E).movedim(-3, 0)
    o, attn, scores = _jet.attention(Qg, K, V, scale, _grouped_mask(attn_mask, H, Hk, L, S_),
                                     zero_dead_rows=dead_rows)
    o = o.unflatten(-2, (rep, L)).flatten(-4, -3)  # (2, …, H, L, Ev)
    return o, attn.unflatten(-2, (rep, L)), scores.unflatten(-2, (rep, L))


def _grouped_mask(mask, H, Hk, L, S_):
    """A mask broadcastable to (…, H, L, S) for the grouped rows (…, Hk, r·L, S) of :func:`_sdpa_jet`:
    a view when it is the same for every head (a padding mask), else one copy."""
    if mask is None:
        return None
    mask = mask.expand(*mask.shape[:-2], L, S_) if mask.dim() >= 2 else mask.expand(L, S_)
    if mask.dim() >= 3 and mask.shape[-3] != 1:  # per head
        return mask.unflatten(-3, (Hk, H // Hk)).flatten(-3, -2)
    return mask.unsqueeze(-3).expand(*mask.shape[:-2], H // Hk, L, S_).flatten(-3, -2)


def _sdpa_first_order(query, key, value, attn_mask, dropout_p):
    """The first-order series of q, k, v when the SDPA jet applies (else None). A plain operand (a
    plain memory in cross-attention) joins with a zero ε¹ plane: it is exactly itself + 0ε."""
    qkv = [first_order(t) for t in (query, key, value)]
    lc = [s for s in qkv if s is not None]
    if not lc or dropout_p > 0.0 or is_lc(attn_mask):
        return None
    for i, t in enumerate((query, key, value)):
        if qkv[i] is None:
            if isinstance(t, LCTensor):  # another support or order: the general path
                return None
            qkv[i] = Series(torch.stack([t, torch.zeros_like(t)]), lc[0].support, lc[0].order, None)
    return tuple(qkv)


def _whole_sdpa_applies(q, k, v, attn_mask, is_causal, enable_gqa) -> bool:
    """Whether F.scaled_dot_product_attention's arguments are the (B, H, L, E) case that every backend
    computes alike, and valid (anything else goes through torch's own checks in the decomposition)."""
    if not (q.dim() == k.dim() == v.dim() == 4 and q.dtype == k.dtype == v.dtype):
        return False
    (B, H, L, E), (Bk, Hk, S_, Ek), (Bv, Hv, Sv, _) = q.shape, k.shape, v.shape
    if not (B == Bk == Bv and Hk == Hv and S_ == Sv and E == Ek and min(L, S_, E) > 0):
        return False
    if H != Hk and not (enable_gqa and Hk > 0 and H % Hk == 0):
        return False
    if attn_mask is not None and (is_causal or (attn_mask.dtype != torch.bool and attn_mask.dtype != q.dtype)):
        return False
    return True


@composite([aten.scaled_dot_product_attention.default])
def scaled_dot_product_attention(func, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *,
                                 scale=None, enable_gqa=False):
    """F.scaled_dot_product_attention whole, whatever backend PyTorch would pick: the attention jet
    (the fused kernel where it applies) without the logsumexp that the CPU flash kernel returns and
    F.scaled_dot_product_attention drops, and in one dispatch where the math backend (float32
    grouped-query attention on CUDA) is a dozen. Other inputs through the decomposition."""
    qkv = _sdpa_first_order(query, key, value, attn_mask, dropout_p)
    if qkv is None or not _whole_sdpa_applies(query, key, value, attn_mask, is_causal, enable_gqa):
        return decompose_composite(func, query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                                   enable_gqa=enable_gqa)
    return _attention_with_lse(query, key, value, attn_mask, dropout_p, is_causal, scale, need_lse=False,
                               qkv=qkv)[0]


@implements([aten._scaled_dot_product_attention_math.default], kind="jet")
def sdpa_math(func, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, dropout_mask=None,
              scale=None, enable_gqa=False):
    """PyTorch's math SDPA (reached undecomposed under inference_mode) in one dispatch."""
    qkv = _sdpa_first_order(query, key, value, attn_mask, dropout_p)
    if qkv is None:
        return func.decompose(query, key, value, attn_mask, dropout_p, is_causal, dropout_mask, scale=scale,
                              enable_gqa=enable_gqa)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # this kernel adds a bool mask as 0/1 (F.scaled_dot_product_attention turns a bool mask into
        # 0/−inf before calling it); _sdpa_jet's bool masks are F.scaled_dot_product_attention's
        attn_mask = attn_mask.to(query.dtype)
    o, attn, _ = _sdpa_jet(*(t.planes for t in qkv), attn_mask, is_causal, scale, enable_gqa)
    sq = qkv[0]
    exact = A.min_exact(*(s.exact for s in qkv), sq.order)
    # the jet's planes are interleaved per batch element: laid out as torch's results are
    return (out(Series(o.contiguous(), sq.support, sq.order, exact)),
            out(Series(attn.reshape(*o.shape[:-1], attn.shape[-1]).contiguous(), sq.support, sq.order, exact)))


@implements([aten._scaled_dot_product_flash_attention_for_cpu.default], kind="jet")
def sdpa_flash_cpu(func, query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
    """The CPU flash-attention kernel's result (output, logsumexp) on first-order q, k, v; the
    logsumexp's ε¹ coefficient is Σ softmax·(score's ε¹)."""
    if attn_mask is not None and attn_mask.dtype != query.dtype:  # a bool mask: torch's refusal
        check_as_torch(func, query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    if _sdpa_first_order(query, key, value, attn_mask, dropout_p) is None:
        return decomposed(func, query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    return _attention_with_lse(query, key, value, attn_mask, dropout_p, is_causal, scale)


def _attention_with_lse(query, key, value, attn_mask, dropout_p, is_causal, scale, need_lse=True, qkv=None):
    """(output, logsumexp) of attention on LC q, k, v: the jet for first-order inputs; otherwise
    PyTorch's math kernel through the LC rules, and no logsumexp (None). The logsumexp is an
    auxiliary output kept only for these kernels' own backward, which LC wrappers never run; without
    ``need_lse`` (the kernels' ``compute_log_sumexp`` is off, as under no_grad) it is None and the
    formulas do not compute it: its ε¹ plane alone reads the weight and score planes twice more.
    ``qkv``: :func:`_sdpa_first_order`'s series when the caller has them (a plain operand's zero
    plane is then built once)."""
    gqa = query.shape[-3] != key.shape[-3]
    if qkv is None:
        qkv = _sdpa_first_order(query, key, value, attn_mask, dropout_p)
    if qkv is not None:
        planes = [t.planes for t in qkv]
        fused = _flash_jet(*planes, attn_mask, is_causal, scale)
        if fused is not None:
            o, lse = fused  # the kernel's logsumexp costs nothing extra: its row statistics
        else:
            o, attn, scores = _sdpa_jet(*planes, attn_mask, is_causal, scale, gqa)
            lse = upcast(_logsumexp_planes(attn, scores)).reshape(o.shape[:-1]) if need_lse else None
            o = o.contiguous()  # the jet's planes are interleaved per batch element; torch's result is not
        sq = qkv[0]
        exact = A.min_exact(*(s.exact for s in qkv), sq.order)
        o = out(Series(o, sq.support, sq.order, exact))
        return o, (out(Series(lse, sq.support, sq.order, exact)) if need_lse else None)
    o, _ = aten._scaled_dot_product_attention_math.default(
        query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=gqa)
    return o, None


def _logsumexp_planes(attn, scores):
    """The logsumexp's jet over the last dim from the attention jet's weight and score planes: its ε¹
    plane is Σ softmax·s₁ (masked entries, with zero weight, contribute nothing). The ε⁰ plane is read
    off the softmax already computed: its largest weight is exp(max s₀ − lse), so lse = max s₀ − log
    of it (two max passes instead of logsumexp's four passes with an exp; a quarter of the CPU causal
    attention's time). A row without weight (every score −inf) has lse −inf; NaN stays NaN."""
    top_s, top_w = scores[0].amax(-1), attn[0].amax(-1)
    lse0 = torch.where(top_w > 0, top_s - top_w.log(), top_s)
    lse1 = (attn[0] * scores[1].masked_fill(attn[0] == 0, 0.0)).sum(-1)
    return torch.stack([lse0, lse1])


def _flash_jet(Q, K, V, attn_mask, is_causal, scale):
    """The fused kernels' attention as one flash-style launch, with the logsumexp (None where the
    kernel does not apply: then the formulas of _sdpa_jet, to which it is equal up to rounding).
    Traced with grad off (torchlc.compile's inference trace) on CUDA: the opaque op below."""
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = ~attn_mask  # SDPA's bool masks mark what to attend to, the kernel's what to ignore
    scale = scale if scale is not None else Q.shape[-1] ** -0.5
    zero_dead_rows = attn_mask is not None and not is_causal
    if _tracing():
        if (Q.device.type in OPAQUE_ATTENTION_DEVICES and torch.is_inference_mode_enabled()
                and not any(_is_wrapped(t) for t in (Q, K, V)) and _jet_kernels.attention_applies(Q, K, V, attn_mask)):
            return torch.ops.torchlc.flash_attention_jet(Q, K, V, attn_mask, scale, is_causal, zero_dead_rows)
        return None
    return _jet_kernels.flash_attention(Q, K, V, scale, attn_mask, is_causal=is_causal, zero_dead_rows=zero_dead_rows,
                                        logsumexp=True)


@torch.library.custom_op("torchlc::flash_attention_jet", mutates_args=())
def flash_attention_jet(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, ignore: torch.Tensor | None,
                        scale: float, is_causal: bool, zero_dead_rows: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The flash-style attention jet as one opaque op in graphs traced with grad off on CUDA, where
    Inductor would otherwise compile the formulas (score and weight planes in memory). Planes Q (2, B,
    H, L, D), K and V (2, B, Hk, S, D), ``ignore`` a bool mask of what to ignore or a float mask to add;
    returns output planes (2, B, H, L, D) and logsumexp planes (2, B, H, L) in float32 (float64 for
    float64 planes, which only the formulas below take)."""
    res = _jet_kernels.flash_attention(Q, K, V, scale, ignore, is_causal=is_causal, zero_dead_rows=zero_dead_rows,
                                       logsumexp=True)
    if res is not None:
        return res
    # inputs the kernel does not take at run time (it was chosen from the traced metadata): the formulas
    attend = ~ignore if ignore is not None and ignore.dtype == torch.bool else ignore
    o, attn, scores = _sdpa_jet(Q, K, V, attend, is_causal, scale, Q.shape[2] != K.shape[2],
                                zero_dead_rows=zero_dead_rows)
    lse = _logsumexp_planes(attn, scores).reshape(o.shape[:-1])
    return o.contiguous(), lse.to(torch.promote_types(Q.dtype, torch.float32))


@flash_attention_jet.register_fake
def _flash_attention_jet_fake(Q, K, V, ignore, scale, is_causal, zero_dead_rows):
    return Q.new_empty(Q.shape), Q.new_empty(Q.shape[:-1], dtype=torch.promote_types(Q.dtype, torch.float32))


# devices on which graphs traced with grad off call the attention jet as the opaque op above
OPAQUE_ATTENTION_DEVICES = {"cuda"}


@implements([aten._scaled_dot_product_efficient_attention.default], kind="jet")
def sdpa_efficient(func, query, key, value, attn_bias, compute_log_sumexp, dropout_p=0.0, is_causal=False, *,
                   scale=None):
    """CUDA memory-efficient attention on LC inputs: the same math (the jet for first order); the
    RNG outputs are empty (torchlc's dropout, if any, ran through the math kernel)."""
    o, lse = _attention_with_lse(query, key, value, attn_bias, dropout_p, is_causal, scale, compute_log_sumexp)
    empty = torch.empty(0, dtype=torch.int64, device=query.device)
    return o, (lse if lse is not None and compute_log_sumexp else empty.float()), empty, empty


def _flash_outputs(o, lse, query, key):
    """The output tuple of the CUDA flash and cuDNN kernels: output, logsumexp, then sequence and RNG
    bookkeeping that LC results do not have (empty)."""
    empty = torch.empty(0, dtype=torch.int64, device=query.device)
    return (o, lse if lse is not None else empty.float(), empty, empty, query.shape[-2], key.shape[-2], empty,
            empty, torch.empty(0, dtype=query.dtype, device=query.device))


@implements([aten._scaled_dot_product_flash_attention.default], kind="jet")
def sdpa_flash(func, query, key, value, dropout_p=0.0, is_causal=False, return_debug_mask=False, *, scale=None):
    """CUDA flash attention on LC inputs: the same math (the jet for first order)."""
    o, lse = _attention_with_lse(query, key, value, None, dropout_p, is_causal, scale)
    return _flash_outputs(o, lse, query, key)


@implements([aten._scaled_dot_product_cudnn_attention.default], kind="jet")
def sdpa_cudnn(func, query, key, value, attn_bias, compute_log_sumexp, dropout_p=0.0, is_causal=False,
               return_debug_mask=False, *, scale=None):
    """cuDNN attention on LC inputs: the same math (the jet for first order)."""
    o, lse = _attention_with_lse(query, key, value, attn_bias, dropout_p, is_causal, scale, compute_log_sumexp)
    return _flash_outputs(o, lse if compute_log_sumexp else None, query, key)


# -- PyTorch's fused multi-head attention (eval / no-grad fast path) -------------------------------------


def _plain_weights(*ts) -> bool:
    return not any(is_lc(t) for t in ts)


@implements([aten._native_multi_head_attention.default], kind="jet")
def native_multi_head_attention(func, query, key, value, embed_dim, num_head, qkv_weight, qkv_bias,
                                proj_weight, proj_bias, mask=None, need_weights=True,
                                average_attn_weights=True, mask_type=None):
    if mask is not None and mask_type is None:  # torch's CPU kernel refuses a mask of no type, in its words
        check_as_torch(func, query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias,
                       mask, need_weights, average_attn_weights, mask_type)
    sq, sk, sv = first_order(query), first_order(key), first_order(value)
    if None not in (sq, sk, sv) and _plain_weights(qkv_weight, qkv_bias, proj_weight, proj_bias, mask):
        exact = A.min_exact(sq.exact, sk.exact, sv.exact, sq.order)
        o, attn = _mha_jet(sq.planes, sk.planes, sv.planes, embed_dim, num_head, qkv_weight, qkv_bias,
                           proj_weight, proj_bias, mask, mask_type, query is key and key is value, need_weights)
        o = out(Series(o, sq.support, sq.order, exact))
        attn = None if attn is None else out(Series(attn, sq.support, sq.order, exact))
    else:
        o, attn = _mha_math(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight,
                            proj_bias, mask, mask_type)
    if not need_weights:
        return o, torch.empty(0, dtype=query.dtype, device=query.device)
    return o, (attn.mean(1) if average_attn_weights else attn)
