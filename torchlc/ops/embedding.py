"""Embedding bags with LC weights: sum and mean per bag, max in the field's order."""

from __future__ import annotations

import torch

from .._algebra import Series
from .._dispatch import implements
from .._tensor import series
from ._util import check_as_torch, is_lc, out
from .pool import lex_window_argmax

aten = torch.ops.aten


# -- embedding bags with LC weights ------------------------------------------------------------------


@implements([aten._embedding_bag.default, aten._embedding_bag_forward_only.default])
def embedding_bag(func, weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                  per_sample_weights=None, include_last_offset=False, padding_idx=-1):
    if not is_lc(weight) and not is_lc(per_sample_weights):
        return func(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
                    include_last_offset, padding_idx)
    n = indices.numel()
    if offsets.numel():  # one host read: embedding bags of LC weights are rare, a silent wrong bag is not
        first, last = int(offsets[0]), int(offsets[-1])
        if first != 0 or last > n:  # torch's CPU kernel refuses these offsets, in its words
            check_as_torch(func, weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
                           include_last_offset, padding_idx)
            raise ValueError(f"torchlc: {func.name()}: offsets must start at 0 and end at most at len(indices) "
                             f"= {n}; got offsets[0] = {first}, offsets[-1] = {last}")
        if include_last_offset and last != n:
            raise ValueError(
                f"torchlc: {func.name()} with include_last_offset=True needs offsets[-1] == len(indices) (got "
                f"{last} for {n} indices). PyTorch's CPU kernels disagree there (float32 sum ends the last "
                "bag at offsets[-1], float64 sum and max run to len(indices), mean divides by the count up "
                "to len(indices)); end the offsets at len(indices) or drop the trailing indices.")
    B = offsets.numel() - 1 if include_last_offset else offsets.numel()
    dev = indices.device
    if B <= 0:  # no bags (include_last_offset with one offset)
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return weight.index_select(0, empty), empty, empty, empty
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
    arg = lex_window_argmax(planes, pos, valid, nan="leading")  # (D, B); NaN as torch's max scan
    vals = torch.gather(planes, 2, arg.unsqueeze(0).expand(planes.shape[0], -1, -1)).permute(0, 2, 1)
    empty = bag_size == 0
    vals = torch.where(empty[None, :, None], 0, vals)
    max_idx = torch.where(empty[:, None], 0, indices[arg.T])
    return out(Series(vals, sr.support, sr.order, sr.exact)), bag, bag_size, max_idx
