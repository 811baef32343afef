"""Special functions and the remaining elementwise/selection ops of the coverage work.

Analytic functions follow semantics §3 (g(a + d) = Σ_k g⁽ᵏ⁾(a)/k! dᵏ, univariate Taylor coefficients at
the standard part a); selections (median, kthvalue, mode, cummax, cummin) use the field's order, which
on aligned planes is the lexicographic order of the coefficient vectors (semantics §4).
"""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .. import _support as S
from .._algebra import Series
from .._dispatch import implements
from .._taylor import (
    conv,
    div_factorial,
    factorial_series,
    from_derivative,
    identity_series,
    rsqrt_series,
    t_exp,
    t_mul,
    t_recip,
)
from .._tensor import LCTensor, series
from . import order
from ._util import out, real_out

aten = torch.ops.aten
NAN = float("nan")
SQRT_PI = math.sqrt(math.pi)


# -- Taylor coefficients -----------------------------------------------------------------------------


def _sq_plus(a, K, c):
    """Univariate series of (a + t)² + c, length K."""
    x = identity_series(a, K)
    sq = t_mul(x, x)
    return [sq[0] + c] + sq[1:]


def taylor_asinh(a, K):
    if K == 1:
        return [torch.asinh(a)]
    return from_derivative(torch.asinh(a), rsqrt_series(_sq_plus(a, K - 1, 1.0)))


def taylor_acosh(a, K):
    if K == 1:
        return [torch.acosh(a)]
    return from_derivative(torch.acosh(a), rsqrt_series(_sq_plus(a, K - 1, -1.0)))


def taylor_atanh(a, K):
    if K == 1:
        return [torch.atanh(a)]
    u = [-v for v in _sq_plus(a, K - 1, -1.0)]  # 1 − x²
    return from_derivative(torch.atanh(a), t_recip(u))


def _polygamma_coeffs(n0, a, K, y0):
    """[y0, ψ⁽ⁿ⁰⁾(a)/1!, ψ⁽ⁿ⁰⁺¹⁾(a)/2!, …]: Taylor coefficients of ψ⁽ⁿ⁰⁻¹⁾ (lgamma for n0 = 0)."""
    return [y0] + [div_factorial(torch.polygamma(n0 + k - 1, a), k) for k in range(1, K)]


def taylor_lgamma(a, K):
    return _polygamma_coeffs(0, a, K, torch.lgamma(a))


def taylor_digamma(a, K):
    return _polygamma_coeffs(1, a, K, torch.digamma(a))


def _taylor_polygamma(n):
    def taylor(a, K):
        return _polygamma_coeffs(n + 1, a, K, torch.polygamma(n, a))

    return taylor


def _erfinv_coeffs(y0, K):
    """y = erfinv(a + t): y' = (√π/2)·exp(y²), solved order by order as an ODE jet."""
    y = [y0]
    for k in range(K - 1):
        e = t_exp(t_mul(y, y))  # exp(y²) through t^k only needs y_0..y_k
        y.append(e[k] * (SQRT_PI / 2) / (k + 1))
    return y


def taylor_erfinv(a, K):
    return _erfinv_coeffs(torch.erfinv(a), K)


def taylor_ndtri(a, K):
    # ndtri(p) = √2·erfinv(2p − 1)
    c = _erfinv_coeffs(torch.erfinv(2 * a - 1), K)
    return [torch.special.ndtri(a)] + [math.sqrt(2) * (2**k) * c[k] for k in range(1, K)]


def taylor_erfcx(a, K):
    # y = exp(x²)·erfc(x): y' = 2x·y − 2/√π, so (k+1)·y_{k+1} = 2(a·y_k + y_{k−1}) − (2/√π)[k = 0]
    y = [torch.special.erfcx(a)]
    for k in range(K - 1):
        rhs = 2 * (a * y[k] + (y[k - 1] if k >= 1 else 0))
        if k == 0:
            rhs = rhs - 2 / SQRT_PI
        y.append(rhs / (k + 1))
    return y


