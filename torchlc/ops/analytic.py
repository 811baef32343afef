"""Analytic functions of finite arguments (semantics §3): g(a + d) = Σ_k g⁽ᵏ⁾(a)/k! dᵏ.

Each function is one entry: the value ``g(a)``, its first derivative (the fast first-order path) and,
for higher orders, the univariate Taylor coefficients of g at a, built with the small jet helpers of
:mod:`torchlc._algebra` (``t_mul``, ``t_recip``, ``t_exp``, ``t_integrate``) as JAX's ``jet`` does.
Infinite arguments give NaN (DomainError in strict mode); so do arguments outside the real domain.
"""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .. import kernels
from .._algebra import factorial_series, identity_series, t_exp, t_integrate, t_mul, t_recip
from .._tensor import Series, implements, series
from ._util import out

aten = torch.ops.aten
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _cycle(vals, K):
    """[v0, v1, …] repeating with period len(vals), divided by k!; vals are thunks (computed lazily)."""
    cache = {}

    def get(i):
        if i not in cache:
            cache[i] = vals[i]()
        return cache[i]

    return factorial_series([get(k % len(vals)) for k in range(K)])


def _ode(y0, K, step):
    """Univariate Taylor coefficients of y with y(0)=y0 and (k+1)·y_{k+1} = step(y, k)."""
    y = [y0]
    for k in range(K - 1):
        y.append(step(y, k) / (k + 1))
    return y


def _conv(u, v, k):
    return sum(u[j] * v[k - j] for j in range(k + 1))


def taylor_exp(a, K):
    e = a.exp()
    return [e] if K == 1 else factorial_series([e] * K)


def taylor_expm1(a, K):
    c = taylor_exp(a, K)
    return [a.expm1()] + c[1:]


def taylor_log(a, K):
    out_ = [a.log()]
    if K > 1:
        inv = a.reciprocal()
        p = inv
        for k in range(1, K):
            out_.append(p * ((-1) ** (k + 1) / k))
            p = p * inv
    return out_


def taylor_log1p(a, K):
    c = taylor_log(1 + a, K)
    return [a.log1p()] + c[1:]


def taylor_sin(a, K):
    if K == 1:
        return [a.sin()]
    s, c = a.sin(), a.cos()
    return _cycle([lambda: s, lambda: c, lambda: -s, lambda: -c], K)


def taylor_cos(a, K):
    if K == 1:
        return [a.cos()]
    s, c = a.sin(), a.cos()
    return _cycle([lambda: c, lambda: -s, lambda: -c, lambda: s], K)


def taylor_sinh(a, K):
    if K == 1:
        return [a.sinh()]
    return _cycle([a.sinh, a.cosh], K)


def taylor_cosh(a, K):
    if K == 1:
        return [a.cosh()]
    return _cycle([a.cosh, a.sinh], K)


def taylor_tan(a, K):
    return _ode(a.tan(), K, lambda y, k: (1.0 if k == 0 else 0.0) + _conv(y, y, k))


def taylor_tanh(a, K):
    return _ode(a.tanh(), K, lambda y, k: (1.0 if k == 0 else 0.0) - _conv(y, y, k))


def taylor_sigmoid(a, K):
    return _ode(torch.sigmoid(a), K, lambda y, k: y[k] - _conv(y, y, k))


def _from_derivative(y0, dseries):
    return t_integrate(y0, dseries)


def taylor_atan(a, K):
    if K == 1:
        return [a.atan()]
    x = identity_series(a, K - 1)
    q = t_recip([1 + x[0] * x[0]] + t_mul(x, x)[1:]) if K > 1 else []
    return _from_derivative(a.atan(), q)


def _rsqrt_series(u):
    """(u)^(-1/2) for a univariate series with u[0] > 0: y' = -½ u'/u · y."""
    y = [u[0].rsqrt()]
    inv = t_recip(u)
    du = [(k + 1) * u[k + 1] for k in range(len(u) - 1)]
    ratio = t_mul(du, inv)  # u'/u
    for k in range(len(u) - 1):
        y.append(-0.5 * _conv(ratio, y, k) / (k + 1))
    return y


def taylor_asin(a, K):
    if K == 1:
        return [a.asin()]
    x = identity_series(a, K - 1)
    one_minus = [1 - a * a] + [-v for v in t_mul(x, x)[1:]]
    return _from_derivative(a.asin(), _rsqrt_series(one_minus))


def taylor_acos(a, K):
    c = taylor_asin(a, K)
    return [a.acos()] + [-v for v in c[1:]]


def taylor_erf(a, K):
    if K == 1:
        return [torch.erf(a)]
    x = identity_series(a, K - 1)
    sq = t_mul(x, x)
    g = t_exp([-v for v in sq])
    return _from_derivative(torch.erf(a), [v * (2 / math.sqrt(math.pi)) for v in g])


def taylor_erfc(a, K):
    c = taylor_erf(a, K)
    return [torch.erfc(a)] + [-v for v in c[1:]]


def _sigmoid_series(u):
    """sigmoid of a univariate series u: y' = y(1 − y)·u'."""
    y = [torch.sigmoid(u[0])]
    du = [(k + 1) * u[k + 1] for k in range(len(u) - 1)]
    for k in range(len(u) - 1):
        w = [y[j] - _conv(y, y, j) for j in range(k + 1)]
        y.append(_conv(w, du, k) / (k + 1))
    return y


