"""The field's order and every discontinuous op (semantics §4).

x < y iff the leading coefficient of y − x is positive. Selections (relu, maximum, clamp, where) return
one of their LC inputs; value-producing decisions (comparisons, sign, floor, round, heaviside, …) return
real results and refuse, with TruncationError, to decide from terms that truncation dropped.
"""

from __future__ import annotations

import torch

from .. import _algebra as A
from .. import _context, kernels
from .. import _support as S
from .._algebra import Series, broadcast_planes
from .._context import grad_free as _grad_free
from .._dispatch import implements, in_place_via_functional
from .._tensor import LCTensor, read_planes, series
from ..layouts import PLANES
from ._util import is_monomial, operand, out, real_out
from .order import nan_elements

aten = torch.ops.aten
NAN = float("nan")


def smoothable(name):
    """Route a jump op through the innermost ``torchlc.smoothing`` of this context, if any: its
    ``lc_rule(name, exact_rule, func, args, kwargs)`` returns the smoothed result (exact forward value,
    smoothed ε-part; semantics §6). Else run the exact rule."""

    def deco(rule):
        def wrapped(func, *args, **kwargs):
            cfg = _context.smoothing()
            if cfg is not None:
                return cfg.lc_rule(name, rule, func, args, kwargs)
            return rule(func, *args, **kwargs)

        wrapped.__name__ = rule.__name__
        wrapped.exact = rule
        return wrapped

    return deco


def _as_series(x, like: Series):
    if isinstance(x, torch.Tensor):
        return series(x)
    return Series(torch.tensor([x], dtype=like.planes.dtype, device=like.planes.device), (S.ZERO,))


def difference(a, b) -> Series:
    """b − a as a Series (either may be a number)."""
    sa = operand(a)
    sb = operand(b)
    if not isinstance(sa, Series):
        sa = _as_series(sa, sb)
    if not isinstance(sb, Series):
        sb = _as_series(sb, sa)
    if a is b:
        return Series(sa.planes - sa.planes, sa.support, sa.order, None)  # exactly zero
    return A.add(sb, sa, alpha=-1)


def _cmp(pred, what):
    def rule(func, a, b):
        s = A.trusted_lead_sign(difference(a, b), what)
        return pred(s)

    return rule


implements([aten.lt.Tensor, aten.lt.Scalar], kind="decision")(smoothable("lt")(_cmp(lambda s: s > 0, "lt")))
implements([aten.le.Tensor, aten.le.Scalar], kind="decision")(smoothable("le")(_cmp(lambda s: s >= 0, "le")))
implements([aten.gt.Tensor, aten.gt.Scalar], kind="decision")(smoothable("gt")(_cmp(lambda s: s < 0, "gt")))
implements([aten.ge.Tensor, aten.ge.Scalar], kind="decision")(smoothable("ge")(_cmp(lambda s: s <= 0, "ge")))
implements([aten.eq.Tensor, aten.eq.Scalar], kind="decision")(_cmp(lambda s: s == 0, "eq"))
implements([aten.ne.Tensor, aten.ne.Scalar], kind="decision")(_cmp(lambda s: s != 0, "ne"))


@implements([aten.sign.default, aten.sgn.default], kind="decision")
@smoothable("sign")
def sign(func, x):
    s = series(x)
    return real_out(A.trusted_lead_sign(s, "sign"), s)


@implements([aten.abs.default], kind="decision")
def abs_(func, x):
    s = series(x)
    if s.support == A.FIRST_ORDER and (res := kernels.fused("abs", s.planes)) is not None:
        return out(Series(res, s.support, s.order, s.exact), monomial=is_monomial(x))
    # |x| = sign(x)·x; a NaN lead gives sign 0 here, but its NaN plane keeps the element NaN
    sg = torch.sign(A.lead_coeff(s.planes))
    return out(Series(s.planes * sg, s.support, s.order, s.exact), monomial=is_monomial(x))