def _bessel_i_coeffs(nu, a, K, y0, y1, scale):
    """Taylor coefficients of scale(a)·I_ν(a + t), ν ∈ {0, 1}, from y0, y1 (already scaled).

    |a| < 2: the power series of I_ν evaluated on the univariate series a + t (times scale); elsewhere
    the recurrence from the Bessel ODE x²y'' + xy' − (x² + ν²)y = 0 (linear, so the scale carries)."""
    y = [y0, y1]
    if K <= 2:
        return y[:K]
    # recurrence (|a| ≥ 2)
    a2 = a * a
    safe = torch.where(a.abs() >= 2, a, torch.full_like(a, 2.0))
    rec = [y0, y1]
    for k in range(0, K - 2):
        yk1, yk = rec[k + 1], rec[k]
        ykm1 = rec[k - 1] if k >= 1 else 0
        ykm2 = rec[k - 2] if k >= 2 else 0
        num = (2 * safe * (k + 1) * k * yk1 + k * (k - 1) * yk + safe * (k + 1) * yk1 + k * yk
               - (safe * safe + nu * nu) * yk - 2 * safe * ykm1 - ykm2)
        rec.append(-num / (safe * safe * (k + 2) * (k + 1)))
    # power series (|a| < 2)
    h = [a / 2, torch.full_like(a, 0.5)] + [torch.zeros_like(a)] * (K - 2)
    h2 = t_mul(h, h)
    term = [torch.ones_like(a)] + [torch.zeros_like(a)] * (K - 1) if nu == 0 else h
    acc = list(term)
    for m in range(1, 30):
        term = [v / (m * (m + nu)) for v in t_mul(term, h2)]
        acc = [p + q for p, q in zip(acc, term)]
    acc = [v * scale for v in acc]
    small = a2 < 4
    return y + [torch.where(small, acc[k], rec[k]) for k in range(2, K)]


def taylor_i0(a, K):
    if K == 1:
        return [torch.i0(a)]
    return _bessel_i_coeffs(0, a, K, torch.i0(a), torch.special.i1(a), 1.0)


def taylor_i1(a, K):
    if K == 1:
        return [torch.special.i1(a)]
    i0, i1 = torch.i0(a), torch.special.i1(a)
    safe = torch.where(a == 0, torch.ones_like(a), a)
    d1 = torch.where(a == 0, torch.full_like(a, 0.5), i0 - i1 / safe)
    return _bessel_i_coeffs(1, a, K, i1, d1, 1.0)


def _exp_scaled_rule(name, nu):
    """i0e/i1e: e^{−|x|}·I_ν(x); |x| = s·x with s the field sign of x (decides a = 0 too)."""

    def rule(func, x):
        s = series(x)
        sgn = A.lead_sign(s.planes)

        def taylor(a, K):
            v0 = torch.special.i0e(a) if nu == 0 else torch.special.i1e(a)
            if K == 1:
                return [v0]
            e0, e1 = torch.special.i0e(a), torch.special.i1e(a)
            if nu == 0:
                d1 = e1
            else:
                safe = torch.where(a == 0, torch.ones_like(a), a)
                d1 = torch.where(a == 0, torch.full_like(a, 0.5), e0 - e1 / safe)
            scaled = _bessel_i_coeffs(nu, a, K, v0, d1, torch.exp(-a.abs()))
            ex = factorial_series([(-sgn) ** k for k in range(K)])  # e^{−s·t}
            res = t_mul(scaled, ex)
            return [v0] + res[1:]

        return out(A.analytic(s, taylor, name))

    return rule


implements([aten.special_i0e.default], kind="analytic")(_exp_scaled_rule("i0e", 0))
implements([aten.special_i1e.default], kind="analytic")(_exp_scaled_rule("i1e", 1))


