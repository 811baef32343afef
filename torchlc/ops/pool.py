"""Pooling windows: average pooling is linear (one call over all planes); max pooling and adaptive max
pooling select each window's maximum in the field's order (lexicographic over the planes)."""

from __future__ import annotations

import math

import torch

from .. import kernels
from .._algebra import Series
from .._context import inner_is_plain, tracing
from .._dispatch import implements
from .._tensor import series
from ._util import fold_batch, out

aten = torch.ops.aten


# -- average pooling: linear, once on all planes -------------------------------------------------------


@implements([aten.avg_pool2d.default, aten.avg_pool3d.default], kind="per_plane")
def avg_pool(func, x, *args, **kwargs):
    nd = 4 if func is aten.avg_pool2d.default else 5
    return out(fold_batch(lambda p: func(p, *args, **kwargs), series(x), nd))


# -- max pooling: a selection by the field's order ----------------------------------------------------


def _adaptive_windows(L, n_out, device):
    i = torch.arange(n_out, device=device)
    start = torch.div(i * L, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * L + n_out - 1, n_out, rounding_mode="floor")
    # the widest window, from the integers alone (no host read of a tensor: traceable)
    K = max(((j + 1) * L + n_out - 1) // n_out - j * L // n_out for j in range(n_out)) if n_out else 0
    k = torch.arange(K, device=device)
    idx = start[:, None] + k
    valid = idx < end[:, None]
    return idx.clamp(max=L - 1), valid


def lex_argmax(w, valid, nan="last"):
    """w (T, *B, K): K candidates per position, T planes; valid broadcasts to w's (*B, K). The
    position (keepdim, into K) of each first maximum in the field's order (lexicographic over the
    planes), among the valid candidates.

    NaN candidates (a NaN coefficient) as torch treats them. ``nan="last"``: the last NaN wins (max
    pooling's ``val > max || isnan(val)``), found plane by plane among the candidates still tied
    there: a plane's maximum is NaN exactly when one of them is (amax propagates NaN), so the
    window-sized work per plane is one ``isnan`` and one argmax over bytes (the maximum of the
    1-based positions of the NaNs). ``"leading"``: a NaN in the first valid position wins and later
    ones are skipped (embedding_bag's ``val > max`` scan). ``None``: the caller knows there is no NaN."""
    cand = valid.expand(w.shape[1:])
    K = w.shape[-1]
    if nan == "leading":
        is_nan = torch.isnan(w).any(0) & cand
        first = cand.to(torch.uint8).argmax(-1, keepdim=True)
        nan_wins, nan_at = is_nan.gather(-1, first), first
        cand = cand & ~is_nan
    elif nan is not None:
        nan_wins = nan_at = None
        rank = torch.arange(1, K + 1, device=w.device, dtype=torch.uint8 if K < 256 else torch.int32)
    for t in range(w.shape[0]):
        pm = torch.where(cand, w[t], float("-inf"))
        m = pm.amax(-1, keepdim=True)
        if nan == "last":
            found = torch.isnan(m)  # a NaN among this plane's candidates (none in earlier planes)
            last = (torch.isnan(pm) * rank).argmax(-1, keepdim=True)
            nan_at = last if nan_at is None else torch.where(found, last, nan_at)
            nan_wins = found if nan_wins is None else nan_wins | found
        cand = cand & (pm == m)
    first = cand.to(torch.uint8).argmax(-1, keepdim=True)
    return first if nan is None else torch.where(nan_wins, nan_at, first)


def _nan_policy(p):
    """lex_argmax's NaN policy for max pooling of planes p: None (skip the NaN search) where p is seen
    to hold no NaN, which costs one pass over the planes and is only asked for on CPU, where reading
    the answer on the host does not wait for a device; "last" elsewhere."""
    if p.device.type == "cpu" and not tracing() and inner_is_plain(p) and not bool(torch.isnan(p).any()):
        return None
    return "last"


def lex_window_argmax(planes, flat_idx, valid, nan="last"):
    """planes (T, B, L); flat_idx/valid (*O, K) index windows of the last dim. Returns the index (into
    L) of each window's first maximum in the field's order (lexicographic over the planes; NaN as
    :func:`lex_argmax`)."""
    w = planes[:, :, flat_idx]  # (T, B, *O, K)
    k = lex_argmax(w, valid, nan)
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


def pool_planes(x, n):
    """``(series, planes, batched)`` of x for pooling over its n trailing dims: planes shaped
    (T, N, C, *spatial), an unbatched (C, *spatial) input given N = 1."""
    s = series(x)
    p = s.planes
    batched = p.dim() - 1 == n + 2
    return s, (p if batched else p.unsqueeze(1)), batched


def _window_max(x, windows, strides=None):
    """Max in the field's order over per-dim windows (``windows[d]`` = (idx (O_d, K_d), valid)) of the
    trailing spatial dims of x, (N, C, *spatial) or (C, *spatial): values and torch-style indices
    (flattened spatial position of each window's first maximum).

    The windows are read by advanced indexing, or, given ``strides`` (max_pool's (stride, padding,
    dilation) per dim: evenly spaced windows), copied from a strided view of the planes padded by
    edge replication (:func:`_strided_windows`): the same tensor, since replication pads with the
    clamped positions the index reads (resnet50's stem on CPU, 2×64×32×32, one thread: 7.0 → 4.2 ms)."""
    s, p, batched = pool_planes(x, len(windows))
    vals, ind = window_max_planes(p, windows, strides, _nan_policy(p))
    return _pooled(s, vals, ind, batched)


def _pooled(s, vals, ind, batched):
    if not batched:
        vals, ind = vals.squeeze(1), ind.squeeze(0)
    return out(Series(vals, s.support, s.order, s.exact)), ind


def window_max_planes(p, windows, strides, nan):
    """:func:`_window_max` on plain planes p (T, N, C, *spatial): (values (T, N, C, *O), indices
    (N, C, *O)); ``nan`` is :func:`lex_argmax`'s policy."""
    n = len(windows)
    T, N, C = p.shape[:3]
    spatial = p.shape[3:]
    # on a (O_0..O_{n-1}, K_0..K_{n-1}) grid by broadcasting: each dim's window positions, their
    # flattened spatial index and validity
    idxs, flat, valid = [], None, None
    for d, (idx, ok) in enumerate(windows):
        shp = [1] * (2 * n)
        shp[d], shp[n + d] = idx.shape
        idx, ok = idx.reshape(shp), ok.reshape(shp)
        idxs.append(idx)
        term = idx * math.prod(spatial[d + 1 :])
        flat = term if flat is None else flat + term
        valid = ok if valid is None else valid & ok
    Os, K = flat.shape[:n], math.prod(flat.shape[n:])
    flat = flat.reshape(*Os, K)
    valid = valid.expand(*Os, *valid.shape[n:]).reshape(*Os, K)
    if strides is not None and p.numel():
        w = _strided_windows(p, windows, strides).reshape(T, N, C, *Os, K)
    else:
        # each spatial dim indexed by its own positions: the planes' spatial dims are never merged by a
        # view before an indexed load (Inductor in torch 2.13 cannot compile such a load after a
        # pointwise op: "vr must not be None for symbol q2", which broke torchlc.compile of every CNN
        # with max_pool)
        w = p[(slice(None),) * 3 + tuple(idxs)].reshape(T, N, C, *Os, K)  # explicit sizes: any may be 0
    k = lex_argmax(w, valid, nan)  # (N, C, *O, 1)
    vals = torch.gather(w, -1, k.unsqueeze(0).expand(T, *k.shape)).squeeze(-1)  # (T, N, C, *O)
    ind = torch.gather(flat.expand(*k.shape[:-1], K), -1, k).squeeze(-1)  # (N, C, *O)
    return vals, ind


def max_pool_planes(p, ks, st, pd, dl, ceil_mode, nan):
    """max_pool of plain planes p (T, N, C, *spatial) from its integer arguments (per dim): the
    function the CPU compiles (Dynamo sees only p and Python numbers), and the strided windows'
    eager formula."""
    n = len(ks)
    windows = [_pool_windows(L, k, s_, p_, d_, ceil_mode, p.device)
               for L, k, s_, p_, d_ in zip(p.shape[-n:], ks, st, pd, dl, strict=True)]
    return window_max_planes(p, windows, list(zip(st, pd, dl)), nan)


def _strided_windows(p, windows, strides):
    """The windows of planes p (T, N, C, *spatial) as (T, N, C, *O, *K), the tensor the index of
    :func:`_window_max` reads: offset j of window o along dim d at o·stride − pad + j·dilation, clamped
    into the input (``strides[d]`` = (stride, pad, dilation)). Padding by edge replication is that
    clamp and ``unfold`` lays the windows out; then one copy, since passes over the overlapping
    strided view cost several times a pass over the copy."""
    n = len(windows)
    lead, spatial = p.shape[:-n], p.shape[-n:]
    needs = [(idx.shape[0] - 1) * st + (idx.shape[1] - 1) * dil + 1
             for (idx, _), (st, _, dil) in zip(windows, strides, strict=True)]
    pads = [(pad, max(need - L - pad, 0)) for (_, pad, _), need, L in zip(strides, needs, spatial, strict=True)]
    # replication pads the trailing dims of a (batch, channel, *spatial) tensor
    w = torch.nn.functional.pad(p.reshape(-1, *p.shape[-n - 1 :]), [v for lr in reversed(pads) for v in lr],
                                mode="replicate")
    w = w.reshape(*lead, *w.shape[-n:])
    for d, ((idx, _), (st, _, dil), need) in enumerate(zip(windows, strides, needs)):
        w = w.narrow(3 + d, 0, need).unfold(3 + d, (idx.shape[1] - 1) * dil + 1, st)[..., ::dil]
    return w.contiguous()


@implements([aten.adaptive_max_pool2d.default, aten.adaptive_max_pool3d.default], kind="decision")
def adaptive_max_pool(func, x, output_size):
    n = 2 if func is aten.adaptive_max_pool2d.default else 3
    spatial = x.shape[-n:]
    return _window_max(x, [_adaptive_windows(L, L if o is None else o, x.device) for L, o in zip(spatial, output_size)])


@implements([aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default], kind="decision")
def max_pool_with_indices(func, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """max_pool by the field's order (torch ≥ 2.13 decomposes these ops; 2.11 does not)."""
    n = 2 if func is aten.max_pool2d_with_indices.default else 3

    def per_dim(v, default):
        v = list(v) if isinstance(v, (list, tuple)) else [v]
        v = v or list(default)
        return v * n if len(v) == 1 else v

    ks = per_dim(kernel_size, ())
    st, pd, dl = per_dim(stride, ks), per_dim(padding, (0,)), per_dim(dilation, (1,))
    if x.device.type == "cpu":
        # strided windows on CPU only: on CUDA the gathered ones measured faster under torchlc.compile
        # (resnet50 bf16 on an H100, batch 32: 6.71 against 7.38 ms of GPU time per forward; Inductor
        # fuses the strided view's reads worse), and a gather is one kernel in eager mode
        s, p, batched = pool_planes(x, n)
        nan = _nan_policy(p)
        T, N, C = p.shape[:3]
        # large planes: the same function compiled by Inductor (one loop over the windows instead of
        # a copy of them and ~10 passes; resnet50's stem, 2×64×32×32, one thread: 6.4 → 1.5 ms),
        # batch and channels merged into one dynamic dim so a new batch size does not recompile
        merged = p.reshape(T, 1, N * C, *p.shape[3:])
        if kernels.cpu.usable(p) and (res := kernels.cpu.compiled(
                max_pool_planes, merged, tuple(ks), tuple(st), tuple(pd), tuple(dl), bool(ceil_mode), nan,
                dynamic=((0, 2),))) is not None:
            vals, ind = res
            vals, ind = vals.reshape(T, N, C, *vals.shape[3:]), ind.reshape(N, C, *ind.shape[2:])
        else:
            vals, ind = max_pool_planes(p, ks, st, pd, dl, ceil_mode, nan)
        return _pooled(s, vals, ind, batched)
    windows = [_pool_windows(L, k, s_, p_, d_, ceil_mode, x.device)
               for L, k, s_, p_, d_ in zip(x.shape[-n:], ks, st, pd, dl, strict=True)]
    return _window_max(x, windows)