def _tanh_series(u):
    """tanh of a univariate series u: y' = (1 − y²)·u'."""
    y = [torch.tanh(u[0])]
    du = [(k + 1) * u[k + 1] for k in range(len(u) - 1)]
    for k in range(len(u) - 1):
        w = [(1.0 if j == 0 else 0.0) - _conv(y, y, j) for j in range(k + 1)]
        y.append(_conv(w, du, k) / (k + 1))
    return y


def taylor_silu(a, K):
    if K == 1:
        return [torch.nn.functional.silu(a)]
    x = identity_series(a, K)
    return t_mul(x, _sigmoid_series(x))


def taylor_gelu(a, K):
    if K == 1:
        return [torch.nn.functional.gelu(a)]
    x = identity_series(a, K)
    phi = t_exp([-0.5 * v for v in t_mul(x, x)])[: K - 1]
    cdf = _from_derivative(0.5 * (1 + torch.erf(a / math.sqrt(2))), [v / math.sqrt(2 * math.pi) for v in phi])
    res = t_mul(x, cdf)
    return [torch.nn.functional.gelu(a)] + res[1:]


def taylor_gelu_tanh(a, K):
    if K == 1:
        return [torch.nn.functional.gelu(a, approximate="tanh")]
    x = identity_series(a, K)
    x3 = t_mul(t_mul(x, x), x)
    u = [SQRT_2_OVER_PI * (x[k] + 0.044715 * x3[k]) for k in range(K)]
    t = _tanh_series(u)
    half = [0.5 * ((1.0 if k == 0 else 0.0) + t[k]) for k in range(K)]
    res = t_mul(x, half)
    return [torch.nn.functional.gelu(a, approximate="tanh")] + res[1:]


def _lift(fn_name, taylor, domain=None):
    """Rule for an elementwise analytic op; ``domain(a)`` marks standard parts outside the domain."""

    def rule(func, x, *args, **kwargs):
        s = series(x)
        if fn_name in kernels.ANALYTIC2 and s.support == A.FIRST_ORDER and kernels.usable(s.planes):
            return out(Series(kernels.analytic2(fn_name, s.planes), s.support, s.order,
                              A.min_exact(s.exact, s.order)))
        res = A.analytic(s, taylor, fn_name)
        if domain is not None:
            bad = domain(A.split_finite(s, fn_name)[0])
            A.check_domain(bad, lambda m: f"{fn_name}: argument outside the domain in {int(m.sum())} element(s)")
            res.planes = torch.where(bad, torch.full_like(res.planes, float("nan")), res.planes)
        return out(res)

    return rule


_TABLE = {
    aten.exp.default: ("exp", taylor_exp, None),
    aten.expm1.default: ("expm1", taylor_expm1, None),
    aten.log.default: ("log", taylor_log, lambda a: a <= 0),
    aten.log1p.default: ("log1p", taylor_log1p, lambda a: a <= -1),
    aten.sin.default: ("sin", taylor_sin, None),
    aten.cos.default: ("cos", taylor_cos, None),
    aten.tan.default: ("tan", taylor_tan, None),
    aten.tanh.default: ("tanh", taylor_tanh, None),
    aten.sinh.default: ("sinh", taylor_sinh, None),
    aten.cosh.default: ("cosh", taylor_cosh, None),
    aten.sigmoid.default: ("sigmoid", taylor_sigmoid, None),
    aten.atan.default: ("atan", taylor_atan, None),
    aten.asin.default: ("asin", taylor_asin, lambda a: a.abs() >= 1),
    aten.acos.default: ("acos", taylor_acos, lambda a: a.abs() >= 1),
    aten.erf.default: ("erf", taylor_erf, None),
    aten.erfc.default: ("erfc", taylor_erfc, None),
    aten.silu.default: ("silu", taylor_silu, None),
}
for _op, (_name, _taylor, _dom) in _TABLE.items():
    implements([_op])(_lift(_name, _taylor, _dom))


@implements([aten.log2.default])
def log2(func, x):
    return aten.div.Scalar(aten.log.default(x), math.log(2.0))


@implements([aten.log10.default])
def log10(func, x):
    return aten.div.Scalar(aten.log.default(x), math.log(10.0))


@implements([aten.exp2.default])
def exp2(func, x):
    return aten.exp.default(aten.mul.Scalar(x, math.log(2.0)))


@implements([aten.gelu.default])
def gelu(func, x, approximate="none"):
    taylor = taylor_gelu if approximate == "none" else taylor_gelu_tanh
    return out(A.analytic(series(x), taylor, "gelu"))


@implements([aten.softplus.default])
def softplus(func, x, beta=1, threshold=20):
    # torch switches to the identity where beta·x > threshold; we decide that by the field's order
    def taylor(a, K):
        y0 = torch.nn.functional.softplus(a, beta, threshold)
        if K == 1:
            return [y0]
        sig = _sigmoid_series([beta * v for v in identity_series(a, K - 1)])
        return _from_derivative(y0, sig)

    smooth = out(A.analytic(series(x), taylor, "softplus"))
    linear = aten.gt.Scalar(aten.mul.Scalar(x, beta), threshold)
    return aten.where.self(linear, x, smooth)
