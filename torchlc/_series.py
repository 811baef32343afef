"""``Series``: the planes form every rule computes on, and the metadata arithmetic of results.

A Series is ``planes`` of shape (T, *shape) over a static ``support`` (the sorted exponents), with the
truncation ``order`` and the ``exact`` bound (None: nothing dropped). It is what
:func:`torchlc._tensor.series` makes of any operand, and what the series algebra
(:mod:`torchlc._algebra`) takes and returns.
"""

from __future__ import annotations

import torch

from . import _support as S

__all__ = ["Series", "plain", "result_order", "min_exact", "broadcast_planes"]


class Series:
    """Planes view of any operand: ``planes`` of shape (T, *shape) over ``support``.

    ``order``/``exact`` are ``None`` for plain tensors and numbers (exact, never truncated).
    """

    __slots__ = ("planes", "support", "order", "exact", "zero")

    def __init__(self, planes, support, order=None, exact=None, zero=None):
        self.planes = planes
        self.support = support
        self.order = order
        self.exact = exact
        # optional bool mask: elements known to be exactly 0, dropped terms included (a product with
        # an exact-zero factor, a relu of a negative number). Decisions there need no higher order.
        self.zero = zero

    @property
    def shape(self):
        return self.planes.shape[1:]

    def plane(self, q):
        """Coefficient tensor of ε^q (a zeros tensor when q is not in the support)."""
        try:
            return self.planes[self.support.index(q)]
        except ValueError:
            return self.planes.new_zeros(self.shape)


def plain(t: torch.Tensor) -> Series:
    """A plain tensor as a one-plane real series (exact)."""
    return Series(t.unsqueeze(0), (S.ZERO,))


# (both run once or twice per op: a loop without a list, and no Fraction comparison, pure Python and
# about 0.3 µs, where the operands carry the same bound object, as they mostly do)
def result_order(*xs):
    """Truncation order of a result: the largest order among LC operands (None if none)."""
    o = None
    for x in xs:
        q = x.order
        if q is not None and q is not o and (o is None or q > o):
            o = q
    return o


def min_exact(*bounds):
    """Minimum of exactness bounds where None means +infinity."""
    m = None
    for b in bounds:
        if b is not None and b is not m and (m is None or b < m):
            m = b
    return m


def broadcast_planes(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """View planes (T, *s) as (T, 1, …, 1, *s) with ``ndim`` element dimensions, for broadcasting."""
    extra = ndim - (p.dim() - 1)
    if extra <= 0:
        return p
    return p.reshape(p.shape[0], *([1] * extra), *p.shape[1:])
