"""Resampling: 3-d adaptive average pooling, anti-aliased bilinear upsampling and fractional max
pooling.

* ``_adaptive_avg_pool3d`` and ``_upsample_bilinear2d_aa`` are linear maps of their input (fixed
  weights that depend on shapes only), so T(Σ x_q ε^q) = Σ T(x_q) ε^q: one call on all planes, the
  plane dimension folded into the batch.
* ``fractional_max_pool2d/3d`` take, per (batch, channel), the maximum over pseudo-random windows.
  The windows depend only on ``random_samples`` u ∈ [0, 1) and the sizes (torch's rule, per spatial
  dim: start_i = ⌊(i + u)·α⌋ − ⌊u·α⌋ with α = (L − k)/(O − 1) computed in u's dtype, the last window
  starting at L − k), never on the values; within a window the maximum is taken in the field's order
  (lexicographic over the planes, the first maximum in row-major order, as torch scans), and its
  flattened spatial position is the index.
"""

from __future__ import annotations

import math

import torch

from .._algebra import Series
from .._dispatch import implements
from .._tensor import series
from ._util import check_on_meta, fold_batch, out
from .pool import lex_window_argmax, pool_planes

aten = torch.ops.aten


@implements([aten._adaptive_avg_pool3d.default], kind="per_plane")
def adaptive_avg_pool3d(func, x, output_size):
    return out(fold_batch(lambda p: func(p, output_size), series(x), 5))


@implements([aten._upsample_bilinear2d_aa.default], kind="per_plane")
def upsample_bilinear2d_aa(func, x, *args, **kwargs):
    return out(fold_batch(lambda p: func(p, *args, **kwargs), series(x), 4))


def _starts(u, L, n_out, k):
    """Window starts (B, n_out) along one dim from samples u (B,): torch's generate_intervals."""
    i = torch.arange(n_out, device=u.device)
    if n_out > 1:
        alpha = torch.tensor(L - k, dtype=u.dtype, device=u.device) / (n_out - 1)
        seq = ((i.to(u.dtype) + u[:, None]) * alpha).long() - (u[:, None] * alpha).long()
    else:
        seq = torch.zeros((u.shape[0], n_out), dtype=torch.long, device=u.device)
    if n_out > 0:
        seq[:, -1] = L - k
    return seq


def _fractional_max(x, kernel_size, output_size, samples, n):
    s, p, batched = pool_planes(x, n)
    T, N, C = p.shape[:3]
    spatial = p.shape[3:]
    B = N * C
    u = samples.reshape(B, n)
    # torch reads the samples in the order W, H (2-d) and T, H, W (3-d)
    order = [1, 0] if n == 2 else [0, 1, 2]
    flat = None
    for d in range(n):
        st = _starts(u[:, order[d]], spatial[d], output_size[d], kernel_size[d])  # (B, O_d)
        pos = st[:, :, None] + torch.arange(kernel_size[d], device=st.device)  # (B, O_d, K_d)
        stride = math.prod(spatial[d + 1:])
        shp = [B] + [1] * (2 * n)
        shp[1 + d], shp[1 + n + d] = output_size[d], kernel_size[d]
        term = (pos * stride).reshape(shp)
        flat = term if flat is None else flat + term
    n_win, K = math.prod(output_size), math.prod(kernel_size)
    flat = flat.expand(B, *output_size, *kernel_size).reshape(B, n_win, K)
    pl = p.reshape(T, B, math.prod(spatial))
    # per-(batch, channel) windows: each row b of the planes with its own index set
    w = torch.gather(pl, 2, flat.reshape(1, B, n_win * K).expand(T, -1, -1)).reshape(T, B, n_win, K)
    every = torch.ones(K, dtype=torch.bool, device=w.device)
    k_idx = lex_window_argmax(w.reshape(T, B * n_win, K), torch.arange(K, device=w.device), every)
    k_idx = k_idx.reshape(B, n_win)
    ind = torch.gather(flat, 2, k_idx.unsqueeze(-1)).squeeze(-1)  # (B, n_win)
    vals = torch.gather(pl, 2, ind.unsqueeze(0).expand(T, -1, -1))
    vals = vals.reshape(T, N, C, *output_size)
    ind = ind.reshape(N, C, *output_size)
    if not batched:
        vals, ind = vals.squeeze(1), ind.squeeze(0)
    return out(Series(vals, s.support, s.order, s.exact)), ind


@implements([aten.fractional_max_pool2d.default], kind="decision")
def fractional_max_pool2d(func, x, kernel_size, output_size, random_samples):
    check_on_meta(func, x, kernel_size, output_size, random_samples)
    return _fractional_max(x, list(kernel_size), list(output_size), random_samples, 2)


@implements([aten.fractional_max_pool3d.default], kind="decision")
def fractional_max_pool3d(func, x, kernel_size, output_size, random_samples):
    check_on_meta(func, x, kernel_size, output_size, random_samples)
    return _fractional_max(x, list(kernel_size), list(output_size), random_samples, 3)