# -- elementwise analytic rules ----------------------------------------------------------------------


def _lift(name, taylor, domain=None):
    """Rule for an elementwise analytic op. ``domain(a, moves)`` marks elements outside the domain,
    given the standard part a and whether the element has an infinitesimal part."""

    def rule(func, x, *args, **kwargs):
        s = series(x)
        res = A.analytic(s, taylor, name)
        if domain is not None:
            a, d, _ = A.split_finite(s, name)
            moves = (d.planes != 0).any(0) if d.support else torch.zeros_like(a, dtype=torch.bool)
            bad = domain(a, moves)
            if d.support:
                # an element without infinitesimal part is exactly g(a), even where g' is singular
                hi = torch.tensor([q != S.ZERO for q in res.support], device=a.device)
                hi = hi.reshape(-1, *[1] * a.dim())
                res.planes = torch.where(hi & ~moves, torch.zeros_like(res.planes), res.planes)
            A.check_domain(bad, f"{name}: argument outside the domain in {int(bad.sum())} element(s)")
            res.planes = torch.where(bad, torch.full_like(res.planes, NAN), res.planes)
        return out(res)

    return rule


def _pole(a, moves):
    # lgamma/digamma/polygamma have poles at the non-positive integers
    return (a <= 0) & (a == a.floor())


_TABLE = {
    aten.asinh.default: ("asinh", taylor_asinh, None),
    # acosh: a = 1 is a branch point (acosh(1 + δ) ~ √(2δ)): NaN unless the element is exactly 1
    aten.acosh.default: ("acosh", taylor_acosh, lambda a, m: (a < 1) | ((a == 1) & m)),
    aten.atanh.default: ("atanh", taylor_atanh, lambda a, m: a.abs() >= 1),
    aten.lgamma.default: ("lgamma", taylor_lgamma, _pole),
    aten.digamma.default: ("digamma", taylor_digamma, _pole),
    aten.special_digamma.default: ("digamma", taylor_digamma, _pole),
    aten.erfinv.default: ("erfinv", taylor_erfinv, lambda a, m: a.abs() >= 1),
    aten.special_ndtri.default: ("ndtri", taylor_ndtri, lambda a, m: (a <= 0) | (a >= 1)),
    aten.special_erfcx.default: ("erfcx", taylor_erfcx, None),
    aten.i0.default: ("i0", taylor_i0, None),
    aten.special_i0.default: ("i0", taylor_i0, None),
    aten.special_i1.default: ("i1", taylor_i1, None),
}
for _op, (_name, _taylor, _dom) in _TABLE.items():
    implements([_op], kind="analytic")(_lift(_name, _taylor, _dom))


@implements([aten.polygamma.default, aten.special_polygamma.default])
def polygamma(func, n, x):
    return _lift(f"polygamma({n})", _taylor_polygamma(n), _pole)(func, x)


@implements([aten.mvlgamma.default, aten.special_multigammaln.default])
def mvlgamma(func, x, p):
    # log Γ_p(x) = p(p−1)/4·log π + Σ_{j<p} lgamma(x − j/2)
    r = aten.lgamma.default(x)
    for j in range(1, p):
        r = aten.add.Tensor(r, aten.lgamma.default(aten.sub.Scalar(x, j / 2)))
    return aten.add.Scalar(r, p * (p - 1) / 4 * math.log(math.pi))


# -- two-argument functions --------------------------------------------------------------------------


def _sign(x):
    """Field sign of x (plain tensors: torch.sign)."""
    if isinstance(x, LCTensor):
        return A.lead_sign(series(x).planes)
    return torch.sign(torch.as_tensor(x))


def _negative(x):
    """x < 0 in the field, or x a zero whose ε⁰ coefficient is −0.0 (copysign, atan2 conventions)."""
    if isinstance(x, LCTensor):
        s = series(x)
        sg = A.lead_sign(s.planes)
        return (sg < 0) | ((sg == 0) & torch.signbit(s.plane(S.ZERO)))
    return torch.signbit(torch.as_tensor(x))


