"""Ops on the floating-point representation: ``frexp`` and ``nextafter``.

**frexp(x) = (m, e)** with x = m·2^e, e an integer and ½ ≤ |m| < 1 (m = e = 0 for x = 0). For an LC
number x = a + d (a = st(x), d infinitesimal) with a ≠ 0, e is the integer with 2^(e−1) ≤ |x| < 2^e
in the field's order: frexp(a)'s exponent, lowered by one where |a| is a power of two and |x| < |a|
(x = 0.5 − ε has e = −1 and m = 2x = 1 − 2ε, where frexp(0.5) has e = 0); the comparison is the
field's, so a truncated tie raises. Then m = x·2^(−e) exactly (a power of two scales every
coefficient). Where a = 0 (x = 0 or infinitesimal) no integer e brings |x| into [½, 1); torch's
frexp(0) = (0, 0) is continued linearly: e = 0 and m = x, the derivative torch uses. An infinite
element has no such decomposition: m is NaN there (and e = 0).

**nextafter(x, y)** is the float next to x towards y. It is a rounding step of the representation,
not a function of the field: torchlc applies it to the standard parts and keeps x's infinitesimal
terms, nextafter(x, y) = nextafter(st x, st y) + (x − st x), which is the value and the derivative
(1 in x, 0 in y) that torch's forward AD gives it. Infinitesimal terms of y are ignored.
"""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .. import _support as S
from .._algebra import Series
from .._dispatch import implements
from .._tensor import LCTensor, series
from ._util import out

aten = torch.ops.aten
prims = torch.ops.prims


def _standard(s: Series) -> torch.Tensor:
    """The ε⁰ plane (zeros where the support lacks it)."""
    return s.planes[s.support.index(S.ZERO)] if S.ZERO in s.support else s.planes.new_zeros(s.shape)


@implements([aten.frexp.Tensor, prims.frexp.default])
def frexp(func, x):
    s = series(x)
    a = _standard(s)
    m0, e0 = torch.frexp(a)
    # |a| a power of two and |x| < |a| (in the field): x sits just below that power, one binade lower
    lower = (m0.abs() == 0.5) & aten.lt.Tensor(aten.abs.default(x), a.abs())
    e = e0 - lower.to(e0.dtype)
    planes = s.planes * torch.ldexp(torch.ones_like(a), -e)
    infinite = None
    for q, p in zip(s.support, s.planes):
        if q < 0:
            nz = p != 0
            infinite = nz if infinite is None else infinite | nz
    if infinite is not None:
        planes = torch.where(infinite, math.nan, planes)
        e = torch.where(infinite, 0, e)
    return out(Series(planes, s.support, s.order, s.exact)), e


@implements([aten.nextafter.default, prims.nextafter.default])
def nextafter(func, x, other):
    sx = series(x)
    so = series(other) if isinstance(other, torch.Tensor) else None
    a = _standard(sx)
    b = _standard(so) if so is not None else torch.as_tensor(other, dtype=a.dtype, device=a.device)
    nxt = torch.nextafter(a, b)
    if not isinstance(x, LCTensor):  # a plain x: a real result (y's infinitesimal terms are ignored)
        return out(Series(nxt.unsqueeze(0), (S.ZERO,), so.order, None))
    sup = A.S.union(sx.support, (S.ZERO,))
    planes = A.place(sx.planes, sx.support, sup, nxt.shape).clone()  # broadcast to the result's shape
    planes[sup.index(S.ZERO)] = nxt
    return out(Series(planes, sup, sx.order, sx.exact))
