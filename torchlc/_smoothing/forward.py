"""Forward mode: smoothing on LCTensor arguments (LC arithmetic, semantics §6).

On an LCTensor x = a + d (a the standard part, d its infinitesimal part) a jump primitive F under
smoothing gives F(a) + Σ_{m≥1} F_h^{(m)}(a)/m! · d^m, with F_h' the smoothed density of
:mod:`.kernels`: the ε⁰ plane is the exact value at the standard point, the ε-part the smoothed
derivative. Infinite elements (a negative power of ε in x) keep the exact rule's value.

:func:`lc_rule` is what the rules of :mod:`torchlc.ops.discontinuous` call (through the config object
that ``_context.smoothing()`` returns) while a smoothing block is active.
"""

from __future__ import annotations

import torch

from .. import _algebra as A
from .. import _support as S
from .._tensor import LCTensor, Series, series, wrap
from ..ops import discontinuous as D
from ..ops._util import out
from .kernels import taylor_coeffs

__all__ = ["increment", "lc_rule", "lc_apply", "lc_compare_soft", "lc_argmax_soft", "real"]

aten = torch.ops.aten


def increment(cfg, name, x, decimals=0):
    """(inc, a, bad, s) for an LC argument x = a + d: ``inc`` the Series of the smoothed increment
    F_h(a + d) − F_h(a) (positive planes only; None when d = 0), ``a`` the standard part, ``bad`` the
    infinite elements (or None), ``s`` the Series of x. Infinite elements are the caller's business."""
    s = series(x)
    a, d, bad = A.split_finite(s, name)
    if not d.support:
        return None, a, bad, s
    K = A.n_terms(d.support, s.order) if s.order is not None else 2
    coeffs = taylor_coeffs(name, a, cfg.width, cfg.kernel, K, decimals)
    ser = A._series_eval(coeffs, d, s.order)
    keep = [i for i, q in enumerate(ser.support) if q > 0]
    inc = Series(ser.planes[keep], tuple(ser.support[i] for i in keep), s.order,
                 A.min_exact(s.exact, s.order))
    return inc, a, bad, s


def real(a: torch.Tensor, like: Series):
    """The plain tensor a as a real LCTensor with the order of ``like``."""
    return wrap(a.unsqueeze(0), (S.ZERO,), like.order, None)


def _plus(val, inc: Series, bad, exact_val):
    """val (LC or plain, exact at the standard point) + inc (positive planes); infinite elements
    take the exact rule's value ``exact_val()``."""
    v = series(val)
    if v.planes.dtype != inc.planes.dtype:
        v = Series(v.planes.to(inc.planes.dtype), v.support, v.order, v.exact)
    if v.order is None:
        v = Series(v.planes, v.support, inc.order, None)
    res = out(A.add(v, inc))
    if bad is not None and bool(bad.any()):
        ex = exact_val()
        rs, es = series(res), series(ex)
        pa, pb, sup = A.aligned(rs, es)
        res = out(Series(torch.where(bad, pb, pa), sup, rs.order, A.min_exact(rs.exact, es.exact)))
    return res


def _has_neg(s: Series):
    return any(q < 0 for q in s.support)


def _std(x):
    """An LC operand at its standard point (a real LCTensor); plain operands pass through."""
    if isinstance(x, LCTensor):
        s = series(x)
        return real(A.split_finite(s, "compare")[0], s) if not _has_neg(s) else x
    return x


def lc_rule(cfg, name, rule, func, args, kwargs):
    """The smoothed version of the exact LC rule ``rule`` of primitive ``name``."""
    if name in ("lt", "le", "gt", "ge"):
        a, b = args
        return rule(func, _std(a), _std(b))  # the soft companion is attached by the mode
    if name == "where":
        return rule(func, *args, **kwargs)
    x, rest = args[0], args[1:]
    if not isinstance(x, LCTensor):
        return rule(func, *args, **kwargs)
    decimals = kwargs.get("decimals", 0) if name == "round_decimals" else 0
    inc, a, bad, s = increment(cfg, name, x, decimals)
    val = rule(func, real(a, s), *rest, **kwargs)
    if inc is None:
        return rule(func, x, *rest, **kwargs) if bad is not None else val
    return _plus(val, inc, bad, lambda: rule(func, x, *rest, **kwargs))


_RULES = {
    "heaviside": (D.heaviside, aten.heaviside.default),
    "sign": (D.sign, aten.sign.default),
    "floor": (D.floor, aten.floor.default),
    "ceil": (D.ceil, aten.ceil.default),
    "trunc": (D.trunc, aten.trunc.default),
    "round": (D.round_, aten.round.default),
    "round_decimals": (D.round_decimals, aten.round.decimals),
}


def lc_apply(cfg, name, x, *rest, **kwargs):
    """Apply primitive ``name`` to an LCTensor with smoothing config ``cfg`` (None: exact)."""
    wrapped, func = _RULES[name]
    if cfg is None:
        return wrapped.exact(func, x, *rest, **kwargs)
    return lc_rule(cfg, name, wrapped.exact, func, (x, *rest), kwargs)


def lc_compare_soft(cfg, op, name, a, b, value):
    """Companion of an LC comparison: exact 0/1 at the standard point + smoothed ε-part of a − b."""
    inc, _, bad, s = increment(cfg, "gt", a - b)
    v = value.to(s.planes.dtype)
    if inc is None:
        return real(v, s)
    if name in ("lt", "le"):
        inc = A.neg(inc)
    return _plus(v, inc, bad, lambda: real(op(a, b).to(s.planes.dtype), s))


def lc_argmax_soft(cfg, z):
    """LC one-hot companion: exact one-hot at the standard point + Σ_j (e* − e_j)·inc(z* − z_j)."""
    sz = series(z)
    a = A.split_finite(sz, "argmax")[0]
    idx = a.argmax(-1, keepdim=True)
    oh = torch.zeros_like(a).scatter_(-1, idx, 1.0)
    zstar = (z * oh).sum(-1, keepdim=True)
    inc, _, bad, s = increment(cfg, "step", zstar - z)
    val = real(oh, s)
    if inc is None:
        return val
    p = out(inc)
    return val + (oh * p.sum(-1, keepdim=True) - p)


def delta(s):
    """The derivative part of a companion: value exactly 0, derivative that of s (None if none)."""
    if isinstance(s, LCTensor):
        ss = series(s)
        keep = [i for i, q in enumerate(ss.support) if q != 0]
        if not keep:
            return None
        return out(Series(ss.planes[keep], tuple(ss.support[i] for i in keep), ss.order, ss.exact))
    return s - s.detach()