def select(cond, a, b):
    """where(cond, a, b) for LC/plain/number a, b and a plain bool cond."""
    sa, sb = operand(a), operand(b)
    if not isinstance(sa, Series):
        sa = _as_series(sa, sb)
    if not isinstance(sb, Series):
        sb = _as_series(sb, sa)
    nd = max(sa.planes.dim() - 1, sb.planes.dim() - 1, cond.dim())
    sa = Series(broadcast_planes(sa.planes, nd), sa.support, sa.order, sa.exact)
    sb = Series(broadcast_planes(sb.planes, nd), sb.support, sb.order, sb.exact)
    pa, pb, sup = A.aligned(sa, sb)
    planes = torch.where(cond, pa, pb)
    mono = is_monomial(a) and is_monomial(b)
    return out(Series(planes, sup, A.result_order(sa, sb), A.exact_add(sa, sb)), monomial=mono)


@implements([aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar], kind="decision")
@smoothable("where")
def where(func, cond, a, b):
    if isinstance(cond, LCTensor):
        raise TypeError("torch.where: the condition must be a bool tensor, not an LCTensor")
    return select(cond, a, b)


def _relu_zero(s: Series):
    """For a truncated input, the elements whose exact-known leading coefficient is negative: relu
    gives an exact 0 there (None for untruncated inputs, whose zeros are exact anyway)."""
    if s.exact is None:
        return None
    keep = [i for i, q in enumerate(s.support) if q <= s.exact]
    if not keep:
        return None
    neg = A.lead_sign(s.planes[keep]) < 0
    return neg if s.zero is None else neg | s.zero


@implements([aten.relu.default], kind="decision")
def relu(func, x):
    s = series(x)
    zero = _relu_zero(s)
    if zero is not None:
        res = A.relu(s)
        res.zero = zero
        return out(res, monomial=is_monomial(x))
    return out(A.relu(s), monomial=is_monomial(x))


@implements([aten.relu_.default], kind="decision")
def relu_(func, x):
    """relu in place. First-order planes (exact, no zero record) are updated where they are — one
    fused pass on CUDA, no result tensor and no copy back — so views of x see the result as torch's
    relu_ gives it; every other case computes relu and writes it back."""
    if type(x) is LCTensor and x.lc_layout is PLANES and x.lc_support == A.FIRST_ORDER and x.lc_exact is None:
        P = read_planes(x)
        if x.lc_zero is None and P.is_contiguous() and _grad_free(P):
            if kernels.usable(P):
                kernels.relu2(P, out=P)
            elif not (kernels.cpu.usable(P) and kernels.cpu.run("relu_", P) is not None):
                P.masked_fill_(kernels.cpu.relu_nonpos(P[0], P[1]), 0)
            return x
    return in_place_via_functional(func, (x,), {})


def _pick(a, b, take_a_if, ignore_nan=False):
    d = difference(b, a)  # a − b
    s = A.lead_sign(d.planes)
    res = select(take_a_if(s), a, b)
    if not ignore_nan:  # like torch.maximum/minimum/clamp, a NaN in either operand gives NaN
        return select(torch.isnan(s), float("nan"), res)
    # like torch.fmax/fmin: a NaN operand gives the other one (NaN only where both are)
    return select(torch.isnan(a), b, select(torch.isnan(b), a, res))


@implements([aten.maximum.default], kind="decision")
def maximum(func, a, b):
    return _pick(a, b, lambda s: s >= 0)


@implements([aten.minimum.default], kind="decision")
def minimum(func, a, b):
    return _pick(a, b, lambda s: s <= 0)


@implements([aten.fmax.default], kind="decision")
def fmax(func, a, b):
    return _pick(a, b, lambda s: s >= 0, ignore_nan=True)


@implements([aten.fmin.default], kind="decision")
def fmin(func, a, b):
    return _pick(a, b, lambda s: s <= 0, ignore_nan=True)


@implements([aten.clamp.default, aten.clamp.Tensor], kind="decision")
def clamp(func, x, min=None, max=None):
    r = x
    if min is not None:
        r = _pick(r, min, lambda s: s >= 0)
    if max is not None:
        r = _pick(r, max, lambda s: s <= 0)
    return r


@implements([aten.clamp_min.default, aten.clamp_min.Tensor], kind="decision")
def clamp_min(func, x, min):
    return clamp(None, x, min=min)


@implements([aten.clamp_max.default, aten.clamp_max.Tensor], kind="decision")
def clamp_max(func, x, max):
    return clamp(None, x, max=max)


