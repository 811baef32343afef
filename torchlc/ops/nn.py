"""Linear algebra and nn primitives: GEMMs run once on all planes (bias on the ε⁰ plane only);
LC×LC products are truncated Cauchy products with the GEMM as the bilinear map."""

from __future__ import annotations

import functools

import torch
import torch._decomp

from .. import _algebra as A
from .. import _graphs, _jet
from .. import _support as S
from .._algebra import Series
from .._context import is_wrapped as _is_wrapped
from .._context import tracing as _tracing
from .._dispatch import implements, register
from .._tensor import LCTensor, series, wrap
from ..kernels import jets as _jet_kernels
from ._util import decomposed, first_order, out, upcast

aten = torch.ops.aten


def _with_bias(res: Series, bias):
    if bias is None:
        return res
    if isinstance(bias, torch.Tensor) and not isinstance(bias, LCTensor):
        return A.add_bias(res, bias)
    return A.add(res, series(bias))


@implements([aten.mm.default])
def mm(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.mm))


@implements([aten.bmm.default])
def bmm(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.bmm))


def _plain_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and not isinstance(x, LCTensor)  # nn.Parameter included


def _planes_of(x):
    return x.lc_planes() if type(x) is LCTensor else None


@implements([aten.addmm.default])
def addmm(func, bias, a, b, *, beta=1, alpha=1):
    P = _planes_of(a)
    if P is not None and beta == 1 and alpha == 1 and _plain_tensor(b) and _plain_tensor(bias):
        # nn.Linear's case, written out: one GEMM over the planes, the bias into the ε⁰ plane
        if a.lc_support == A.FIRST_ORDER and _jet.splits_bias(P, b, bias):
            # half precision on CUDA: the bias in the ε⁰ GEMM's epilogue, as the plain addmm has it
            return out(Series(_jet.split_bias_gemm(P, b, bias), a.lc_support, a.lc_order, a.lc_exact))
        T, M, K = P.shape
        Y = torch.mm(P.reshape(T * M, K), b).view(T, M, -1)
        res = A.add_bias(Series(Y, a.lc_support, a.lc_order, a.lc_exact), bias)
        return out(res)
    res = A.bilinear(series(a), series(b), torch.mm)
    if alpha != 1:
        res = A.scale(res, alpha)
    if beta != 1:
        bias = aten.mul.Scalar(bias, beta) if isinstance(bias, torch.Tensor) else bias * beta
    return out(_with_bias(res, bias))


@implements([aten.baddbmm.default])
def baddbmm(func, bias, a, b, *, beta=1, alpha=1):
    res = A.bilinear(series(a), series(b), torch.bmm)
    if alpha != 1:
        res = A.scale(res, alpha)
    if beta != 1:
        bias = aten.mul.Scalar(bias, beta)
    return out(_with_bias(res, bias))


@implements([aten.mv.default])
def mv(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.mv))


@implements([aten.dot.default, aten.vdot.default])
def dot(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.dot))


_ = S


# -- helpers -------------------------------------------------------------------------------------------

prims = torch.ops.prims


def _lc(x) -> bool:
    return isinstance(x, LCTensor)


def _fold_batch(fn, s: Series, batched_ndim: int) -> Series:
    """Run a per-plane *linear* (or selecting) op ``fn`` once on all planes: the plane dimension is
    folded into the batch dimension (an unbatched input gets the planes as its batch)."""
    p = s.planes
    T = p.shape[0]
    if p.dim() - 1 == batched_ndim:
        N = p.shape[1]
        r = fn(p.reshape(T * N, *p.shape[2:]))
        r = r.reshape(T, N, *r.shape[1:])
    else:
        r = fn(p)
    return Series(r, s.support, s.order, s.exact)


# -- convolution -------------------------------------------------------------------------------------


@implements([aten.convolution.default])
def convolution(func, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    def conv(a, b):
        return aten.convolution.default(a, b, None, stride, padding, dilation, transposed, output_padding, groups)

    sx, sw = series(x), series(w)
    if A.is_plain(sw):
        res = _fold_batch(lambda p: conv(p, sw.planes[0]), sx, x.dim())
        res = Series(res.planes, res.support, A.result_order(sx, sw), res.exact)
    else:
        res = A.bilinear(sx, sw, conv)
    if bias is not None:
        nd = x.dim() - 2
        res = A.add(res, series(bias.reshape(-1, *([1] * nd))))
    return out(res)


# -- bilinear (nn.Bilinear) --------------------------------------------------------------------------


@implements([aten._trilinear.default])
def trilinear(func, i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim=1):
    def ex(t, dims):
        for d in sorted(dims):
            t = t.unsqueeze(d)
        return t

    if not any(_lc(t) for t in (i1, i2, i3)):
        return func(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim)
    r = ex(i1, expand1) * ex(i2, expand2) * ex(i3, expand3)
    return r.sum(list(sumdim)) if len(sumdim) else r


# -- variance ----------------------------------------------------------------------------------------


def _red_dims(x, dim):
    n = x.dim()
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(n))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [d + n if d < 0 else d for d in dims]


