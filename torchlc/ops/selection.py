"""Ops that select or locate elements by the field's order: nonzero, masked_select, searchsorted,
unique and allclose.

Each decides through the comparison rules (elementwise, :func:`torchlc._algebra.trusted_lead_sign`)
or through :mod:`torchlc.ops.order`, so a result that depends on dropped terms raises
``TruncationError`` instead of guessing.
"""

from __future__ import annotations

import torch

from .._algebra import Series, broadcast_planes
from .._dispatch import implements
from .._tensor import LCTensor, series
from . import order
from ._util import out

aten = torch.ops.aten


@implements([aten.nonzero.default], kind="decision")
def nonzero(func, x):
    return torch.nonzero(aten.ne.Scalar(x, 0))  # x ≠ 0 in the field; a truncated zero raises


@implements([aten.masked_select.default], kind="structural")
def masked_select(func, x, mask):
    if isinstance(mask, LCTensor):
        raise TypeError("masked_select: the mask must be a bool tensor, not an LCTensor (compare it first)")
    s = series(x)
    shape = torch.broadcast_shapes(s.shape, mask.shape)
    planes = broadcast_planes(s.planes, len(shape)).expand(s.planes.shape[0], *shape)
    return out(Series(planes[:, mask.expand(shape)], s.support, s.order, s.exact))


@implements([aten.searchsorted.Tensor], kind="decision")
def searchsorted(func, seq, values, *, out_int32=False, right=False, side=None, sorter=None):
    """The insertion index of each value: the number of sequence elements below it (``right``: at or
    below it), counted with the field's comparisons."""
    if side is not None:
        right = side == "right"
    if sorter is not None:
        seq = aten.gather.default(seq, -1, sorter)
    if seq.dim() == 1:
        s, v = seq, aten.unsqueeze.default(values, -1)  # values (*V, 1) against seq (n,)
    else:
        s, v = aten.unsqueeze.default(seq, -2), aten.unsqueeze.default(values, -1)  # (*B, 1, n), (*B, m, 1)
    # torch's binary-search predicate, not(s ≥ v) / not(s > v): a NaN value sorts after every element
    below = aten.logical_not.default(aten.gt.Tensor(s, v) if right else aten.ge.Tensor(s, v))
    return below.sum(-1).to(torch.int32 if out_int32 else torch.int64)


@implements([aten._unique2.default], kind="decision")
def unique(func, x, sorted=True, return_inverse=False, return_counts=False):
    """Sorted distinct values. Two elements are the same value when every coefficient agrees; for a
    truncated tensor, elements that agree through exact_through are undecidable and raise. Each NaN
    is distinct, as in torch."""
    s = series(x)
    flat = Series(s.planes.reshape(s.planes.shape[0], -1), s.support, s.order, s.exact)
    n = flat.planes.shape[1]
    idx = order.sort_indices(flat, 0, False, "unique")
    vals = flat.planes[:, idx]
    if n:
        same = (vals[:, 1:] == vals[:, :-1]).all(0)  # NaN ≠ NaN: every NaN starts its own run
        start = torch.cat([torch.ones(1, dtype=torch.bool, device=vals.device), ~same])
    else:
        start = torch.zeros(0, dtype=torch.bool, device=vals.device)
    run = start.long().cumsum(0) - 1
    uniq = out(Series(vals[:, start], s.support, s.order, s.exact))
    empty = torch.empty(0, dtype=torch.long, device=vals.device)
    inverse = empty
    if return_inverse:
        inverse = torch.empty_like(run).scatter_(0, idx, run).reshape(x.shape)
    counts = torch.bincount(run, minlength=int(start.sum())) if return_counts else empty
    return uniq, inverse, counts


@implements([aten.allclose.default], kind="decision")
def allclose(func, a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a − b| ≤ atol + rtol·|b| for every element, decided in the field (exactly, no extra slack)."""
    return bool(aten.isclose.default(a, b, rtol, atol, equal_nan).all())



