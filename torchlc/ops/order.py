"""The field's order on LC values: the one place that sorts, ranks and matches them (semantics §4).

x < y iff the leading coefficient of y − x is positive, so LC values order *lexicographically* by
their coefficient planes, lowest exponent first. Every op whose result depends on that order — the
indices of max/min/sort/argsort/topk/kthvalue/median/mode, argmax/argmin, equal — goes through the
functions here, which follow two rules:

* **Only exact coefficients decide.** A truncated tensor (``exact_through`` set) is ordered by its
  planes up to ``exact_through``. Two elements that agree on all of them *tie* there, and which one
  is larger depends on terms the truncation dropped: where such a tie decides the result, the op
  raises :class:`~torchlc.TruncationError` naming itself and the order that would decide it. It never
  breaks such a tie silently. Ties of an untruncated tensor (nothing dropped) are exact and follow
  torch (argmax: first index; stable sort: original order); so are ties between elements known to
  be exactly 0 (a relu of a negative number).
* **NaN as torch.** An element with a NaN coefficient is NaN. argmax/argmin return the first NaN's
  index; ascending sorts put NaNs last and descending sorts first (NaN is the largest, as for topk).

Comparisons, sign, clamp, heaviside and rounding decide elementwise through
:func:`torchlc._algebra.trusted_lead_sign`, which follows the same rules.
"""

from __future__ import annotations

import torch

from .. import _algebra as A
from .._algebra import Series
from .._context import inner_is_plain, speculation_record
from ..errors import TruncationError

__all__ = ["nan_elements", "key_planes", "arg_extreme", "sort_indices", "check_ties", "equal"]


def nan_elements(planes: torch.Tensor) -> torch.Tensor:
    """Elements with a NaN coefficient (NaN values of the field's order)."""
    return torch.isnan(planes).any(0)


def key_planes(s: Series) -> torch.Tensor:
    """The planes that decide the order: those through ``exact_through`` (all of them when nothing
    was dropped); a NaN element has NaN in every plane, so each plane's sort treats it alike."""
    return torch.where(nan_elements(s.planes), float("nan"), A.exact_planes(s))


def _refuse(s: Series, ties: torch.Tensor, what: str) -> None:
    """Raise when any of ``ties`` (a bool tensor of undecidable pairs/positions) is set."""
    rec = speculation_record()
    if rec is not None:  # torchlc.compile's speculative trace: checked at run time
        rec.append(ties.any())
        return
    if not inner_is_plain(ties):
        return  # traced or batched: no host sync; the eager run of the same code raises
    if bool(ties.any()):
        raise TruncationError(
            f"{what}: {int(ties.sum())} comparison(s) of elements tie through ε^{s.exact}, but terms "
            f"above that were truncated, so the result depends on them; rerun with a higher order "
            f"(e.g. x.nonstd(order={A.needed_order(s)}))"
        )


def _pair_ties(keys: torch.Tensor, a_idx, b_idx, d: int, s: Series) -> torch.Tensor:
    """Whether the elements at indices a_idx and b_idx along element dim d tie through the key planes
    (both non-NaN, not both known to be exactly 0)."""
    ka = keys.gather(d + 1, a_idx.unsqueeze(0).expand(keys.shape[0], *a_idx.shape))
    kb = keys.gather(d + 1, b_idx.unsqueeze(0).expand(keys.shape[0], *b_idx.shape))
    tie = (ka == kb).all(0)
    if s.zero is not None:
        z = s.zero.expand(s.planes.shape[1:])
        tie = tie & ~(z.gather(d, a_idx) & z.gather(d, b_idx))
    return tie


def check_ties(s: Series, keys: torch.Tensor, order_idx: torch.Tensor, d: int, what: str, upto=None) -> None:
    """Refuse a sort whose adjacent sorted elements tie undecidably, among sorted positions
    ``0 .. upto`` (all when None; topk passes k so only ties that change its result count)."""
    if s.exact is None:
        return
    n = order_idx.shape[d]
    m = n if upto is None else min(upto + 1, n)
    if m < 2:
        return
    first = order_idx.narrow(d, 0, m - 1)
    second = order_idx.narrow(d, 1, m - 1)
    _refuse(s, _pair_ties(keys, first, second, d, s), what)


