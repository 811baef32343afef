"""Ragged series: per-element sorted exponent runs (CSR), and the native algebra on them.

A :class:`Ragged` holds n = prod(shape) elements. Element i's terms sit at positions
``ptr[i]:ptr[i+1]`` of ``num`` (int64 exponent numerators) and ``vals`` (coefficients); exponent
= num / ``den``, one common denominator per tensor (a Python int), so exponents stay exact rationals
(semantics §1) and compare as integers. Within an element the exponents are strictly increasing. A
stored coefficient may be 0 (a term is *absent* iff its coefficient is 0); readers skip such terms.

``lo``/``hi`` are Python-int bounds on the numerators (lo ≤ num ≤ hi), propagated statically the way
supports are (sums for products, unions for sums), so no op reads the data to learn them. They bound
the overflow of rescaling (numerators stay below 2⁶² or the op raises :class:`RaggedOverflow`, and
the rule falls back to planes), pack (element, exponent) into one sort key, and drive the layout
policy (at most hi − lo + 1 distinct exponents).

Every op is vectorised over terms: segmented sorts (one int64 key per term), ``index_add_`` for
merging equal exponents, ``scatter_reduce_`` for per-element leading terms. Output sizes are
data-dependent, so each op synchronises with the host a few times (CSR is an eager, host-driven
layout). The mathematics is that of :mod:`torchlc._algebra` (semantics §2–§4), per element instead of
per plane: products are Cauchy products truncated at the order, x^r and 1/x expand around each
element's own leading term, analytic g(a + d) sums its Taylor series in d, decisions read each
element's leading exact coefficient.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from . import _support as S
from ._algebra import (
    _binom_coeffs,
    _real_power,
    check_budget,
    exact_mul,
    min_exact,
    needed_order,
    result_order,
)
from .errors import DomainError, TruncationError, is_strict

__all__ = ["Ragged", "RaggedOverflow", "from_planes", "to_planes", "support_of", "monomials", "gather",
           "add", "mul", "scale", "power", "power_each", "analytic", "lead", "lead_sign", "group_sum", "nan_rows",
           "concat"]

LIMIT = 2**62  # numerators, bounds and packed sort keys stay below this (int64 with headroom)
NAN = float("nan")


class RaggedOverflow(ArithmeticError):
    """Exponent numerators over the common denominator would not fit int64: the rule falls back to
    the planes path (never a wrong exponent)."""


def _fits(*ints):
    for v in ints:
        if abs(v) >= LIMIT:
            raise RaggedOverflow(f"exponent numerator {v} does not fit the CSR layout's int64 range")


class Ragged:
    """CSR series of ``shape`` (see the module docstring); ``order``/``exact`` as on Series."""

    __slots__ = ("ptr", "num", "vals", "den", "lo", "hi", "shape", "order", "exact")

    def __init__(self, ptr, num, vals, den, lo, hi, shape, order, exact):
        _fits(den, lo, hi)
        self.ptr, self.num, self.vals = ptr, num, vals
        self.den, self.lo, self.hi = int(den), int(lo), int(hi)
        self.shape = tuple(shape)
        self.order, self.exact = order, exact

    @property
    def n(self) -> int:
        return self.ptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.num.numel()

    def lengths(self):
        return self.ptr.diff()

    def rows(self):
        """Element index of every term."""
        return torch.repeat_interleave(torch.arange(self.n, device=self.ptr.device), self.lengths(),
                                       output_size=self.nnz)

    def meta(self, order=None, exact=None, shape=None):
        """Same metadata with ``order``/``exact``/``shape`` replaced where given."""
        return (self.shape if shape is None else shape, self.order if order is None else order,
                self.exact if exact is None else exact)

    def span(self) -> int:
        """Upper bound on the number of distinct exponents (the width planes would need)."""
        return self.hi - self.lo + 1 if self.nnz else 1

    def frac(self, k: int) -> Fraction:
        return Fraction(k, self.den)


# -- exponents ------------------------------------------------------------------------------------


def units(q, den: int) -> int:
    """q·den as an int (q must be a multiple of 1/den)."""
    q = Fraction(q)
    v = q * den
    if v.denominator != 1:
        raise ValueError(f"exponent {q} is not a multiple of 1/{den}")
    return int(v)


def floor_units(q, den: int) -> int:
    """The largest k with k/den ≤ q (truncation thresholds: keep num ≤ floor_units(order))."""
    q = Fraction(q)
    return (q.numerator * den) // q.denominator


def rescale(r: Ragged, den: int) -> Ragged:
    """The same exponents over the denominator ``den`` (a multiple of r.den): exact."""
    if den == r.den:
        return r
    f = den // r.den
    _fits(den, r.lo * f, r.hi * f)
    return Ragged(r.ptr, r.num * f, r.vals, den, r.lo * f, r.hi * f, r.shape, r.order, r.exact)


def common(*rs):
    den = 1
    for r in rs:
        den = math.lcm(den, r.den)
    return [rescale(r, den) for r in rs]


# -- building and canonical form ------------------------------------------------------------------


def _select(mask, *ts):
    """The entries of each t where ``mask`` holds (one nonzero, then index_select: several times
    faster than boolean indexing of each tensor on CPU)."""
    idx = mask.nonzero().squeeze(1)
    return tuple(t.index_select(0, idx) for t in ts)


def _ptr(rows, n, device):
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=device)
    if rows.numel():
        ptr[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return ptr


def canon(rows, num, vals, n, den, lo, hi, shape, order, exact, *, presorted=False, keep=None) -> Ragged:
    """A Ragged from unordered terms (element ``rows``, numerators ``num``, ``vals``): sorted by
    (element, exponent), equal exponents of an element summed (Cauchy products and sums), terms
    outside ``keep`` (a mask, e.g. truncation) and exact zeros dropped."""
    dev = vals.device
    if keep is not None:
        rows, num, vals = _select(keep, rows, num, vals)
    if not presorted and num.numel() > 1:
        span = hi - lo + 1
        if n * span < LIMIT:  # one packed key, element-major, exponent-minor: one sort
            key = rows * span + (num - lo)
            if n * span < 2**31:  # int32 keys sort several times faster (radix sort on CPU)
                key, perm = torch.sort(key.to(torch.int32))
                key = key.to(torch.int64)
            else:
                key, perm = torch.sort(key)
            vals = vals.index_select(0, perm)
            first = torch.ones(key.numel(), dtype=torch.bool, device=dev)
            torch.ne(key[1:], key[:-1], out=first[1:])
            seg = first.cumsum(0) - 1
            m = int(seg[-1]) + 1
            if m < key.numel():  # merge equal exponents of an element (index_add: sums in term order)
                vals = torch.zeros(m, dtype=vals.dtype, device=dev).index_add_(0, seg, vals)
                (key,) = _select(first, key)
            nz = vals != 0
            if not bool(nz.all()):
                key, vals = _select(nz, key, vals)
            rows = torch.div(key, span, rounding_mode="floor")
            num = key - rows * span + lo
            return _tight(Ragged(_ptr(rows, n, dev), num, vals, den, lo, hi, shape, order, exact))
        # two stable sorts (exponent, then element)
        perm = torch.argsort(num, stable=True)
        perm = perm.index_select(0, torch.argsort(rows.index_select(0, perm), stable=True))
        rows, num, vals = rows.index_select(0, perm), num.index_select(0, perm), vals.index_select(0, perm)
        first = torch.ones(num.numel(), dtype=torch.bool, device=dev)
        first[1:] = (rows[1:] != rows[:-1]) | (num[1:] != num[:-1])
        seg = first.cumsum(0) - 1
        m = int(seg[-1]) + 1
        if m < num.numel():
            vals = torch.zeros(m, dtype=vals.dtype, device=dev).index_add_(0, seg, vals)
            rows, num = _select(first, rows, num)
    nz = vals != 0
    if not bool(nz.all()):
        rows, num, vals = _select(nz, rows, num, vals)
    return _tight(Ragged(_ptr(rows, n, dev), num, vals, den, lo, hi, shape, order, exact))


def _tight(r: Ragged) -> Ragged:
    """r with its exponent bounds narrowed to the stored terms (one pass, one host read): cancelled
    or truncated terms no longer widen sort keys, overflow checks or the layout decision."""
    if r.nnz:
        lo, hi = torch.aminmax(r.num)
        r.lo, r.hi = int(lo), int(hi)
    else:
        r.lo = r.hi = 0
    return r


def monomials(num, vals, den, shape, order, exact=None, lo=None, hi=None) -> Ragged:
    """One term per element: exponent ``num``/den (an int or an int64 tensor) with coefficient
    ``vals`` (n,); zero coefficients are dropped."""
    n = vals.numel()
    dev = vals.device
    if isinstance(num, int):
        lo = hi = num
        num = torch.full((n,), num, dtype=torch.int64, device=dev)
    rows = torch.arange(n, device=dev)
    return canon(rows, num, vals, n, den, lo, hi, shape, order, exact, presorted=True)


def from_planes(planes, support, order, exact) -> Ragged:
    """Encode planes (T, *shape) over ``support``: only the nonzero terms, element-major."""
    T = planes.shape[0]
    shape = tuple(planes.shape[1:])
    flat = planes.reshape(T, -1)
    n = flat.shape[1]
    den = math.lcm(*(q.denominator for q in support)) if support else 1
    table = [units(q, den) for q in support] or [0]
    row, col = (flat.t() != 0).nonzero(as_tuple=True)  # element-major, then exponent
    vals = flat[col, row]
    num = torch.tensor(table, dtype=torch.int64, device=planes.device)[col]
    return Ragged(_ptr(row, n, planes.device), num, vals, den, min(table), max(table), shape, order, exact)


def support_of(r: Ragged) -> tuple:
    """The exponents r stores (its support, computed from the data: one sort and one host read)."""
    return tuple(Fraction(k, r.den) for k in torch.unique(r.num).tolist()) or (S.ZERO,)


def to_planes(r: Ragged, support, dtype=None) -> torch.Tensor:
    """Planes (T, *shape) over ``support`` (which must hold every stored exponent)."""
    dtype = dtype or r.vals.dtype
    T = len(support)
    planes = torch.zeros((T, r.n), dtype=dtype, device=r.vals.device)
    if r.nnz:
        table = torch.tensor([units(q, r.den) for q in support], dtype=torch.int64, device=r.num.device)
        pos = torch.searchsorted(table, r.num).clamp_max(T - 1)
        if not bool((table[pos] == r.num).all()):
            raise RuntimeError("torchlc: a CSR tensor holds an exponent outside the support it was decoded over")
        planes[pos, r.rows()] = r.vals.to(dtype)
    return planes.reshape(T, *r.shape)


def concat(rs, shape) -> Ragged:
    """The elements of every r in ``rs`` one after another (same denominator required)."""
    ptrs, off = [], 0
    for r in rs:
        ptrs.append(r.ptr[:-1] + off)
        off += r.nnz
    dev = rs[0].ptr.device
    ptr = torch.cat(ptrs + [torch.tensor([off], dtype=torch.int64, device=dev)])
    lo = min(r.lo for r in rs if r.nnz) if any(r.nnz for r in rs) else 0
    hi = max(r.hi for r in rs if r.nnz) if any(r.nnz for r in rs) else 0
    return Ragged(ptr, torch.cat([r.num for r in rs]), torch.cat([r.vals for r in rs]), rs[0].den, lo, hi,
                  shape, result_order(*rs), min_exact(*(r.exact for r in rs)))


def gather(r: Ragged, idx, shape) -> Ragged:
    """Elements r[idx] (flat int64 indices; −1 gives an empty element, i.e. 0): every data-movement
    op (views, indexing, broadcasting, joins) is this with the index map the op computes on
    ``arange(n)``."""
    idx = idx.reshape(-1)
    m = idx.numel()
    dev = r.ptr.device
    ok = idx >= 0
    safe = idx.clamp_min(0) if r.n else torch.zeros_like(idx)
    lens = r.lengths()
    cnt = torch.where(ok, lens.index_select(0, safe), 0) if r.n else torch.zeros_like(idx)
    ptr = torch.zeros(m + 1, dtype=torch.int64, device=dev)
    ptr[1:] = cnt.cumsum(0)
    total = int(ptr[-1])
    rows = torch.repeat_interleave(torch.arange(m, device=dev), cnt, output_size=total)
    if total:
        pos = torch.arange(total, device=dev) - ptr.index_select(0, rows) + r.ptr.index_select(0, safe).index_select(0, rows)
    else:
        pos = rows
    return Ragged(ptr, r.num.index_select(0, pos), r.vals.index_select(0, pos), r.den, r.lo, r.hi, shape, r.order,
                  r.exact)


def broadcast(r: Ragged, shape) -> Ragged:
    shape = tuple(shape)
    if r.shape == shape:
        return r
    idx = torch.arange(r.n, device=r.ptr.device).reshape(r.shape).expand(shape)
    return gather(r, idx, shape)


# -- + − × ------------------------------------------------------------------------------------------


def add(a: Ragged, b: Ragged, alpha=1) -> Ragged:
    """a + alpha·b: the per-element sorted merge (union of exponents, equal ones summed)."""
    shape = tuple(torch.broadcast_shapes(a.shape, b.shape))
    a, b = common(broadcast(a, shape), broadcast(b, shape))
    vb = b.vals if alpha == 1 else b.vals * alpha
    rows = torch.cat([a.rows(), b.rows()])
    lo, hi = min(a.lo, b.lo), max(a.hi, b.hi)
    return canon(rows, torch.cat([a.num, b.num]), torch.cat([a.vals, vb]), a.n, a.den, lo, hi, shape,
                 result_order(a, b), min_exact(a.exact, b.exact))


def scale(r: Ragged, c) -> Ragged:
    """r·c for a plain number or tensor c (broadcast): coefficients scale, exponents stay."""
    if isinstance(c, torch.Tensor):
        shape = tuple(torch.broadcast_shapes(r.shape, c.shape))
        r = broadcast(r, shape)
        cf = c.expand(shape).reshape(-1)
        res = Ragged(r.ptr, r.num, r.vals * cf[r.rows()], r.den, r.lo, r.hi, r.shape, r.order, r.exact)
        fin = torch.isfinite(cf)
        return res if bool(fin.all()) else _nan_where_nonfinite(res, ~fin, _nonfinite_rows(r))
    res = Ragged(r.ptr, r.num, r.vals * c, r.den, r.lo, r.hi, r.shape, r.order, r.exact)
    if not math.isfinite(c):
        return nan_rows(res, torch.ones(r.n, dtype=torch.bool, device=r.num.device))
    return res


def _lead_bound(r: Ragged) -> Fraction:
    """Lower bound on any element's leading exponent: its stored terms start at lo/den, and what a
    truncation dropped lies above exact_through."""
    b = Fraction(r.lo, r.den) if r.nnz else S.ZERO
    return b if r.exact is None else min(b, r.exact)


def _products(a: Ragged, b: Ragged):
    """Every pair (i, j) of terms of the same element: (element, i, j) per pair."""
    la, lb = a.lengths(), b.lengths()
    cnt = la * lb
    optr = torch.zeros(a.n + 1, dtype=torch.int64, device=cnt.device)
    optr[1:] = cnt.cumsum(0)
    total = int(optr[-1])
    rows = torch.repeat_interleave(torch.arange(a.n, device=cnt.device), cnt, output_size=total)
    k = torch.arange(total, device=cnt.device) - optr.index_select(0, rows)
    lbr = lb.index_select(0, rows)
    ka = torch.div(k, lbr, rounding_mode="floor")
    return rows, a.ptr.index_select(0, rows) + ka, b.ptr.index_select(0, rows) + (k - ka * lbr)


def mul(a: Ragged, b: Ragged, thr=None, thr_hi=None) -> Ragged:
    """Cauchy product per element (outer product of the two runs, sorted, equal exponents summed),
    truncated at the order — or, inside series, at a per-element threshold ``thr`` (numerators,
    at most ``thr_hi``)."""
    shape = tuple(torch.broadcast_shapes(a.shape, b.shape))
    a, b = common(broadcast(a, shape), broadcast(b, shape))
    order = result_order(a, b)
    rows, ia, ib = _products(a, b)
    num = a.num.index_select(0, ia) + b.num.index_select(0, ib)
    vals = a.vals.index_select(0, ia) * b.vals.index_select(0, ib)
    lo, hi = a.lo + b.lo, a.hi + b.hi
    keep, truncated = None, False
    if thr is not None:
        keep = num <= thr.index_select(0, rows)
        hi = min(hi, thr_hi)
    elif order is not None:
        top = floor_units(order, a.den)
        truncated = hi > top
        if truncated:
            keep = num <= top
            hi = top
    _fits(lo, hi)
    res = canon(rows, num, vals, a.n, a.den, lo, hi, shape, order, exact_mul(a, b, order, truncated, _lead_bound),
                keep=keep)
    return _nan_where_nonfinite(res, _nonfinite_rows(a), _nonfinite_rows(b))


def _nonfinite_rows(r: Ragged):
    """Elements holding an inf/NaN term (None when there is none: one check, one host read)."""
    bad = ~torch.isfinite(r.vals)
    if not bool(bad.any()):
        return None
    return torch.zeros(r.n, dtype=torch.int64, device=r.num.device).index_add_(0, r.rows(), bad.to(torch.int64)) > 0


def _nan_where_nonfinite(res: Ragged, *masks) -> Ragged:
    """A product with an element outside the field (inf/NaN) is NaN there, whatever the other factor
    holds: on planes inf·0 and NaN·0 reach every plane; a zero element of CSR has no term to do it."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return res
    bad = masks[0]
    for m in masks[1:]:
        bad = bad | m
    return nan_rows(res, bad)


