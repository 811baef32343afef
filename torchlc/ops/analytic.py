"""Analytic functions of finite arguments (semantics §3): g(a + d) = Σ_k g⁽ᵏ⁾(a)/k! dᵏ.

Each op is one entry of the table below: its name (the fused first-order kernel, if any), its Taylor
coefficients from :mod:`torchlc._taylor` (the mathematics, written once) and its real domain.
Infinite arguments give NaN (DomainError in strict mode); so do arguments outside the real domain.
"""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .. import _taylor as T
from .. import kernels
from .._algebra import Series
from .._dispatch import implements
from .._tensor import series
from ._util import check_as_torch, out

aten = torch.ops.aten


def _lift(fn_name, taylor, domain=None):
    """Rule for an elementwise analytic op; ``domain(a)`` marks standard parts outside the domain."""

    def rule(func, x, *args, **kwargs):
        s = series(x)
        # the fused kernel is the first-order jet: support (0, 1) truncated at order 1 (at order 2 the
        # same support has an ε² term, b²g''(a)/2)
        if fn_name in kernels.ANALYTIC2 and s.support == A.FIRST_ORDER and s.order == 1 and kernels.usable(s.planes):
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
    aten.exp.default: ("exp", T.taylor_exp, None),
    aten.expm1.default: ("expm1", T.taylor_expm1, None),
    aten.log.default: ("log", T.taylor_log, lambda a: a <= 0),
    aten.log1p.default: ("log1p", T.taylor_log1p, lambda a: a <= -1),
    aten.sin.default: ("sin", T.taylor_sin, None),
    aten.cos.default: ("cos", T.taylor_cos, None),
    aten.tan.default: ("tan", T.taylor_tan, None),
    aten.tanh.default: ("tanh", T.taylor_tanh, None),
    aten.sinh.default: ("sinh", T.taylor_sinh, None),
    aten.cosh.default: ("cosh", T.taylor_cosh, None),
    aten.sigmoid.default: ("sigmoid", T.taylor_sigmoid, None),
    aten.atan.default: ("atan", T.taylor_atan, None),
    aten.asin.default: ("asin", T.taylor_asin, lambda a: a.abs() >= 1),
    aten.acos.default: ("acos", T.taylor_acos, lambda a: a.abs() >= 1),
    aten.erf.default: ("erf", T.taylor_erf, None),
    aten.erfc.default: ("erfc", T.taylor_erfc, None),
    aten.silu.default: ("silu", T.taylor_silu, None),
}
for _op, (_name, _taylor, _dom) in _TABLE.items():
    implements([_op], kind="analytic")(_lift(_name, _taylor, _dom))


@implements([aten.log2.default], kind="analytic")
def log2(func, x):
    return aten.div.Scalar(aten.log.default(x), math.log(2.0))


@implements([aten.log10.default], kind="analytic")
def log10(func, x):
    return aten.div.Scalar(aten.log.default(x), math.log(10.0))


@implements([aten.exp2.default], kind="analytic")
def exp2(func, x):
    return aten.exp.default(aten.mul.Scalar(x, math.log(2.0)))


@implements([aten.gelu.default], kind="analytic")
def gelu(func, x, approximate="none"):
    if approximate not in ("none", "tanh"):
        check_as_torch(func, x, approximate=approximate)  # torch's error naming the choices
    s = series(x)
    if approximate == "none" and s.support == A.FIRST_ORDER and s.order == 1 and kernels.usable(s.planes):
        return out(Series(kernels.analytic2("gelu", s.planes), s.support, s.order, A.min_exact(s.exact, s.order)))
    taylor = T.taylor_gelu if approximate == "none" else T.taylor_gelu_tanh
    return out(A.analytic(s, taylor, "gelu"))


@implements([aten.softplus.default], kind="analytic")
def softplus(func, x, beta=1, threshold=20):
    # torch switches to the identity where beta·x > threshold; we decide that by the field's order
    def taylor(a, K):
        y0 = torch.nn.functional.softplus(a, beta, threshold)
        if K == 1:
            return [y0]
        sig = T.sigmoid_series([beta * v for v in T.identity_series(a, K - 1)])
        return T.from_derivative(y0, sig)

    smooth = out(A.analytic(series(x), taylor, "softplus"))
    linear = aten.gt.Scalar(aten.mul.Scalar(x, beta), threshold)
    return aten.where.self(linear, x, smooth)
