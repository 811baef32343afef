"""Static exponent algebra.

A *support* is the sorted tuple of exact exponents (``Fraction``) a tensor can carry. It is metadata:
every function here works on tuples only and is cached, so rules pay for it once per distinct support.
"""

from __future__ import annotations

import functools
from fractions import Fraction

Support = tuple  # tuple[Fraction, ...], strictly increasing

ZERO = Fraction(0)


def as_exponent(q) -> Fraction:
    """Convert an int/Fraction/str/float-with-exact-value to a Fraction exponent."""
    if isinstance(q, Fraction):
        return q
    if isinstance(q, bool):
        raise TypeError("an exponent must be a number, not bool")
    if isinstance(q, (int, str)):
        return Fraction(q)
    if isinstance(q, float):
        f = Fraction(q)
        if f.denominator > 2**20:
            raise ValueError(
                f"exponent {q!r} is a float that is not a short rational; pass fractions.Fraction "
                f"(e.g. Fraction(1, 3)) so the exponent stays exact"
            )
        return f
    raise TypeError(f"cannot use {type(q).__name__} as an exponent; use int or fractions.Fraction")


@functools.lru_cache(maxsize=4096)
def union(a: Support, b: Support) -> Support:
    return tuple(sorted(set(a) | set(b)))


@functools.lru_cache(maxsize=4096)
def product_groups(a: Support, b: Support, order) -> tuple:
    """Cauchy product plan: ``(out_support, ((k, ((i, j), ...)), ...))`` keeping exponents ≤ order."""
    groups: dict = {}
    for i, qa in enumerate(a):
        for j, qb in enumerate(b):
            q = qa + qb
            if order is None or q <= order:
                groups.setdefault(q, []).append((i, j))
    out = tuple(sorted(groups))
    return out, tuple((k, tuple(groups[q])) for k, q in enumerate(out))


def truncates(a: Support, b: Support, order) -> bool:
    """Whether the product of supports a and b drops a term above ``order``."""
    return order is not None and bool(a) and bool(b) and a[-1] + b[-1] > order


def fmt_exponent(q: Fraction) -> str:
    sup = str.maketrans("0123456789-/", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻ᐟ")
    if q == 1:
        return "ε"
    return "ε" + str(q).translate(sup)