# -- leading terms and the field's order -------------------------------------------------------------


def lead(r: Ragged, upto=None):
    """Per element: (position of the leading term or nnz if none, its coefficient (0 if none), NaN
    mask). ``upto``: only terms with num ≤ upto may lead (the exact ones)."""
    rows = r.rows()
    m = r.vals != 0
    if upto is not None:
        m = m & (r.num <= upto)
    pos = torch.arange(r.nnz, device=r.num.device)
    first = torch.full((r.n,), r.nnz, dtype=torch.int64, device=r.num.device)
    first.scatter_reduce_(0, rows, torch.where(m, pos, r.nnz), "amin")
    ext = torch.cat([r.vals, r.vals.new_zeros(1)])
    nan = torch.zeros(r.n, dtype=torch.int64, device=r.num.device).index_add_(
        0, rows, torch.isnan(r.vals).to(torch.int64)) > 0
    return first, ext[first], nan


def lead_sign(r: Ragged, what: str, matters=None):
    """Sign of each element's leading exact coefficient (NaN for NaN elements), refusing where an
    element is zero through ``exact_through`` of a truncated tensor (TruncationError, as on planes:
    :func:`torchlc._algebra.trusted_lead_sign`)."""
    upto = None if r.exact is None else floor_units(r.exact, r.den)
    _, c, nan = lead(r, upto)
    s = torch.where(nan, NAN, torch.sign(c))
    if r.exact is not None:
        amb = s == 0
        if matters is not None:
            amb = amb & matters.reshape(-1)
        if bool(amb.any()):
            raise TruncationError(
                f"{what}: {int(amb.sum())} element(s) are zero through ε^{r.exact} but terms above "
                f"were truncated, so the result depends on them; rerun with a higher order "
                f"(e.g. x.nonstd(order={needed_order(r)}))"
            )
    return s.reshape(r.shape)