@implements([aten.atan2.default, aten.arctan2.default])
def atan2(func, y, x):
    """atan2 with the branch decided by the field's order: atan(y/x) (+π·sign y for x < 0) where
    |y| ≤ |x|, and π/2·sign(y) − atan(x/y) where |y| > |x| (both ratios stay in [−1, 1])."""
    ay, ax = aten.abs.default(y), aten.abs.default(x)
    steep = _sign(aten.sub.Tensor(ay, ax)) > 0
    sx, sy = _sign(x), _sign(y)
    both_zero = (sx == 0) & (sy == 0)
    yneg = _negative(y)
    one = 1.0
    x_safe = aten.where.ScalarSelf(steep | both_zero, one, x)
    y_safe = aten.where.ScalarSelf(~steep | both_zero, one, y)
    flat = aten.atan.default(aten.div.Tensor(y, x_safe))
    xneg = sx < 0
    pi = torch.tensor(math.pi, dtype=flat.dtype, device=flat.device)
    shift = torch.where(xneg, torch.where(yneg, -pi, pi), torch.zeros_like(pi))
    flat = aten.add.Tensor(flat, shift)
    steep_v = aten.neg.default(aten.atan.default(aten.div.Tensor(x, y_safe)))
    steep_v = aten.add.Tensor(steep_v, torch.where(yneg, -pi / 2, pi / 2))
    res = aten.where.self(steep, steep_v, flat)
    if True:  # both exactly zero: torch's conventions (±0, ±π by the signs of the zeros)
        sy0 = series(y).plane(S.ZERO) if isinstance(y, LCTensor) else torch.as_tensor(y)
        sx0 = series(x).plane(S.ZERO) if isinstance(x, LCTensor) else torch.as_tensor(x)
        res = aten.where.self(both_zero, torch.atan2(sy0, sx0).to(flat.dtype), res)
    return res


@implements([aten.hypot.default])
def hypot(func, x, y):
    return aten.sqrt.default(aten.add.Tensor(aten.mul.Tensor(x, x), aten.mul.Tensor(y, y)))


@implements([aten.copysign.Tensor, aten.copysign.Scalar], kind="decision")
def copysign(func, x, y):
    neg = _negative(y)
    ax = aten.abs.default(x) if isinstance(x, torch.Tensor) else abs(x)
    if isinstance(ax, torch.Tensor):
        res = aten.where.self(neg, aten.neg.default(ax), ax)
    else:
        res = torch.where(neg, -ax, ax)
    if not isinstance(res, LCTensor):
        return real_out(res.to(y.dtype), series(y))
    return res


# -- scans and products --------------------------------------------------------------------------------


def _logaddexp(u, v):
    """log(e^u + e^v) = m + log1p(e^{o − m}), m the one with the larger standard part."""
    su = series(u).plane(S.ZERO) if isinstance(u, LCTensor) else u
    sv = series(v).plane(S.ZERO) if isinstance(v, LCTensor) else v
    first = (su >= sv) | torch.isnan(su)
    m = aten.where.self(first, u, v)
    o = aten.where.self(first, v, u)
    r = aten.add.Tensor(m, aten.log1p.default(aten.exp.default(aten.sub.Tensor(o, m))))
    both_ninf = (su == float("-inf")) & (sv == float("-inf"))
    return aten.where.self(both_ninf, m, r)


@implements([aten.logcumsumexp.default])
def logcumsumexp(func, x, dim):
    """Hillis–Steele scan of the field's logaddexp (log-depth; ε⁰ plane within rounding of torch)."""
    if x.dim() == 0:
        return aten.clone.default(x)
    d = dim + x.dim() if dim < 0 else dim
    n = x.shape[d]
    cur = x
    shift = 1
    while shift < n:
        left = aten.slice.Tensor(cur, d, 0, n - shift)
        right = aten.slice.Tensor(cur, d, shift, n)
        cur = aten.cat.default([aten.slice.Tensor(cur, d, 0, shift), _logaddexp(left, right)], d)
        shift *= 2
    return cur


