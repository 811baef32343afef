"""Pooling windows: average pooling is linear (one call over all planes); max pooling and adaptive max
pooling select each window's maximum in the field's order (lexicographic over the planes)."""

from __future__ import annotations

import math

import torch

from .._algebra import Series
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


def lex_argmax(w, valid):
    """w (T, *B, K): K candidates per position, T planes; valid broadcasts to w's (*B, K). The
    position (keepdim, into K) of each first maximum in the field's order (lexicographic over the
    planes), among the valid candidates."""
    cand = valid.expand(w.shape[1:])
    for t in range(w.shape[0]):
        pm = torch.where(cand, w[t], float("-inf"))
        m = pm.amax(-1, keepdim=True)
        cand = cand & (pm == m)
    return cand.to(torch.uint8).argmax(-1, keepdim=True)


def lex_window_argmax(planes, flat_idx, valid):
    """planes (T, B, L); flat_idx/valid (*O, K) index windows of the last dim. Returns the index (into
    L) of each window's first maximum in the field's order (lexicographic over the planes)."""
    w = planes[:, :, flat_idx]  # (T, B, *O, K)
    k = lex_argmax(w, valid)
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


def _window_max(x, windows):
    """Max in the field's order over per-dim windows (``windows[d]`` = (idx (O_d, K_d), valid)) of the
    trailing spatial dims of x, (N, C, *spatial) or (C, *spatial): values and torch-style indices
    (flattened spatial position of each window's first maximum)."""
    n = len(windows)
    s, p, batched = pool_planes(x, n)
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
    # each spatial dim indexed by its own positions: the planes' spatial dims are never merged by a
    # view before an indexed load (Inductor in torch 2.13 cannot compile such a load after a pointwise
    # op: "vr must not be None for symbol q2", which broke torchlc.compile of every CNN with max_pool)
    w = p[(slice(None),) * 3 + tuple(idxs)].reshape(T, N, C, *Os, K)  # explicit sizes: any may be 0
    k = lex_argmax(w, valid)  # (N, C, *O, 1)
    vals = torch.gather(w, -1, k.unsqueeze(0).expand(T, *k.shape)).squeeze(-1)  # (T, N, C, *O)
    ind = torch.gather(flat.expand(*k.shape[:-1], K), -1, k).squeeze(-1)  # (N, C, *O)
    if not batched:
        vals, ind = vals.squeeze(1), ind.squeeze(0)
    return out(Series(vals, s.support, s.order, s.exact)), ind


def _strided_window_max(x, ks, st, pd, dl, ceil_mode):
    """max_pool's windows as a strided view of the padded planes (``unfold`` per spatial dim), copied
    once, the field's order decided on the copy, then one gather of the chosen elements: the same
    values and indices as :func:`_window_max`, whose advanced-indexing gather of the k_0·k_1·… windows
    costs more than the strided copy (resnet50's stem on CPU, 2×64×32×32, one thread: 6.9 → 5.2 ms).
    CPU only (see :func:`max_pool_with_indices`)."""
    n = len(ks)
    s, p, batched = pool_planes(x, n)
    T = p.shape[0]
    spatial = p.shape[3:]
    pads, coords, valid = [], [], None
    for d, (L, k, s_, p_, d_) in enumerate(zip(spatial, ks, st, pd, dl, strict=True)):
        idx, ok = _pool_windows(L, k, s_, p_, d_, ceil_mode, p.device)  # (O_d, k_d)
        span = (k - 1) * d_ + 1
        need = (idx.shape[0] - 1) * s_ + span  # padded length the windows read
        pads.append((p_, need - L - p_))  # right padding may be negative: F.pad then crops
        shp = [1] * (2 * n)
        shp[d], shp[n + d] = idx.shape
        coords.append(idx)
        ok = ok.reshape(shp)
        valid = ok if valid is None else valid & ok
    flat_pad = [v for lr in reversed(pads) for v in lr]  # F.pad lists the last dim first
    w = torch.nn.functional.pad(p, flat_pad) if any(flat_pad) else p
    for d, (k, s_, d_) in enumerate(zip(ks, st, dl, strict=True)):
        w = w.unfold(3 + d, (k - 1) * d_ + 1, s_)[..., ::d_] if d_ > 1 else w.unfold(3 + d, k, s_)
    # w: (T, N, C, *O, *K), a view with overlapping strides; copied once, since each pass below over
    # such a view costs several times a pass over the copy (TensorIterator's slow strided loops)
    w = w.contiguous()
    kdims = tuple(range(-n, 0))
    cand = valid.expand(w.shape[1:])
    for t in range(T):
        pm = torch.where(cand, w[t], float("-inf"))
        cand = cand & (pm == pm.amax(kdims, keepdim=True))
    Ks = w.shape[-n:]
    k = cand.reshape(*cand.shape[:-n], math.prod(Ks)).to(torch.uint8).argmax(-1)  # (N, C, *O)
    # the chosen element's position per spatial dim (clamped, as _pool_windows clamps), its torch-style
    # flattened index, and its planes gathered per dim (never through a view merging spatial dims)
    pos, ind, rest = [], None, k
    for d in reversed(range(n)):
        j = rest % Ks[d]
        rest = rest // Ks[d]
        o = torch.arange(coords[d].shape[0], device=p.device).reshape([-1] + [1] * (n - 1 - d))
        pos.insert(0, coords[d][o, j])
    for d in range(n):
        term = pos[d] * math.prod(spatial[d + 1 :])
        ind = term if ind is None else ind + term
    N, C = p.shape[1:3]
    nI = torch.arange(N, device=p.device).reshape([N, 1] + [1] * n)
    cI = torch.arange(C, device=p.device).reshape([1, C] + [1] * n)
    vals = p[(slice(None), nI, cI, *pos)]  # (T, N, C, *O)
    if not batched:
        vals, ind = vals.squeeze(1), ind.squeeze(0)
    return out(Series(vals, s.support, s.order, s.exact)), ind


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
        return _strided_window_max(x, ks, st, pd, dl, ceil_mode)
    # on CUDA the gathered windows measured faster under torchlc.compile (resnet50 bf16 on an H100,
    # batch 32: 6.71 against 7.38 ms of GPU time per forward; Inductor fuses the strided view's reads
    # worse), and a gather is one kernel in eager mode
    spatial = x.shape[-n:]
    return _window_max(x, [_pool_windows(L, k, s_, p_, d_, ceil_mode, x.device)
                           for L, k, s_, p_, d_ in zip(spatial, ks, st, pd, dl, strict=True)])