def nan_rows(r: Ragged, bad) -> Ragged:
    """r with the elements of mask ``bad`` (n,) replaced by NaN (one NaN term at ε⁰)."""
    rows = r.rows()
    keep = ~bad[rows]
    kept = Ragged(_ptr(rows[keep], r.n, r.ptr.device), r.num[keep], r.vals[keep], r.den, r.lo, r.hi,
                  r.shape, r.order, r.exact)
    nan = monomials(0, torch.where(bad, NAN, 0.0).to(r.vals.dtype), r.den, r.shape, r.order, r.exact)
    nan.lo, nan.hi = min(r.lo, 0), max(r.hi, 0)
    return add(kept, nan)


# -- series: powers and analytic functions --------------------------------------------------------------


def _horner(coeffs, d: Ragged, thr, den, order, shape):
    """Σ_k coeffs[k]·d^k (coeffs: (n,) tensors) with every product truncated at the per-element
    threshold ``thr`` (numerators over den). d has positive exponents."""
    acc = monomials(0, coeffs[-1], den, shape, order)
    thr_hi = max(int(thr.amax()), 0) if thr.numel() else 0
    for c in reversed(coeffs[:-1]):
        acc = mul(acc, d, thr, thr_hi)
        acc.lo, acc.hi = min(acc.lo, 0), max(acc.hi, 0)
        acc = add(acc, monomials(0, c, den, shape, order))
    return acc