@implements([aten.hardtanh.default], kind="decision")
def hardtanh(func, x, min_val=-1, max_val=1):
    return clamp(None, x, min_val, max_val)


# -- integer-valued functions ----------------------------------------------------------------------


def _std_and_tail_sign(x: Series, what: str, matters_fn):
    """(a, s, bad): standard part, sign of x − a (exact, see trusted_lead_sign), infinite mask.

    ``matters_fn(a)`` marks where the sign decides the result; it is only evaluated for truncated
    inputs, where an undecidable sign must raise instead of guessing."""
    a, d, bad = A.split_finite(x, what)
    if not d.support:
        if x.exact is not None:
            # no infinitesimal part is stored, but terms above exact_through were dropped
            empty = Series(a.new_zeros((1, *a.shape)), (x.exact,), x.order, x.exact)
            A.trusted_lead_sign(Series(empty.planes, (x.exact + 1,), x.order, x.exact, x.zero), what, matters_fn(a))
        return a, torch.zeros_like(a), bad
    if x.exact is None:
        # a NaN tail cannot change the result: NaN standard parts already give NaN
        return a, (d.planes[0] if len(d.support) == 1 else A.lead_coeff(d.planes)), bad
    s = A.trusted_lead_sign(Series(d.planes, d.support, x.order, x.exact, x.zero), what, matters_fn(a))
    return a, s, bad


def _real(t, bad, like):
    # infinite elements and undefined ones (a NaN coefficient anywhere) give NaN
    nan = torch.isnan(like.planes).any(0)
    bad = nan if bad is None else bad | nan
    return real_out(torch.where(bad, NAN, t), like)


def floor_series(x: Series):
    # floor(a + δ) = floor(a); floor(a − δ) = floor(a) − 1 exactly when a is an integer
    a, s, bad = _std_and_tail_sign(x, "floor", lambda a: a.floor() == a)
    fl = a.floor()
    return fl - ((fl == a) & (s < 0)).to(fl.dtype), bad


def ceil_series(x: Series):
    # ceil(a − δ) = ceil(a); ceil(a + δ) = ceil(a) + 1 exactly when a is an integer
    a, s, bad = _std_and_tail_sign(x, "ceil", lambda a: a.ceil() == a)
    cl = a.ceil()
    return cl + ((cl == a) & (s > 0)).to(cl.dtype), bad


@implements([aten.floor.default], kind="decision")
@smoothable("floor")
def floor(func, x):
    s = series(x)
    if s.support == A.FIRST_ORDER and s.exact is None and (res := kernels.fused("floor", s.planes)) is not None:
        return real_out(res, s)
    return _real(*floor_series(s), s)


@implements([aten.ceil.default], kind="decision")
@smoothable("ceil")
def ceil(func, x):
    s = series(x)
    return _real(*ceil_series(s), s)


@implements([aten.trunc.default, aten.fix.default], kind="decision")
@smoothable("trunc")
def trunc(func, x):
    s = series(x)
    fl, bad = floor_series(s)
    cl, _ = ceil_series(s)
    a = A.split_finite(s, "trunc")[0]
    # trunc(±δ) = 0 for infinitesimal δ; a NaN standard part stays NaN
    res = torch.where(a > 0, fl, torch.where(a < 0, cl, torch.where(a == 0, 0.0, a)))
    return _real(res, bad, s)


def _round_series(x: Series):
    def tie(a):
        return (a - a.floor()) == 0.5

    a, s, bad = _std_and_tail_sign(x, "round", tie)
    fl = a.floor()
    t = tie(a)
    res = torch.where(t & (s > 0), fl + 1, torch.where(t & (s < 0), fl, torch.round(a)))
    return res, bad


@implements([aten.round.default], kind="decision")
@smoothable("round")
def round_(func, x):
    s = series(x)
    return _real(*_round_series(s), s)


@implements([aten.round.decimals], kind="decision")
@smoothable("round_decimals")
def round_decimals(func, x, *, decimals=0):
    if decimals == 0:
        return round_(None, x)
    if decimals > 0:
        p = 10.0**decimals
        return aten.div.Scalar(round_(None, aten.mul.Scalar(x, p)), p)
    p = 10.0 ** (-decimals)
    return aten.mul.Scalar(round_(None, aten.div.Scalar(x, p)), p)