@implements([aten.addbmm.default])
def addbmm(func, inp, b1, b2, *, beta=1, alpha=1):
    prod = aten.sum.dim_IntList(aten.bmm.default(b1, b2), [0])
    if alpha != 1:
        prod = aten.mul.Scalar(prod, alpha)
    if beta == 0:
        return prod  # like torch: input is ignored (its NaNs do not propagate)
    return aten.add.Tensor(prod, inp if beta == 1 else aten.mul.Scalar(inp, beta))


# -- order statistics ------------------------------------------------------------------------------


def _sorted(s: Series, d):
    """Lexicographic sort along element dim d with NaN elements last; (indices, sorted planes)."""
    idx = order.sort_indices(s, d, False, "median/kthvalue/mode")
    vals = s.planes.gather(d + 1, idx.unsqueeze(0).expand(s.planes.shape[0], *idx.shape))
    return idx, vals


def _pick_at(s: Series, idx, vals, pos, d, keepdim):
    """Value and original index at sorted position ``pos`` (a tensor shaped like a keepdim reduction)."""
    v = vals.gather(d + 1, pos.unsqueeze(0).expand(vals.shape[0], *pos.shape))
    i = idx.gather(d, pos)
    if not keepdim:
        v, i = v.squeeze(d + 1), i.squeeze(d)
    return out(Series(v, s.support, s.order, s.exact)), i


