"""Static exponent algebra.

A *support* is the sorted tuple of exact exponents (``Fraction``) a tensor can carry. It is metadata:
every function here works on tuples only and is cached, so rules pay for it once per distinct support.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

Support = tuple  # tuple[Fraction, ...], strictly increasing

ZERO = Fraction(0)
# the square root's exponents, built once (a Fraction is built in pure Python: ~0.5 µs per op)
HALF, MINUS_HALF = Fraction(1, 2), Fraction(-1, 2)


def as_exponent(q) -> Fraction:
    """Convert an int/Fraction/str/float-with-exact-value to a Fraction exponent."""
    if isinstance(q, Fraction):
        return q
    if isinstance(q, bool):
        raise TypeError("an exponent must be a number, not bool")
    if isinstance(q, (int, str)):
        return Fraction(q)
    if isinstance(q, float):
        f = float_exponent(q)
        if f is None:
            raise ValueError(
                f"exponent {q!r} is a float that is not a short rational; pass fractions.Fraction "
                f"(e.g. Fraction(1, 3)) so the exponent stays exact"
            )
        return f
    raise TypeError(f"cannot use {type(q).__name__} as an exponent; use int or fractions.Fraction")


# float exponents: the largest denominator a float may stand for (see float_exponent)
MAX_FLOAT_DENOMINATOR = 2**20
_MANTISSA = {"float64": 52, "float32": 23, "bfloat16": 7, "float16": 10}


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The rational with the smallest denominator in the closed interval [lo, hi] (0 ≤ lo ≤ hi)."""
    f = lo.numerator // lo.denominator
    if f == lo:
        return Fraction(f)
    if f + 1 <= hi:
        return Fraction(f + 1)
    return f + 1 / _simplest_between(1 / (hi - f), 1 / (lo - f))


@functools.lru_cache(maxsize=4096)
def float_exponent(value: float, dtype: str = "float64"):
    """The exponent a float stands for: the simplest rational (smallest denominator) that rounds to
    ``value`` in ``dtype`` ("float64", "float32", "bfloat16" or "float16"), if its denominator is at
    most :data:`MAX_FLOAT_DENOMINATOR`; else None (an irrational-looking float).

    One rule for every dtype, so float32 0.1 and float64 0.1 both mean 1/10, and a Fraction that
    Python turned into a float before torch saw it (``x ** Fraction(1, 5000)``) comes back exactly.
    """
    if not math.isfinite(value):
        return None
    exact = Fraction(value)
    if exact.denominator == 1:
        return exact
    m = _MANTISSA[dtype]
    mant, exp = math.frexp(abs(value))  # |value| = mant·2^exp, 0.5 ≤ mant < 1
    half_ulp = Fraction(2) ** (exp - m - 2)
    lo, hi = abs(exact) - half_ulp, abs(exact) + half_ulp
    f = _simplest_between(max(lo, Fraction(0)), hi)
    # the interval's ends round to even: keep f only if it really rounds to value in dtype
    if f.denominator > MAX_FLOAT_DENOMINATOR or not _rounds_to(f, abs(value), dtype):
        return exact if exact.denominator <= MAX_FLOAT_DENOMINATOR else None
    return f if value > 0 else -f


def scalar_exponent(e, dtype: str = "float64"):
    """The exact exponent a Python or tensor scalar stands for: ints, bools and Fractions as they are,
    floats by :func:`float_exponent` (None for an irrational-looking float). Python turns Fraction
    exponents into floats before dispatch; this recovers them, so x ** Fraction(1, 3) keeps field
    semantics ((-8 + ε)^(1/3) = -2 + ε/12)."""
    if isinstance(e, bool):
        e = int(e)
    if isinstance(e, int):
        return Fraction(e)
    if isinstance(e, Fraction):
        return e
    return float_exponent(float(e), dtype)


def float_exponents(u: torch.Tensor):
    """:func:`float_exponent` of many float64 values at once: ``(num, den, ok)`` int64 tensors and a
    mask; where ``ok``, u means num/den exactly (lowest terms, den ≤ MAX_FLOAT_DENOMINATOR).

    Vectorised continued fractions give a candidate p/q per value; IEEE division of the exact ints p
    and q is correctly rounded, so ``p / q == u`` in float64 says exactly that p/q rounds to u. For
    |u| < 2¹² two rationals of denominator ≤ 2²⁰ differ by ≥ 2⁻⁴⁰, more than a float64 rounding
    interval there (≤ 2⁻⁴¹): a verified candidate is the only one, hence :func:`float_exponent`'s
    answer. Values it cannot settle (larger, irrational-looking, non-finite) have ok False: use the
    scalar function for those."""
    u = u.to(torch.float64)
    x = u.abs()
    lim = MAX_FLOAT_DENOMINATOR
    p0, q0 = torch.zeros_like(x, dtype=torch.int64), torch.ones_like(x, dtype=torch.int64)
    p1, q1 = torch.ones_like(p0), torch.zeros_like(p0)
    num, den = torch.zeros_like(p0), torch.ones_like(p0)
    ok = torch.zeros_like(x, dtype=torch.bool)
    live = torch.isfinite(x) & (x < 2**12)
    rem = torch.where(live, x, 0.0)
    for _ in range(64):
        a = torch.floor(rem).clamp_max(2 * lim)
        ai = a.to(torch.int64)
        p2, q2 = ai * p1 + p0, ai * q1 + q0
        live = live & (q2 <= lim)
        hit = live & ~ok & (p2.to(torch.float64) / q2.to(torch.float64) == x)
        num, den, ok = torch.where(hit, p2, num), torch.where(hit, q2, den), ok | hit
        live = live & ~ok
        if not bool(live.any()):
            break
        frac = rem - a
        live = live & (frac > 0)
        rem = torch.where(live, 1.0 / torch.where(live, frac, 1.0), 0.0)
        p0, q0, p1, q1 = p1, q1, p2, q2
    return torch.where(u < 0, -num, num), den, ok


def _rounds_to(f: Fraction, value: float, dtype: str) -> bool:
    t = getattr(torch, dtype)
    return torch.tensor(float(f), dtype=torch.float64).to(t).item() == value and (
        dtype != "float64" or float(f) == value)


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
