"""vmap helpers (functorch only; the LC-aware readers live in :mod:`torchlc._tensor`).

``torch.func.vmap`` hands our rules *physical* LCTensors, so ops on batched LC inputs need nothing
special. Two places do: building an LCTensor from batched planes (``x.nonstd(v)`` inside a vmap over
directions) and reading planes of a batched LCTensor (``torchlc.coeffs``). Both work one vmap level
at a time: unwrap the BatchedTensor, act on the physical tensor with the batch dimension placed right
after the plane dimension, and re-add the batch dimension at the same level.
"""

from __future__ import annotations

import torch
import torch._C._functorch as _F

__all__ = ["is_batched", "lift_planes"]


def is_batched(t) -> bool:
    return isinstance(t, torch.Tensor) and _F.is_batchedtensor(t)


def lift_planes(planes, build):
    """``build(physical_planes)`` for batched planes: returns the LC re-batched at each level."""
    if not is_batched(planes):
        return build(planes)
    level = _F.maybe_get_level(planes)
    bdim = _F.maybe_get_bdim(planes)
    phys = _F.get_unwrapped(planes).movedim(bdim, 1)
    inner = lift_planes(phys, build)
    return _F._add_batch_dim(inner, 0, level)