@implements([aten.frac.default], kind="decision")
def frac(func, x):
    return aten.sub.Tensor(x, trunc(None, x))


def _mod(x, y, quotient_op, std_op):
    """x − n·y with n = quotient_op(x / y) decided in the field; the ε⁰ plane uses torch's exact
    fmod/remainder and only moves by ±y where the infinitesimal part crosses a multiple."""
    q = aten.div.Tensor(x, y) if isinstance(y, torch.Tensor) else aten.div.Scalar(x, y)
    n = quotient_op(None, q)
    ny = aten.mul.Tensor(n, y) if isinstance(y, torch.Tensor) else aten.mul.Scalar(n, y)
    r = series(aten.sub.Tensor(x, ny))
    a = series(x).plane(S.ZERO)
    b = series(y).plane(S.ZERO) if isinstance(y, torch.Tensor) else y
    m = std_op(a, b)
    n0 = series(n).plane(S.ZERO)
    k = torch.where(m == 0, torch.round(a / b) - n0, torch.zeros_like(m))
    plane0 = m + k * b
    sup = r.support
    if S.ZERO not in sup:
        r = A.add(r, Series(torch.zeros_like(plane0).unsqueeze(0), (S.ZERO,)))
        sup = r.support
    i = sup.index(S.ZERO)
    nan = torch.isnan(r.planes[i])
    planes = torch.cat([r.planes[:i], torch.where(nan, r.planes[i], plane0).unsqueeze(0), r.planes[i + 1 :]])
    return out(Series(planes, sup, r.order, r.exact))


@implements([aten.fmod.Tensor, aten.fmod.Scalar])
def fmod(func, x, y):
    return _mod(x, y, trunc, torch.fmod)


@implements([aten.remainder.Tensor, aten.remainder.Scalar, aten.remainder.Scalar_Tensor])
def remainder(func, x, y):
    if func is aten.remainder.Scalar_Tensor:  # a number x: a tensor of y's dtype, as torch promotes it
        x = torch.tensor(x, dtype=y.dtype, device=y.device)
    return _mod(x, y, floor, torch.remainder)


@implements([aten.heaviside.default], kind="decision")
@smoothable("heaviside")
def heaviside(func, x, values):
    s = series(x)
    if (
        s.support == A.FIRST_ORDER
        and s.exact is None
        and kernels.usable(s.planes)
        and isinstance(values, torch.Tensor)
        and not isinstance(values, LCTensor)
        and A.bshape(values.shape, s.shape) == s.shape
    ):
        return real_out(kernels.heaviside2(s.planes, values), s)
    # only the sign matters, and infinite numbers have one: heaviside(−ε⁻¹ + 1) = 0
    sg = A.trusted_lead_sign(s, "heaviside")
    pos = (sg > 0).to(s.planes.dtype)  # a NaN element gives 0, as torch.heaviside(nan, v)
    return select(sg == 0, values, real_out(pos, s))


@implements([aten.isnan.default])
def isnan(func, x):
    return nan_elements(series(x).planes)


def _float_inf(x):
    """Elements with an infinite float coefficient and no NaN one (a NaN coefficient makes the element
    NaN, and torch's NaN is not infinite), and whether the first (lowest-exponent) infinite
    coefficient of each is +inf."""
    P = series(x).planes
    inf = torch.isinf(P)
    first = inf.to(torch.uint8).argmax(0, keepdim=True)
    return inf.any(0) & ~nan_elements(P), P.gather(0, first).squeeze(0) > 0


@implements([aten.isinf.default])
def isinf(func, x):
    return _float_inf(x)[0]


@implements([aten.isposinf.default])
def isposinf(func, x):
    inf, pos = _float_inf(x)
    return inf & pos


@implements([aten.isneginf.default])
def isneginf(func, x):
    inf, pos = _float_inf(x)
    return inf & ~pos


@implements([aten.isfinite.default])
def isfinite(func, x):
    return torch.isfinite(series(x).planes).all(0)


@implements([aten.signbit.default], kind="decision")
def signbit(func, x):
    return A.lead_sign(series(x).planes) < 0