def _split(r: Ragged, keep):
    rows = r.rows()
    rk = rows[keep]
    return rk, r.num[keep], r.vals[keep]


def power(x: Ragged, r) -> Ragged:
    """x^r for a rational r (semantics §3): x = a ε^l (1 + d) around each element's own leading term,
    x^r = a^r ε^{lr} Σ_k C(r, k) d^k, truncated at the order; 0^r is 0 (r > 0), 1 (r = 0), NaN
    (r < 0); a < 0 with an even-denominator r is NaN."""
    r = Fraction(r)
    dev = x.num.device
    return power_each(x, torch.tensor([r.numerator], dtype=torch.int64, device=dev), r.denominator,
                      torch.zeros(x.n, dtype=torch.int64, device=dev))


def _real_power_each(a, Pd, Q, inv):
    """a^{r_i} per element, r_i = Pd[inv[i]]/Q, with the field's sign rule (odd denominators keep
    the sign of a negative base, even ones give NaN)."""
    if Pd.numel() == 1:
        return _real_power(a, Fraction(int(Pd[0]), Q))
    g = torch.gcd(Pd, torch.full_like(Pd, Q))
    odd_den = ((Q // g) % 2 == 1)[inv]
    odd_num = ((Pd // g) % 2 != 0)[inv]
    rf = (Pd.to(torch.float64) / Q).to(a.dtype)[inv]
    mag = a.abs().pow(rf)
    neg = torch.where(odd_den, torch.where(odd_num, -mag, mag), torch.full_like(mag, NAN))
    return torch.where(a < 0, neg, mag)


def power_each(x: Ragged, Pd, Q: int, inv) -> Ragged:
    """x^{r_i} with a rational exponent per element, r_i = Pd[inv[i]] / Q (Pd: int64 numerators of
    the distinct exponents over one denominator Q; ``power`` is the case of one r). The same
    expansion as :func:`power`; exponents l·r_i go over the denominator den·Q."""
    order, n, dev = x.order, x.n, x.num.device
    den = x.den * Q
    pmin, pmax = (int(Pd.min()), int(Pd.max())) if Pd.numel() else (0, 0)
    _fits(den, pmin, pmax)
    _fits(max(abs(x.lo), abs(x.hi)) * max(abs(pmin), abs(pmax), Q) * 2)  # l·r below int64, no wrap
    P = Pd[inv]  # r_i = P_i / Q
    first, a, nan = lead(x)
    zero = first == x.nnz
    nz_rows = ~zero
    any_nz = bool(nz_rows.any())
    numx = torch.cat([x.num, x.num.new_zeros(1)])
    l_num = numx[first]  # leading exponent of each element, over x.den
    lr = l_num * P  # l·r over den
    top = floor_units(order, den)
    rows = x.rows()
    after = torch.arange(x.nnz, device=dev) > first[rows]
    d_rows = rows[after]
    d_num = (x.num[after] - l_num[d_rows]) * Q
    a_safe = torch.where(zero, torch.ones_like(a), a)
    d_vals = x.vals[after] / a_safe[d_rows]
    rel = top - lr  # per element: d-series terms above this are past the cutoff
    big = LIMIT - 1
    lr_lo = int(torch.where(nz_rows, lr, big).amin()) if any_nz else 0
    lr_hi = int(torch.where(nz_rows, lr, -big).amax()) if any_nz else 0
    _fits(x.lo * Q, x.hi * Q, lr_lo, lr_hi, (x.hi - x.lo) * Q)
    d_lo = int(d_num.min()) if d_num.numel() else 1
    d = canon(d_rows, d_num, d_vals, n, den, d_lo, max((x.hi - x.lo) * Q, d_lo), x.shape, order, None,
              presorted=True)
    nonneg_int = Q == 1 and pmin >= 0
    K = 1
    if d.nnz:
        rel_max = int(torch.where(nz_rows, rel, -1).amax())
        K = max(rel_max // d.lo + 1, 1) if rel_max >= 0 else 1
        if nonneg_int:
            K = min(K, pmax + 1)
        else:
            check_budget(K, f"a series in ε^{Fraction(d.lo, den)} through ε^{Fraction(max(rel_max, 0), den)}")
    if K == 1:
        coeffs = [torch.ones(n, dtype=x.vals.dtype, device=dev)]
    else:  # C(r, k) exactly per distinct r, then rounded once (as on planes)
        table = torch.tensor([[float(c) for c in _binom_coeffs(Fraction(p, Q), K)] for p in Pd.tolist()],
                             dtype=x.vals.dtype, device=dev)
        coeffs = [table[inv, k] for k in range(K)]
    if d.nnz and K > 1:
        ser = _horner(coeffs, d, rel, den, order, x.shape)
    else:
        ser = monomials(0, coeffs[0], den, x.shape, order)
    ar = _real_power_each(a_safe, Pd, Q, inv)
    if is_strict() and Q % 2 == 0:
        even = ((Q // torch.gcd(Pd, torch.full_like(Pd, Q))) % 2 == 0)[inv]
        neg = (a < 0) & nz_rows & even
        if bool(neg.any()):
            what = Fraction(pmin, Q) if Pd.numel() == 1 else "r"
            raise DomainError(f"x**{what}: even root of a negative number in {int(neg.sum())} element(s)")
    srows = ser.rows()
    num = ser.num + lr[srows]
    keep = (num <= top) & ~zero[srows]
    res_hi = min(top, lr_hi + max(d.hi, 0) * max(K - 1, 0))
    out = canon(srows, num, ser.vals * ar[srows], n, den, lr_lo, max(res_hi, lr_lo), x.shape, order, None,
                presorted=True, keep=keep)
    any_zero = not any_nz or bool(zero.any())
    if any_zero:
        negr = P < 0
        if is_strict() and bool((zero & negr).any()):
            raise DomainError(f"x**r: power of an exact zero in {int((zero & negr).sum())} element(s)")
        # 0^r: 0 for r > 0 (nothing stored), 1 for r = 0, outside the field (NaN) for r < 0
        fill = torch.where(zero & negr, NAN, torch.where(zero & (P == 0), 1.0, 0.0)).to(x.vals.dtype)
        out = add(out, monomials(0, fill, den, x.shape, order))
    if bool(nan.any()):
        out = nan_rows(out, nan)
    # exactness, as on planes: truncation inside the series, dropped elements, propagated input error
    bounds = []
    has_d = torch.zeros(n, dtype=torch.bool, device=dev)
    has_d[d_rows] = True
    full = (P >= 0) & (P % Q == 0) & (x.hi * P <= top) if nonneg_int else torch.zeros_like(has_d)
    if bool((has_d & ~full).any()) or bool(((rel < 0) & nz_rows).any()):
        bounds.append(order)
    if x.exact is not None and any_nz:
        m = int(torch.where(nz_rows, (P - Q) * l_num, big).amin())
        bounds.append(x.exact + Fraction(m, den))
    if x.exact is not None and any_zero:
        pos = zero & (P > 0)
        if bool(pos.any()):  # a truncated zero is O(ε^{>e}): its r-th power is O(ε^{>re})
            pick = P.masked_fill(~pos, big).amin() if x.exact >= 0 else P.masked_fill(~pos, -big).amax()
            bounds.append(Fraction(int(pick), Q) * x.exact)
    out.exact = min_exact(*bounds) if bounds else None
    out.order = order
    return out


def analytic(x: Ragged, taylor, name: str, domain=None) -> Ragged:
    """g(x) for finite x = a + d (a the ε⁰ coefficient, d the positive terms): Σ_k c_k(a) d^k with
    ``taylor(a, K)`` giving g's Taylor coefficients at a. Infinite elements (a nonzero term below ε⁰)
    and standard parts outside ``domain`` are NaN (DomainError in strict mode)."""
    order, n, dev = x.order, x.n, x.num.device
    rows = x.rows()
    nzt = x.vals != 0
    bad = torch.zeros(n, dtype=torch.int64, device=dev).index_add_(
        0, rows, ((x.num < 0) & nzt).to(torch.int64)) > 0
    if is_strict() and bool(bad.any()):
        raise DomainError(
            f"{name}: argument is infinite (leading exponent < 0) in {int(bad.sum())} element(s); "
            "analytic functions are defined on finite numbers only")
    at0 = x.num == 0
    a = torch.zeros(n, dtype=x.vals.dtype, device=dev).index_add_(0, rows[at0], x.vals[at0])
    pos = x.num > 0
    d = canon(rows[pos], x.num[pos], x.vals[pos], n, x.den, max(x.lo, 1), max(x.hi, 1), x.shape, order, None,
              presorted=True)
    K = 1
    if d.nnz:
        g = int(d.num.min())
        K = floor_units(order, x.den) // g + 1
        check_budget(K, f"a series in ε^{Fraction(g, x.den)} through ε^{order}")
    coeffs = taylor(a, K)
    coeffs = [torch.as_tensor(c, dtype=x.vals.dtype, device=dev).expand(n) for c in coeffs]
    if d.nnz and K > 1:
        thr = torch.full((n,), floor_units(order, x.den), dtype=torch.int64, device=dev)
        res = _horner(coeffs, d, thr, x.den, order, x.shape)
    else:
        res = monomials(0, coeffs[0], x.den, x.shape, order)
        res.lo, res.hi = 0, 0
    if domain is not None:
        out_dom = domain(a)
        if is_strict() and bool(out_dom.any()):
            raise DomainError(f"{name}: argument outside the domain in {int(out_dom.sum())} element(s)")
        bad = bad | out_dom
    if bool(bad.any()):
        res = nan_rows(res, bad)
    res.exact = min_exact(x.exact, order if d.nnz else None)
    res.order = order
    return res


# -- reductions --------------------------------------------------------------------------------------------


def group_sum(r: Ragged, gid, n_out, shape) -> Ragged:
    """Sum of the elements with the same group id ``gid`` (n,) into n_out elements: a segmented merge."""
    rows = gid.reshape(-1)[r.rows()]
    return canon(rows, r.num, r.vals, n_out, r.den, r.lo, r.hi, shape, r.order, r.exact)