def _median(x, dim, keepdim, ignore_nan, all_elements=False):
    s = series(x)
    if x.dim() == 0:
        return aten.clone.default(x), torch.zeros((), dtype=torch.long, device=x.device)
    d = dim + x.dim() if dim < 0 else dim
    n = x.shape[d]
    if n == 0:  # as torch: the median of no elements is NaN; an empty reduction dim is an error
        if not all_elements:
            raise IndexError(f"median(): Expected reduction dim {dim} to have non-zero size.")
        return out(Series(s.planes.new_full((1,), float("nan")), (S.ZERO,), s.order, None)), None
    idx, vals = _sorted(s, d)
    nan = order.nan_elements(s.planes)
    shape = list(x.shape)
    shape[d] = 1
    if ignore_nan:
        cnt = (~nan).sum(d, keepdim=True)
        pos = ((cnt - 1).clamp(min=0)) // 2
    else:
        pos = torch.full(shape, (n - 1) // 2, dtype=torch.long, device=x.device)
        # torch.median returns NaN (the first NaN) if the slice holds one; sorted NaNs sit at the end
        anynan = nan.any(d, keepdim=True)
        first_nan_pos = n - nan.sum(d, keepdim=True)
        pos = torch.where(anynan, first_nan_pos, pos)
    return _pick_at(s, idx, vals, pos, d, keepdim)


@implements([aten.median.dim], kind="decision")
def median_dim(func, x, dim, keepdim=False):
    return _median(x, dim, keepdim, False)


@implements([aten.nanmedian.dim], kind="decision")
def nanmedian_dim(func, x, dim, keepdim=False):
    return _median(x, dim, keepdim, True)


def _flat(x):
    return aten.reshape.default(x, [-1])


@implements([aten.median.default], kind="decision")
def median_all(func, x):
    return _median(_flat(x), 0, False, False, all_elements=True)[0]


@implements([aten.nanmedian.default], kind="decision")
def nanmedian_all(func, x):
    return _median(_flat(x), 0, False, True, all_elements=True)[0]


@implements([aten.kthvalue.default], kind="decision")
def kthvalue(func, x, k, dim=-1, keepdim=False):
    s = series(x)
    if x.dim() == 0:
        return aten.clone.default(x), torch.zeros((), dtype=torch.long, device=x.device)
    d = dim + x.dim() if dim < 0 else dim
    idx, vals = _sorted(s, d)
    shape = list(x.shape)
    shape[d] = 1
    pos = torch.full(shape, k - 1, dtype=torch.long, device=x.device)
    return _pick_at(s, idx, vals, pos, d, keepdim)


@implements([aten.mode.default], kind="decision")
def mode(func, x, dim=-1, keepdim=False):
    """Most frequent element (equal in every coefficient); ties → the smallest, index of its last
    occurrence (as torch)."""
    s = series(x)
    if x.dim() == 0:
        return aten.clone.default(x), torch.zeros((), dtype=torch.long, device=x.device)
    d = dim + x.dim() if dim < 0 else dim
    idx, vals = _sorted(s, d)
    n = x.shape[d]
    same = (vals.narrow(d + 1, 1, n - 1) == vals.narrow(d + 1, 0, n - 1)).all(0)
    start = torch.cat([torch.ones_like(same.narrow(d, 0, 1)), ~same], d)
    run = start.long().cumsum(d) - 1
    counts = torch.zeros_like(run).scatter_add_(d, run, torch.ones_like(run))
    best = counts.argmax(d, keepdim=True)  # first maximum: the smallest value
    ar = torch.arange(n, device=x.device).reshape([n if i == d else 1 for i in range(x.dim())])
    pos = torch.where(run == best, ar, -1).amax(d, keepdim=True)  # last sorted position of that run
    # the stable sort keeps original order within a run, so that position has the last original index
    return _pick_at(s, idx, vals, pos, d, keepdim)


def _cum_extreme(x, dim, largest, name):
    """Hillis–Steele scan of (value, index) pairs: the later one wins ties (as torch), NaN absorbs."""
    s = series(x)
    if x.dim() == 0:
        return aten.clone.default(x), torch.zeros((), dtype=torch.long, device=x.device)
    d = dim + x.dim() if dim < 0 else dim
    n = x.shape[d]
    planes = s.planes
    ar = torch.arange(n, device=planes.device).reshape([n if i == d else 1 for i in range(x.dim())])
    idx = ar.expand(x.shape).clone()
    shift = 1
    while shift < n:
        lp = planes.narrow(d + 1, 0, n - shift)
        rp = planes.narrow(d + 1, shift, n - shift)
        sg = A.lead_sign(A.exact_planes(Series(rp - lp, s.support, s.order, s.exact)))  # ties resolved as torch; checked below
        ln, rn = order.nan_elements(lp), order.nan_elements(rp)
        wins = (sg >= 0) if largest else (sg <= 0)
        right = rn | (wins & ~ln)
        newp = torch.where(right, rp, lp)
        newi = torch.where(right, idx.narrow(d, shift, n - shift), idx.narrow(d, 0, n - shift))
        planes = torch.cat([planes.narrow(d + 1, 0, shift), newp], d + 1)
        idx = torch.cat([idx.narrow(d, 0, shift), newi], d)
        shift *= 2
    if s.exact is not None and n > 1:
        # only the comparisons the result depends on may refuse: each element against the running
        # extreme before it (a tie there decides whether the index moves)
        before = planes.narrow(d + 1, 0, n - 1)
        diff = Series(s.planes.narrow(d + 1, 1, n - 1) - before, s.support, s.order, s.exact)
        A.trusted_lead_sign(diff, name)
    return out(Series(planes, s.support, s.order, s.exact)), idx


@implements([aten.cummax.default], kind="decision")
def cummax(func, x, dim):
    return _cum_extreme(x, dim, True, "cummax")


@implements([aten.cummin.default], kind="decision")
def cummin(func, x, dim):
    return _cum_extreme(x, dim, False, "cummin")


_ = (conv, Series)