def _var(x, dim, correction, keepdim):
    dims = _red_dims(x, dim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    c = 1 if correction is None else correction
    m = x.mean(dims, keepdim=True)
    xm = x - m
    v = (xm * xm).sum(dims, keepdim=keepdim)
    return v / max(n - c, 0), (m if keepdim else m.squeeze(dims) if dims else m)


@implements([aten.var.correction])
def var(func, x, dim=None, *, correction=None, keepdim=False):
    return _var(x, dim, correction, keepdim)[0]


@implements([aten.var_mean.correction])
def var_mean(func, x, dim=None, *, correction=None, keepdim=False):
    return _var(x, dim, correction, keepdim)


@implements([aten.std.correction])
def std(func, x, dim=None, *, correction=None, keepdim=False):
    return _var(x, dim, correction, keepdim)[0].sqrt()


@implements([aten.std_mean.correction])
def std_mean(func, x, dim=None, *, correction=None, keepdim=False):
    v, m = _var(x, dim, correction, keepdim)
    return v.sqrt(), m


@implements([prims.var.default])
def prims_var(func, x, dims, correction=1, *, output_dtype=None):
    return _var(x, dims, correction, False)[0]


# -- pooling -----------------------------------------------------------------------------------------


@implements([aten.avg_pool2d.default, aten.avg_pool3d.default])
def avg_pool(func, x, *args, **kwargs):
    nd = 4 if func is aten.avg_pool2d.default else 5
    return out(_fold_batch(lambda p: func(p, *args, **kwargs), series(x), nd))


# -- dropout -----------------------------------------------------------------------------------------


@implements([aten.native_dropout.default])
def native_dropout(func, x, p, train):
    if train is False or p == 0 and train is None:
        return x.clone(), torch.ones(x.shape, dtype=torch.bool, device=x.device)
    # the same random stream as plain CPU/CUDA native_dropout: one bernoulli_ draw of x's dtype
    mask = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    scale = 0.0 if p == 1 else 1.0 / (1 - p)
    return x * (mask * scale), mask.bool()


# -- random fills -----------------------------------------------------------------------------------


@implements([aten.bernoulli_.float])
def bernoulli_(func, x, p=0.5, *, generator=None):
    """Dropout's noise tensor (``empty_like(lc).bernoulli_(q)``): a real 0/1 sample drawn from the same
    random stream as for a plain tensor of x's dtype."""
    if not _lc(x):
        return func(x, p, generator=generator)
    noise = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(p, generator=generator)
    x._set_storage(real_lc(noise, x))
    return x


def real_lc(t: torch.Tensor, like) -> LCTensor:
    return wrap(t.unsqueeze(0), (S.ZERO,), like.lc_order if _lc(like) else None, None)


@implements([aten.rrelu_with_noise.default])
def rrelu_with_noise(func, x, noise, lower=0.125, upper=1.0 / 3.0, training=False, generator=None):
    """RReLU: slopes are drawn for the elements that are ≤ 0 in the field's order, from the same random
    stream as a plain tensor with that sign pattern (torch draws only for those elements)."""
    if not _lc(x):
        return func(x, noise, lower, upper, training, generator)
    sx = series(x)
    sgn = A.lead_sign(sx.planes)
    if training:
        buf = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        func(sgn.to(x.dtype), buf, lower, upper, True, generator)
        slope = buf
        if _lc(noise):
            noise._set_storage(real_lc(buf, noise))
        else:
            noise.copy_(buf)
    else:
        neg = torch.tensor((lower + upper) / 2, dtype=x.dtype, device=x.device)
        slope = torch.where(sgn > 0, torch.ones_like(neg), neg)
    return out(A.scale(sx, slope))


# -- normalization -----------------------------------------------------------------------------------


def _standard(x):
    """ε⁰ plane of x (x itself when plain): what running statistics keep, as jvp keeps the primal."""
    return series(x).plane(S.ZERO) if _lc(x) else x


def _update_running(buf, new):
    if buf is None or new is None:
        return
    with torch.no_grad():
        if _lc(buf):
            buf.copy_(new)
        else:
            buf.copy_(_standard(new).detach().to(buf.dtype))


def _batch_norm(x, weight, bias, rm, rv, training, momentum, eps):
    from torch._decomp.decompositions import native_batch_norm_helper

    o, sm, sr, nrm, nrv = native_batch_norm_helper(x, weight, bias, rm, rv, training, momentum, eps, True)
    if training:
        _update_running(rm, nrm)
        _update_running(rv, nrv)
    return o, sm, sr


@implements([aten.native_batch_norm.default, aten._native_batch_norm_legit.default])
def native_batch_norm(func, x, weight, bias, rm, rv, training, momentum, eps):
    return _batch_norm(x, weight, bias, rm, rv, training, momentum, eps)


@implements([aten._native_batch_norm_legit.no_stats])
def native_batch_norm_no_stats(func, x, weight, bias, training, momentum, eps):
    return _batch_norm(x, weight, bias, None, None, training, momentum, eps)


@implements([aten._native_batch_norm_legit_no_training.default])
def native_batch_norm_no_training(func, x, weight, bias, rm, rv, momentum, eps):
    return _batch_norm(x, weight, bias, rm, rv, False, momentum, eps)


@implements([aten._batch_norm_with_update.default])
def batch_norm_with_update(func, x, weight, bias, rm, rv, momentum, eps):
    o, sm, sr = _batch_norm(x, weight, bias, rm, rv, True, momentum, eps)
    return o, sm, sr, torch.empty(0, dtype=torch.uint8, device=x.device)


@implements([aten._batch_norm_no_update.default])
def batch_norm_no_update(func, x, weight, bias, rm, rv, momentum, eps):
    o, sm, sr = _batch_norm(x, weight, bias, rm, rv, False, momentum, eps)
    return o, sm, sr, torch.empty(0, dtype=torch.uint8, device=x.device)


@implements([aten.native_group_norm.default])
def native_group_norm(func, x, weight, bias, N, C, HxW, group, eps):
    shape = x.shape
    xg = x.reshape(N, group, -1)
    v, m = _var(xg, [-1], 0, True)
    rstd = (v + eps).rsqrt()
    o = ((xg - m) * rstd).reshape(shape)
    bshape = (1, C) + (1,) * (x.dim() - 2)
    if weight is not None:
        o = o * weight.reshape(bshape)
    if bias is not None:
        o = o + bias.reshape(bshape)
    return o, m.reshape(N, group), rstd.reshape(N, group)


# -- adaptive max pooling: a selection by the field's order ------------------------------------------


def _adaptive_windows(L, n_out, device):
    i = torch.arange(n_out, device=device)
    start = torch.div(i * L, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * L + n_out - 1, n_out, rounding_mode="floor")
    K = int((end - start).max())
    k = torch.arange(K, device=device)
    idx = start[:, None] + k
    valid = idx < end[:, None]
    return idx.clamp(max=L - 1), valid


def lex_window_argmax(planes, flat_idx, valid):
    """planes (T, B, L); flat_idx/valid (*O, K) index windows of the last dim. Returns the index (into
    L) of each window's first maximum in the field's order (lexicographic over the planes)."""
    w = planes[:, :, flat_idx]  # (T, B, *O, K)
    cand = valid.expand(w.shape[1:])
    for t in range(w.shape[0]):
        pm = torch.where(cand, w[t], float("-inf"))
        m = pm.amax(-1, keepdim=True)
        cand = cand & (pm == m)
    k = cand.to(torch.uint8).argmax(-1, keepdim=True)
    return torch.gather(flat_idx.expand(w.shape[1:]), -1, k).squeeze(-1)


def _pool_windows(L, k, stride, pad, dil, ceil_mode, device):
    """Input positions (O, k) of max_pool's windows along one dim, clamped, and which are real (not
    padding): o·stride − pad + j·dil, with torch's output-size rule (ceil_mode: the last window must
    start inside the input or its left padding)."""
    span = L + 2 * pad - dil * (k - 1) - 1
    n_out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (n_out - 1) * stride >= L + pad:
        n_out -= 1
    idx = torch.arange(n_out, device=device)[:, None] * stride - pad + torch.arange(k, device=device) * dil
    valid = (idx >= 0) & (idx < L)
    return idx.clamp(0, L - 1), valid


def _window_max(x, windows):
    """Max in the field's order over per-dim windows (``windows[d]`` = (idx (O_d, K_d), valid)) of the
    trailing spatial dims of x, (N, C, *spatial) or (C, *spatial): values and torch-style indices
    (flattened spatial position of each window's first maximum)."""
    n = len(windows)
    s = series(x)
    p = s.planes
    batched = p.dim() - 1 == n + 2
    if not batched:
        p = p.unsqueeze(1)
    T, N, C = p.shape[:3]
    spatial = p.shape[3:]
    flat = None
    valid = None
    for d, (idx, ok) in enumerate(windows):
        stride = 1
        for L2 in spatial[d + 1 :]:
            stride *= L2
        # dims: (O_0..O_{n-1}, K_0..K_{n-1}) built by broadcasting
        shp = [1] * (2 * n)
        shp[d], shp[n + d] = idx.shape
        idx = (idx * stride).reshape(shp)
        ok = ok.reshape(shp)
        flat = idx if flat is None else flat + idx
        valid = ok if valid is None else valid & ok
    Os = flat.shape[:n]
    flat = flat.reshape(*Os, -1)
    valid = valid.expand(*Os, *valid.shape[n:]).reshape(*Os, -1)
    pl = p.reshape(T, N * C, -1)
    ind = lex_window_argmax(pl, flat, valid)  # (N*C, *O)
    vals = torch.gather(pl, 2, ind.reshape(1, N * C, -1).expand(T, -1, -1))
    vals = vals.reshape(T, N, C, *Os)
    ind = ind.reshape(N, C, *Os)
    if not batched:
        vals, ind = vals.squeeze(1), ind.squeeze(0)
    return out(Series(vals, s.support, s.order, s.exact)), ind


@implements([aten.adaptive_max_pool2d.default, aten.adaptive_max_pool3d.default])
def adaptive_max_pool(func, x, output_size):
    n = 2 if func is aten.adaptive_max_pool2d.default else 3
    spatial = x.shape[-n:]
    return _window_max(x, [_adaptive_windows(L, L if o is None else o, x.device) for L, o in zip(spatial, output_size)])


@implements([aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default])
def max_pool_with_indices(func, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """max_pool by the field's order (torch ≥ 2.13 decomposes these ops; 2.11 does not)."""
    n = 2 if func is aten.max_pool2d_with_indices.default else 3

    def per_dim(v, default):
        v = list(v) if isinstance(v, (list, tuple)) else [v]
        v = v or list(default)
        return v * n if len(v) == 1 else v

    ks = per_dim(kernel_size, ())
    st, pd, dl = per_dim(stride, ks), per_dim(padding, (0,)), per_dim(dilation, (1,))
    spatial = x.shape[-n:]
    return _window_max(x, [_pool_windows(L, k, s_, p_, d_, ceil_mode, x.device)
                           for L, k, s_, p_, d_ in zip(spatial, ks, st, pd, dl)])


# -- embedding bags with LC weights ------------------------------------------------------------------


@implements([aten._embedding_bag.default, aten._embedding_bag_forward_only.default])
def embedding_bag(func, weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                  per_sample_weights=None, include_last_offset=False, padding_idx=-1):
    if not _lc(weight) and not _lc(per_sample_weights):
        return func(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
                    include_last_offset, padding_idx)
    n = indices.numel()
    B = offsets.numel() - 1 if include_last_offset else offsets.numel()
    dev = indices.device
    starts = offsets[:B]
    bag = torch.searchsorted(starts, torch.arange(n, device=dev), right=True) - 1
    keep = torch.ones(n, dtype=torch.bool, device=dev) if padding_idx is None or padding_idx < 0 \
        else indices != padding_idx
    bag_size = torch.zeros(B, dtype=torch.long, device=dev).index_add_(0, bag, keep.long())
    rows = weight.index_select(0, indices)  # (n, D)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.unsqueeze(1)
    D = weight.shape[1]
    if mode in (0, 1):
        rows = rows * keep.unsqueeze(1).to(weight.dtype)
        res = rows.new_zeros((B, D)).index_add(0, bag, rows)
        if mode == 1:
            res = res / bag_size.clamp(min=1).unsqueeze(1).to(weight.dtype)
        max_idx = torch.zeros(B if mode == 0 else 0, dtype=torch.long, device=dev)
        return res, bag, bag_size, max_idx
    # max: per bag and feature, the largest row in the field's order (empty bags give 0)
    K = max(int(bag_size.max()) if B else 0, 1)
    order_ = torch.argsort(bag * (n + 1) + torch.arange(n, device=dev) + (~keep).long() * n * (n + 1),
                           stable=True)
    first = torch.zeros(B, dtype=torch.long, device=dev)
    first[1:] = bag_size.cumsum(0)[:-1]
    k = torch.arange(K, device=dev)
    valid = k[None, :] < bag_size[:, None]
    pos = order_[(first[:, None] + k[None, :]).clamp(max=max(n - 1, 0))]  # (B, K) positions into rows
    sr = series(rows)
    planes = sr.planes.permute(0, 2, 1)  # (T, D, n)
    arg = lex_window_argmax(planes, pos, valid)  # (D, B)
    vals = torch.gather(planes, 2, arg.unsqueeze(0).expand(planes.shape[0], -1, -1)).permute(0, 2, 1)
    empty = bag_size == 0
    vals = torch.where(empty[None, :, None], 0, vals)
    max_idx = torch.where(empty[:, None], 0, indices[arg.T])
    return out(Series(vals, sr.support, sr.order, sr.exact)), bag, bag_size, max_idx


# -- layer norm: a first-order jet (torchlc._jet), general inputs through the decomposition -------------


@implements([aten.native_layer_norm.default])
def native_layer_norm(func, x, normalized_shape, weight, bias, eps):
    s = first_order(x)
    if s is None or not eps > 0 or _lc(weight) or _lc(bias):  # eps = 0: the variance may start at ε²
        return decomposed(func, x, normalized_shape, weight, bias, eps)
    o, mean, rstd = _jet.layer_norm(s.planes, len(normalized_shape), weight, bias, eps, stats=True)
    dt = s.planes.dtype
    stats_dt = dt if x.device.type in ("cpu", "mtia") else mean.dtype  # as torch's reference
    exact = A.min_exact(s.exact, s.order)
    return (out(Series(o.to(dt), s.support, s.order, exact)),
            out(Series(mean.to(stats_dt), s.support, s.order, s.exact)),
            out(Series(rstd.to(stats_dt), s.support, s.order, exact)))


# -- PyTorch's fused transformer fast path (eval / no-grad): the same math, unfused --------------------


def _expand_mask(mask, mask_type, B, H, L, S_):
    if mask is None:
        return None
    if mask_type == 1 or (mask_type is None and mask.dim() == 2 and mask.shape == (B, S_) and B != L):
        mask = mask.view(B, 1, 1, S_)
    elif mask.dim() == 3:
        mask = mask.view(B, -1, L, S_)
    return mask


def _mha_math(query, key, value, E, H, qkv_w, qkv_b, proj_w, proj_b, mask, mask_type):
    import torch.nn.functional as F

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


def _sdpa_jet(Q, K, V, attn_mask, is_causal, scale, enable_gqa, *, zero_dead_rows=True):
    """softmax(q·kᵀ·scale + mask)·v on first-order planes (2, …, L, E), as PyTorch's math SDPA (a bool
    mask marks what to attend to; with ``zero_dead_rows``, rows that are entirely masked give 0, like
    ``_safe_softmax``; the scale multiplies the scores, where the math kernel scales q and k by √scale
    each: equal up to rounding). Returns output and attention-weight planes and the masked score
    planes."""
    E, L, S_ = Q.shape[-1], Q.shape[-2], K.shape[-2]
    if enable_gqa and Q.shape[-3] != K.shape[-3]:
        rep = Q.shape[-3] // K.shape[-3]
        K, V = K.repeat_interleave(rep, dim=-3), V.repeat_interleave(rep, dim=-3)
    if is_causal:
        attn_mask = torch.ones(L, S_, dtype=torch.bool, device=Q.device).tril()
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=Q.dtype, device=Q.device).masked_fill(~attn_mask, float("-inf"))
    # only an explicit mask can leave a row entirely −inf on finite inputs (a causal one never does)
    dead_rows = zero_dead_rows and attn_mask is not None and not is_causal
    return _jet.attention(Q, K, V, scale if scale is not None else 1.0 / E**0.5, attn_mask, zero_dead_rows=dead_rows)


def _sdpa_first_order(query, key, value, attn_mask, dropout_p):
    """The first-order series of q, k, v when the SDPA jet applies (else None). A plain operand (a
    plain memory in cross-attention) joins with a zero ε¹ plane: it is exactly itself + 0ε."""
    qkv = [first_order(t) for t in (query, key, value)]
    lc = [s for s in qkv if s is not None]
    if not lc or dropout_p > 0.0 or _lc(attn_mask):
        return None
    for i, t in enumerate((query, key, value)):
        if qkv[i] is None:
            if isinstance(t, LCTensor):  # another support or order: the general path
                return None
            qkv[i] = Series(torch.stack([t, torch.zeros_like(t)]), lc[0].support, lc[0].order, None)
    return tuple(qkv)


@implements([aten._scaled_dot_product_attention_math.default])
def sdpa_math(func, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, dropout_mask=None,
              scale=None, enable_gqa=False):
    """PyTorch's math SDPA (reached undecomposed under inference_mode) in one dispatch."""
    qkv = _sdpa_first_order(query, key, value, attn_mask, dropout_p)
    if qkv is None:
        return func.decompose(query, key, value, attn_mask, dropout_p, is_causal, dropout_mask, scale=scale,
                              enable_gqa=enable_gqa)
    o, attn, _ = _sdpa_jet(*(t.planes for t in qkv), attn_mask, is_causal, scale, enable_gqa)
    sq = qkv[0]
    exact = A.min_exact(*(s.exact for s in qkv), sq.order)
    return out(Series(o, sq.support, sq.order, exact)), out(Series(attn, sq.support, sq.order, exact))


@implements([aten._scaled_dot_product_flash_attention_for_cpu.default])
def sdpa_flash_cpu(func, query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
    """The CPU flash-attention kernel's result (output, logsumexp) on first-order q, k, v; the
    logsumexp's ε¹ coefficient is Σ softmax·(score's ε¹)."""
    if _sdpa_first_order(query, key, value, attn_mask, dropout_p) is None:
        return decomposed(func, query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    return _attention_with_lse(query, key, value, attn_mask, dropout_p, is_causal, scale)


def _attention_with_lse(query, key, value, attn_mask, dropout_p, is_causal, scale):
    """(output, logsumexp) of attention on LC q, k, v: the jet for first-order inputs; otherwise
    PyTorch's math kernel through the LC rules, and no logsumexp (None). The logsumexp is an
    auxiliary output kept only for these kernels' own backward, which LC wrappers never run."""
    gqa = query.shape[-3] != key.shape[-3]
    qkv = _sdpa_first_order(query, key, value, attn_mask, dropout_p)
    if qkv is not None:
        planes = [t.planes for t in qkv]
        fused = _flash_jet(*planes, attn_mask, is_causal, scale)
        if fused is not None:
            o, lse = fused
        else:
            o, attn, scores = _sdpa_jet(*planes, attn_mask, is_causal, scale, gqa)
            lse = upcast(_logsumexp_planes(attn, scores))
        sq = qkv[0]
        exact = A.min_exact(*(s.exact for s in qkv), sq.order)
        return out(Series(o, sq.support, sq.order, exact)), out(Series(lse, sq.support, sq.order, exact))
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
    return o.contiguous(), _logsumexp_planes(attn, scores).to(torch.promote_types(Q.dtype, torch.float32))


@flash_attention_jet.register_fake
def _flash_attention_jet_fake(Q, K, V, ignore, scale, is_causal, zero_dead_rows):
    return Q.new_empty(Q.shape), Q.new_empty(Q.shape[:-1], dtype=torch.promote_types(Q.dtype, torch.float32))


# devices on which graphs traced with grad off call the attention jet as the opaque op above
OPAQUE_ATTENTION_DEVICES = {"cuda"}


@implements([aten._scaled_dot_product_efficient_attention.default])
def sdpa_efficient(func, query, key, value, attn_bias, compute_log_sumexp, dropout_p=0.0, is_causal=False, *,
                   scale=None):
    """CUDA memory-efficient attention on LC inputs: the same math (the jet for first order); the
    RNG outputs are empty (torchlc's dropout, if any, ran through the math kernel)."""
    o, lse = _attention_with_lse(query, key, value, attn_bias, dropout_p, is_causal, scale)
    empty = torch.empty(0, dtype=torch.int64, device=query.device)
    return o, (lse if lse is not None and compute_log_sumexp else empty.float()), empty, empty


def _flash_outputs(o, lse, query, key):
    """The output tuple of the CUDA flash and cuDNN kernels: output, logsumexp, then sequence and RNG
    bookkeeping that LC results do not have (empty)."""
    empty = torch.empty(0, dtype=torch.int64, device=query.device)
    return (o, lse if lse is not None else empty.float(), empty, empty, query.shape[-2], key.shape[-2], empty,
            empty, torch.empty(0, dtype=query.dtype, device=query.device))


@implements([aten._scaled_dot_product_flash_attention.default])
def sdpa_flash(func, query, key, value, dropout_p=0.0, is_causal=False, return_debug_mask=False, *, scale=None):
    """CUDA flash attention on LC inputs: the same math (the jet for first order)."""
    o, lse = _attention_with_lse(query, key, value, None, dropout_p, is_causal, scale)
    return _flash_outputs(o, lse, query, key)


@implements([aten._scaled_dot_product_cudnn_attention.default])
def sdpa_cudnn(func, query, key, value, attn_bias, compute_log_sumexp, dropout_p=0.0, is_causal=False,
               return_debug_mask=False, *, scale=None):
    """cuDNN attention on LC inputs: the same math (the jet for first order)."""
    o, lse = _attention_with_lse(query, key, value, attn_bias, dropout_p, is_causal, scale)
    return _flash_outputs(o, lse if compute_log_sumexp else None, query, key)


def _plain_weights(*ts) -> bool:
    return not any(_lc(t) for t in ts)


@implements([aten._native_multi_head_attention.default])
def native_multi_head_attention(func, query, key, value, embed_dim, num_head, qkv_weight, qkv_bias,
                                proj_weight, proj_bias, mask=None, need_weights=True,
                                average_attn_weights=True, mask_type=None):
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


def _residual_blocks(x, sa, ff, ln1, ln2, norm_first):
    """The encoder layer's residual structure, shared by the jet and the LC paths (``x + …`` adds
    planes termwise in the first, LC numbers in the second)."""
    if norm_first:
        x = x + sa(ln1(x))
        return x + ff(ln2(x))
    x = ln1(x + sa(x))
    return ln2(x + ff(x))


def _encoder_layer_jet(weights, consts, X, mask=None):
    """PyTorch's fused eval encoder layer on first-order planes X (2, B, L, E), plain weights (in the
    aten op's order) and ``consts`` (embed_dim, num_heads, use_gelu, norm_first, eps, mask_type);
    ``mask`` is the caller's copy of the mask (a CUDA graph's static buffer when graphed)."""
    (qkv_weight, qkv_bias, proj_weight, proj_bias, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2,
     ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2) = weights
    embed_dim, num_heads, use_gelu, norm_first, eps, mask_type = consts
    mha = (embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight)
    if norm_first:

        def ff(Y):
            h = _jet.linear(Y, ffn_weight_1, ffn_bias_1)
            return _jet.linear(_jet.gelu(h) if use_gelu else _jet.relu(h), ffn_weight_2, ffn_bias_2)

        def ln(w, b):
            return lambda Y: _jet.layer_norm(Y, 1, w, b, eps)

        return _residual_blocks(X, lambda Y: _mha_jet(Y, Y, Y, *mha, proj_bias, mask, mask_type, True, False)[0], ff,
                                ln(norm_weight_1, norm_bias_1), ln(norm_weight_2, norm_bias_2), True)
    # post-norm: each linear's bias goes into the kernel that consumes its output (the add & norm,
    # the relu), which also adds the residual: no separate passes over the planes
    sa = _mha_jet(X, X, X, *mha, None, mask, mask_type, True, False)[0]  # out-projection's bias: below
    X1 = _jet.layer_norm(sa, 1, norm_weight_1, norm_bias_1, eps, residual=X, bias0=proj_bias)
    h = _jet.linear(X1, ffn_weight_1)
    h = _jet.gelu(_jet.add_to_plane(h, 0, ffn_bias_1)) if use_gelu else _jet.relu(h, bias0=ffn_bias_1)
    Y = _jet.linear(h, ffn_weight_2)
    return _jet.layer_norm(Y, 1, norm_weight_2, norm_bias_2, eps, residual=X1, bias0=ffn_bias_2)


def _encoder_layer_eager(X, mask, weights, consts):
    """The layer's jet run eagerly: ~100 torch calls for ~20 kernels, so on CUDA, where the host time
    is most of it, it replays as a CUDA graph from the second call with this signature (_graphs)."""
    moving = (X,) if mask is None else (X, mask)
    return _graphs.graphed("encoder_layer", functools.partial(_encoder_layer_jet, weights, consts), moving,
                           weights, consts)


@torch.library.custom_op("torchlc::encoder_layer_jet", mutates_args=())
def encoder_layer_jet(planes: torch.Tensor, mask: torch.Tensor | None, weights: list[torch.Tensor], embed_dim: int,
                      num_heads: int, use_gelu: bool, norm_first: bool, eps: float,
                      mask_type: int | None) -> torch.Tensor:
    """The encoder layer's jet as one opaque op in traced graphs (torch.compile, torchlc.compile) on
    CUDA: it runs the hand-fused eager jet (Triton kernels, and a CUDA graph of its own in default
    mode) where Inductor would otherwise generate ~100 kernels from the jet's formulas, several per
    layer norm and softmax jet. Planes in, planes (2, B, L, E) out, contiguous."""
    consts = (embed_dim, num_heads, use_gelu, norm_first, eps, mask_type)
    return _encoder_layer_eager(planes, mask, tuple(weights), consts).contiguous()


@encoder_layer_jet.register_fake
def _encoder_layer_jet_fake(planes, mask, weights, embed_dim, num_heads, use_gelu, norm_first, eps, mask_type):
    return planes.new_empty(planes.shape)


# devices on which traced graphs call the layer's jet as the opaque op above instead of tracing its
# formulas: where hand-fused kernels and eager CUDA graphs exist. On CPU, Inductor's code for the
# formulas is what the eager jet would run anyway.
OPAQUE_ENCODER_DEVICES = {"cuda"}


@implements([aten._transformer_encoder_layer_fwd.default])
def transformer_encoder_layer_fwd(func, src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight,
                                  proj_bias, use_gelu, norm_first, eps, norm_weight_1, norm_bias_1,
                                  norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2,
                                  ffn_bias_2, mask=None, mask_type=None):
    """PyTorch's fused eval encoder layer. First-order inputs with plain weights: on the planes with
    the jets (one LC dispatch and 22 CUDA kernels per layer instead of ~45 LC dispatches; one opaque
    op when traced on CUDA); otherwise the same math through the LC rules."""
    import torch.nn.functional as F

    weights = (qkv_weight, qkv_bias, proj_weight, proj_bias, norm_weight_1, norm_bias_1, norm_weight_2,
               norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2)
    consts = (embed_dim, num_heads, use_gelu, norm_first, eps, mask_type)
    s = first_order(src)
    if s is not None and eps > 0 and _plain_weights(*weights, mask):
        P = s.planes
        if _tracing() and P.device.type in OPAQUE_ENCODER_DEVICES and not _is_wrapped(P):
            P = torch.ops.torchlc.encoder_layer_jet(P, mask, list(weights), *consts)
        else:
            P = _encoder_layer_eager(P, mask, weights, consts)
        return out(Series(P, s.support, s.order, A.min_exact(s.exact, s.order)))

    def ff(x):
        h = F.linear(x, ffn_weight_1, ffn_bias_1)
        return F.linear(F.gelu(h) if use_gelu else F.relu(h), ffn_weight_2, ffn_bias_2)

    def ln(w, b):
        return lambda x: F.layer_norm(x, (embed_dim,), w, b, eps)

    mha_args = (embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, mask, mask_type)
    return _residual_blocks(src, lambda x: _mha_math(x, x, x, *mha_args)[0], ff, ln(norm_weight_1, norm_bias_1),
                            ln(norm_weight_2, norm_bias_2), norm_first)


from . import shape as _shape  # noqa: E402

# -- constant_pad_nd: the fill value is a real number (ε⁰ plane only) -----------------------------------
# Padding is linear in the input, but the fill value is not scaled with it: it goes on the ε⁰ plane
# and the other planes are padded with zeros.


def _constant_pad_nd(func, x, pad, value=0):
    sx = series(x)
    planes = func(sx.planes, pad, 0)  # the pad covers trailing (element) dims only: one call
    res = Series(planes, sx.support, sx.order, sx.exact)
    if value != 0:
        region = func(torch.zeros(x.shape, dtype=torch.bool, device=planes.device), pad, True)
        if S.ZERO in res.support:
            k = res.support.index(S.ZERO)
            p0 = torch.where(region, torch.tensor(value, dtype=planes.dtype, device=planes.device), planes[k])
            planes = torch.cat([planes[:k], p0.unsqueeze(0), planes[k + 1 :]])
            res = Series(planes, res.support, res.order, res.exact)
        else:
            fill = torch.where(region, torch.tensor(value, dtype=planes.dtype, device=planes.device), 0.0)
            res = A.add(res, Series(fill.unsqueeze(0), (S.ZERO,)))
    return out(res)


register([aten.constant_pad_nd.default], _constant_pad_nd, kind="structural")


# -- scatter_reduce: sum/mean per plane; amax/amin by the field's order; prod as Cauchy products -------
from .._algebra import min_exact
from .._context import inner_is_plain as _inner_is_plain
from .._context import speculation_record
from .reductions import _tree_prod  # noqa: E402


def _scatter_operands(x, index, src):
    """Series of self and of the part of src that index reads (src[:index.shape])."""
    sx, ss = series(x), series(src)
    used = (slice(None),) + tuple(slice(0, n) for n in index.shape)
    return sx, Series(ss.planes[used], ss.support, ss.order, ss.exact)


def _scatter_extreme(x, d, index, src, largest, include_self):
    """amax/amin in the field's order (lexicographic over the planes, lowest exponent first). Plane t
    of the result is the max of plane t over the candidates that tie with the max on planes < t, so
    every plane is one of the inputs' coefficients, and autograd follows torch's scatter_reduce rule
    (a tie shares the gradient evenly), on the ε⁰ plane exactly as for the plain tensors."""
    sx, ss = _scatter_operands(x, index, src)
    u = S.union(sx.support, ss.support)
    px = sx.planes if sx.support == u else A._place(sx.planes, sx.support, u, sx.shape)
    ps = ss.planes if ss.support == u else A._place(ss.planes, ss.support, u, ss.shape)
    red, fill = ("amax", float("-inf")) if largest else ("amin", float("inf"))
    dev = px.device
    cand_x = torch.ones(px.shape[1:], dtype=torch.bool, device=dev)
    if not include_self:  # self takes part only where no src element lands
        cand_x = ~torch.zeros_like(cand_x).scatter(d, index, True)
    cand_s = torch.ones(index.shape, dtype=torch.bool, device=dev)
    planes, nan = [], None
    for t in range(len(u)):
        xt = torch.where(cand_x, px[t], fill)
        st = torch.where(cand_s, ps[t], fill)
        m = xt.scatter_reduce(d, index, st, red, include_self=True)
        if nan is not None:  # a NaN on a lower plane left no candidates: NaN throughout
            m = torch.where(nan, float("nan"), m)
        planes.append(m)
        if t + 1 < len(u):
            cand_x = cand_x & (xt == m)
            cand_s = cand_s & (st == m.gather(d, index))
            nan = m.isnan() if nan is None else nan | m.isnan()
    return out(
        Series(torch.stack(planes), u, A.result_order(sx, ss), min_exact(sx.exact, ss.exact))
    )


def _max_group_size(counts, bound):
    """Largest number of src elements sharing a target: from the data in eager mode (one host sync),
    speculated and checked under torchlc.compile, the static bound when traced otherwise."""
    rec = speculation_record()
    if rec is not None:
        from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

        with disable_proxy_modes_tracing():
            k = int(counts.max())
        rec.append(counts.max() > k)
        return k
    if _inner_is_plain(counts):
        return int(counts.max())
    return bound


def _scatter_prod(x, d, index, src, include_self):
    """prod: every target's src elements are laid out in a row of K slots (padded with 1) and
    multiplied by a log-depth tree of truncated Cauchy products (exact for zeros and signs alike),
    then times self where include_self; targets no src element reaches keep self."""
    sx, ss = _scatter_operands(x, index, src)
    shape, dev = sx.shape, sx.planes.device
    n, nd = sx.planes[0].numel(), len(shape)
    strides = [1] * nd
    for k in range(nd - 2, -1, -1):
        strides[k] = strides[k + 1] * shape[k + 1]
    target = index * strides[d]  # flat position in self of each used src element
    for k in range(nd):
        if k != d:
            view = [1] * nd
            view[k] = -1
            target = target + torch.arange(index.shape[k], device=dev).view(view) * strides[k]
    target = target.reshape(-1)
    counts = torch.zeros(n, dtype=torch.long, device=dev).index_add(
        0, target, torch.ones_like(target)
    )
    K = _max_group_size(counts, index.shape[d])
    pos, perm = torch.sort(target, stable=True)
    rank = torch.arange(pos.numel(), device=dev) - torch.searchsorted(pos, pos)
    sup = S.union(ss.support, (S.ZERO,))  # padding slots hold the real number 1
    T = len(sup)
    rows = ss.planes.reshape(len(ss.support), -1)[:, perm]
    if sup != ss.support:
        rows = A._place(rows, ss.support, sup, rows.shape[1:])
    dense = rows.new_zeros((T, n * K))
    dense[sup.index(S.ZERO)] = 1.0
    dense = dense.index_copy(1, pos * K + rank, rows)
    res = _tree_prod(Series(dense.reshape(T, n, K), sup, ss.order, ss.exact), 1)
    flat_x = Series(sx.planes.reshape(len(sx.support), n), sx.support, sx.order, sx.exact)
    if include_self:
        res = A.bilinear(flat_x, res)
    pr, px, u = A.aligned(res, flat_x)
    planes = torch.where(counts > 0, pr, px).reshape(len(u), *shape)
    return out(Series(planes, u, A.result_order(res, flat_x), min_exact(res.exact, flat_x.exact)))


@implements([aten.scatter_reduce.two])
def scatter_reduce(func, x, dim, index, src, reduce, *, include_self=True):
    """sum and mean are linear in (self, src) jointly: once per plane. amax/amin select by the field's
    order; prod multiplies series. Exact throughout (no logarithms, no loops over elements)."""
    if reduce in ("sum", "mean"):
        return _shape.per_plane(
            func, (x, dim, index, src, reduce), {"include_self": include_self}, (0, 3)
        )
    if reduce not in ("amax", "amin", "prod"):
        raise ValueError(f"scatter_reduce: unknown reduce {reduce!r}")
    d = dim + x.dim() if dim < 0 else dim
    if index.numel() == 0:
        s = series(x)
        return out(Series(s.planes.clone(), s.support, s.order, s.exact))
    if reduce == "prod":
        return _scatter_prod(x, d, index, src, include_self)
    return _scatter_extreme(x, d, index, src, reduce == "amax", include_self)


@implements([aten._cdist_forward.default])
def cdist_forward(func, x1, x2, p, compute_mode=None):
    return torch.linalg.vector_norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, dim=-1)