def _lex_arg(keys: torch.Tensor, d: int, largest: bool) -> torch.Tensor:
    """Index (keepdim) of the first lexicographic max/min of ``keys`` along element dim d; NaN wins."""
    if keys.shape[d + 1] == 0:
        raise IndexError(f"Expected reduction dim {d} to have non-zero size (an LCTensor of shape "
                         f"{tuple(keys.shape[1:])} has no max or min along it)")
    nan = torch.isnan(keys[0])
    cand = None
    fill = float("-inf") if largest else float("inf")
    for t in range(keys.shape[0]):
        p = keys[t]
        pm = p if cand is None else torch.where(cand, p, fill)
        m = pm.amax(d, keepdim=True) if largest else pm.amin(d, keepdim=True)
        hit = pm == m
        cand = hit if cand is None else cand & hit
    cand = torch.where(nan.any(d, keepdim=True), nan, cand)  # like torch: the first NaN
    return cand.to(torch.uint8).argmax(d, keepdim=True)


def arg_extreme(s: Series, d: int, largest: bool, what: str) -> torch.Tensor:
    """Index (keepdim) of the first max (``largest``) or min along element dim d, exactly decided."""
    keys = key_planes(s)
    idx = _lex_arg(keys, d, largest)
    if s.exact is not None and keys.shape[d + 1] > 1:
        # every other element that ties with the winner through the exact planes is undecidable
        n = keys.shape[d + 1]
        ar = torch.arange(n, device=keys.device).reshape([n if i == d else 1 for i in range(keys.dim() - 1)])
        others = ar.expand(keys.shape[1:])
        best = idx.expand(keys.shape[1:])
        ties = _pair_ties(keys, best, others, d, s) & (others != best)
        ties = ties & ~torch.isnan(keys[0]).gather(d, best)
        _refuse(s, ties, what)
    return idx


def sort_indices(s: Series, d: int, descending: bool, what: str, upto=None) -> torch.Tensor:
    """Stable lexicographic sort along element dim d (LSD: last key plane first), NaN as torch
    (last ascending, first descending), refusing undecidable ties (see :func:`check_ties`)."""
    keys = key_planes(s)
    idx = None
    for t in range(keys.shape[0] - 1, -1, -1):
        key = keys[t] if idx is None else keys[t].gather(d, idx)
        order = key.argsort(dim=d, descending=descending, stable=True)
        idx = order if idx is None else idx.gather(d, order)
    check_ties(s, keys, idx, d, what, upto)
    return idx


def equal(sa: Series, sb: Series, what: str = "equal") -> bool:
    """torch.equal in the field: same shape and every element equal (NaN is never equal). False as
    soon as an element differs through the exact planes of both; equal there but truncated is
    undecidable and raises."""
    if tuple(sa.shape) != tuple(sb.shape):
        return False
    pa, pb, sup = A.aligned(sa, sb)
    exact = A.min_exact(sa.exact, sb.exact)
    T = pa.shape[0]
    pa, pb = pa.expand(T, *sa.shape).reshape(T, -1), pb.expand(T, *sb.shape).reshape(T, -1)
    both = Series(torch.cat([pa, pb], 1), sup, A.result_order(sa, sb), exact)
    ka, kb = key_planes(both).split(pa.shape[1], 1)
    if not bool((ka == kb).all()):
        return False
    if exact is not None:
        ties = torch.ones(ka.shape[1:], dtype=torch.bool, device=ka.device)
        if sa.zero is not None and sb.zero is not None:
            ties = ties & ~(sa.zero.expand(sa.shape) & sb.zero.expand(sb.shape)).reshape(-1)
        _refuse(both, ties, what)
    return True
