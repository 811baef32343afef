"""Native rules for CSR tensors: ops computed on per-element exponent runs, never on decoded planes.

A CSR LCTensor (``torchlc.layouts.csr``) stores each element's own sorted exponents, so a tensor whose
elements carry different exponents costs O(terms), where planes cost (distinct exponents × elements).
The rules here register in the dispatcher's per-layout table (``_dispatch.implements_layout``) and are
consulted before the planes rules whenever an operand is stored as CSR. The algebra is
:mod:`torchlc._ragged` (the same mathematics as the planes algebra, per element); this module adapts
aten signatures, converts the other operands and applies the layout policy to results.

* **Which side converts.** Mixed operands (CSR with planes, boxed, plain tensors or numbers): the
  non-CSR side is encoded (linear in its planes), unless every CSR operand is *narrow* (its exponents
  span at most ``SPARSE_RATIO`` plane cells per stored term): then decoding it is as cheap, and the rule
  declines so the planes rules run.
* **Where results go.** A narrow result is decoded to planes (and stored by the ordinary policy); a
  wide one stays CSR, with a lazy support. ``torchlc.layouts.force`` overrides both.
* **Declining.** A rule returns NotImplemented (the op then decodes to planes, as before) for autograd
  (an operand requiring grad), complex coefficients, functorch-wrapped operands, an active
  ``torchlc.smoothing`` block for the jump ops, exponents whose numerators would leave int64, and
  argument forms it does not cover. Ops without a rule here always decode.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch.utils._pytree import tree_map

from .. import _context
from .. import _ragged as R
from .. import _support as S
from .._algebra import min_exact, result_order
from .._dispatch import implements_layout
from .._tensor import LCTensor, from_storage, real, series, wrap
from ..layouts import CSR_LAYOUT
from ..layouts import csr as _csr
from .analytic import _TABLE as _ANALYTIC

aten = torch.ops.aten
NAN = float("nan")

__all__ = ["to_ragged", "from_ragged", "pow_elementwise", "pow_many"]


def native(ops):
    return implements_layout(CSR_LAYOUT, ops)


# -- operands and results -----------------------------------------------------------------------------------


def _is_csr(x) -> bool:
    return isinstance(x, LCTensor) and x.lc_layout is CSR_LAYOUT


def _narrow_counts(n, nnz, span) -> bool:
    return span * max(n, 1) <= _csr.SPARSE_RATIO * nnz


def _narrow_tensor(x) -> bool:
    ptr, num, _, meta = x.lc_storage
    _, lo, hi = meta.tolist()
    nnz = num.numel()
    return _narrow_counts(ptr.numel() - 1, nnz, hi - lo + 1 if nnz else 1)


def _flat(xs):
    flat = []
    for x in xs:
        flat.extend(x if isinstance(x, (list, tuple)) else [x])
    return flat


def _unsupported(*xs) -> bool:
    """Operands the native rules leave to the planes rules: autograd, complex, functorch-wrapped."""
    return any(isinstance(x, torch.Tensor) and (x.requires_grad or x.dtype.is_complex or _context.is_wrapped(x))
               for x in _flat(xs))


def _declines(*xs) -> bool:
    """Whether a native rule should leave these operands to the planes rules (see the docstring)."""
    if _unsupported(*xs):
        return True
    if _context.forced_layout() == "csr":
        return False
    return all(_narrow_tensor(x) for x in _flat(xs) if _is_csr(x))


def to_ragged(x, like=None) -> R.Ragged:
    """A Ragged of an LCTensor (any layout), a plain tensor (exact reals) or a number."""
    if isinstance(x, LCTensor):
        if x.lc_layout is CSR_LAYOUT:
            return _csr.ragged(x.lc_storage, tuple(x.shape), x.lc_order, x.lc_exact)
        s = series(x)
        return R.from_planes(s.planes, s.support, s.order, s.exact)
    if not isinstance(x, torch.Tensor):
        x = torch.tensor(x, dtype=like.vals.dtype if like is not None else None,
                         device=like.vals.device if like is not None else None)
    return R.monomials(0, x.reshape(-1), 1, tuple(x.shape), None)


def _operands(*xs):
    """Ragged of every operand; numbers take the dtype of the first LC operand."""
    like = next(to_ragged(x) for x in xs if isinstance(x, LCTensor))
    return [to_ragged(x, like) for x in xs]


def from_ragged(r: R.Ragged) -> LCTensor:
    """The LCTensor of a native result, stored by the policy (module docstring)."""
    exact = r.exact
    if exact is not None and r.order is not None and exact > r.order:
        exact = r.order
    forced = _context.forced_layout()
    if forced == "csr" or (forced is None and not _narrow_counts(r.n, r.nnz, r.span())):
        return from_storage(CSR_LAYOUT, _csr.inner_of(r), r.order, exact, r.shape, r.vals.dtype)
    sup = R.support_of(r)
    return wrap(R.to_planes(r, sup), sup, r.order, exact)


def _native_or_fallback(rule):
    """Run a native rule; exponents that do not fit int64 send the op to the planes rules."""

    def wrapped(func, *args, **kwargs):
        try:
            return rule(func, *args, **kwargs)
        except R.RaggedOverflow:
            return NotImplemented

    wrapped.__name__ = rule.__name__
    wrapped.__doc__ = rule.__doc__
    return wrapped


def _smoothing_on() -> bool:
    return _context.smoothing() is not None


# -- + − × ÷ ------------------------------------------------------------------------------------------------


@native([aten.add.Tensor, aten.add.Scalar, aten.sub.Tensor, aten.sub.Scalar])
@_native_or_fallback
def add(func, a, b, *, alpha=1):
    if _declines(a, b):
        return NotImplemented
    ra, rb = _operands(a, b)
    sign = -1 if func.overloadpacket is aten.sub else 1
    return from_ragged(R.add(ra, rb, sign * alpha))


@native([aten.rsub.Tensor, aten.rsub.Scalar])
@_native_or_fallback
def rsub(func, a, b, *, alpha=1):
    if _declines(a, b):
        return NotImplemented
    ra, rb = _operands(a, b)
    return from_ragged(R.add(rb, ra, -alpha))


@native([aten.neg.default])
@_native_or_fallback
def neg(func, x):
    if _declines(x):
        return NotImplemented
    return from_ragged(R.scale(to_ragged(x), -1))


def _plain(x) -> bool:
    return not isinstance(x, LCTensor)


def _mul(a, b):
    if _plain(b):
        return R.scale(to_ragged(a), b)
    if _plain(a):
        return R.scale(to_ragged(b), a)
    ra, rb = _operands(a, b)
    return R.mul(ra, rb)


@native([aten.mul.Tensor, aten.mul.Scalar])
@_native_or_fallback
def mul(func, a, b):
    if _declines(a, b):
        return NotImplemented
    return from_ragged(_mul(a, b))


@native([aten.square.default])
@_native_or_fallback
def square(func, x):
    if _declines(x):
        return NotImplemented
    return from_ragged(_mul(x, x))


@native([aten.div.Tensor, aten.div.Scalar, aten.true_divide.Tensor])
@_native_or_fallback
def div(func, a, b):
    if _declines(a, b):
        return NotImplemented
    if _plain(b):
        # a plain divisor divides every coefficient (the ε⁰ one rounds exactly as torch's a / b)
        r = to_ragged(a)
        if isinstance(b, torch.Tensor):
            shape = tuple(torch.broadcast_shapes(r.shape, b.shape))
            r = R.broadcast(r, shape)
            c = b.expand(shape).reshape(-1)[r.rows()]
        else:
            c = b
        return from_ragged(R.Ragged(r.ptr, r.num, r.vals / c, r.den, r.lo, r.hi, r.shape, r.order, r.exact))
    ra, rb = _operands(a, b)
    return from_ragged(R.mul(ra, R.power(rb, Fraction(-1))))


# -- powers and roots ------------------------------------------------------------------------------------------


def _power_rule(r):
    @_native_or_fallback
    def rule(func, x):
        if _declines(x):
            return NotImplemented
        return from_ragged(R.power(to_ragged(x), r))

    return rule


native([aten.reciprocal.default])(_power_rule(Fraction(-1)))
native([aten.sqrt.default])(_power_rule(Fraction(1, 2)))
native([aten.rsqrt.default])(_power_rule(Fraction(-1, 2)))


@native([aten.pow.Tensor_Scalar])
@_native_or_fallback
def pow_scalar(func, x, e):
    r = S.scalar_exponent(e)
    if r is None or _declines(x):
        return NotImplemented  # an irrational-looking exponent: exp(e·log x) through the planes rules
    if r == 1:  # a new tensor, as torch's x ** 1 (the CSR storage is shared: never written in place)
        return same(None, x)
    if r.denominator == 1 and 2 <= r <= 4:  # through products, as on planes (same value)
        rx = to_ragged(x)
        sq = R.mul(rx, rx)
        return from_ragged(sq if r == 2 else R.mul(sq, rx) if r == 3 else R.mul(sq, sq))
    return from_ragged(R.power(to_ragged(x), r))


@native([aten.pow.Tensor_Tensor])
@_native_or_fallback
def pow_tensor(func, x, e):
    if isinstance(e, LCTensor) or _declines(x, e):
        return NotImplemented
    res = pow_elementwise(x, e)
    return NotImplemented if res is None else res


# x ** e with more distinct exponent values than this goes native whatever x's layout: the planes
# rule runs one power and one where per distinct value (quadratic in their number).
POW_GROUPS = 8


def pow_many(x, e, vals):
    """x ** e natively when the plain exponent tensor e has more than POW_GROUPS distinct values
    ``vals`` (None: the grouped planes rule is as good, or an exponent needs it)."""
    if vals.numel() <= POW_GROUPS or isinstance(e, LCTensor) or _unsupported(x, e):
        return None
    try:
        return pow_elementwise(x, e)
    except R.RaggedOverflow:
        return None


def pow_elementwise(x, e):
    """x ** e for a plain tensor of per-element exponents e (broadcast with x), natively: each element
    gets its own exact rational exponent (the semantics §1 float rule, vectorised for float64 by
    :func:`torchlc._support.float_exponents`, per distinct value otherwise), and x^r expands around
    each element's own leading term. None when an exponent is irrational-looking (the planes rule
    then takes exp(e·log x) there)."""
    rx = to_ragged(x)
    shape = tuple(torch.broadcast_shapes(rx.shape, e.shape))
    rx = R.broadcast(rx, shape)
    vals, inv = torch.unique(e.expand(shape).reshape(-1), return_inverse=True)
    if e.dtype.is_floating_point:
        num, den, ok = S.float_exponents(vals) if e.dtype == torch.float64 else (None, None, None)
        if ok is None or not bool(ok.all()):  # other dtypes, and values the fast path cannot settle
            kind = str(e.dtype).removeprefix("torch.")
            qs = [S.scalar_exponent(v, kind) for v in vals.tolist()]
            if any(q is None for q in qs):
                return None
            num = torch.tensor([q.numerator for q in qs], dtype=torch.int64)
            den = torch.tensor([q.denominator for q in qs], dtype=torch.int64)
    else:
        num, den = vals.to(torch.int64), torch.ones_like(vals, dtype=torch.int64)
    Q = math.lcm(*den.tolist()) if den.numel() else 1
    R._fits(Q, Q * int(num.abs().max()) if num.numel() else 0)
    Pd = num * torch.div(Q, den, rounding_mode="floor")
    return from_ragged(R.power_each(rx, Pd.to(rx.num.device), Q, inv))


# -- analytic functions -----------------------------------------------------------------------------------------


def _analytic_rule(name, taylor, domain):
    @_native_or_fallback
    def rule(func, x, *args, **kwargs):
        if args or kwargs or _declines(x):
            return NotImplemented
        return from_ragged(R.analytic(to_ragged(x), taylor, name, domain))

    rule.__name__ = f"ragged_{name}"
    return rule


for _op, (_name, _taylor, _dom) in _ANALYTIC.items():
    native([_op])(_analytic_rule(_name, _taylor, _dom))


# -- the field's order ----------------------------------------------------------------------------------------


def _difference(a, b) -> R.Ragged:
    """b − a (either may be plain)."""
    ra, rb = _operands(a, b)
    if a is b:
        return R.Ragged(ra.ptr, ra.num, ra.vals * 0, ra.den, ra.lo, ra.hi, ra.shape, ra.order, None)
    return R.add(rb, ra, -1)


_CMP = {
    aten.lt: (lambda s: s > 0, "lt"), aten.le: (lambda s: s >= 0, "le"),
    aten.gt: (lambda s: s < 0, "gt"), aten.ge: (lambda s: s <= 0, "ge"),
    aten.eq: (lambda s: s == 0, "eq"), aten.ne: (lambda s: s != 0, "ne"),
}


@native([aten.lt.Tensor, aten.lt.Scalar, aten.le.Tensor, aten.le.Scalar, aten.gt.Tensor, aten.gt.Scalar,
         aten.ge.Tensor, aten.ge.Scalar, aten.eq.Tensor, aten.eq.Scalar, aten.ne.Tensor, aten.ne.Scalar])
@_native_or_fallback
def compare(func, a, b):
    """x < y iff the leading exact coefficient of y − x is positive (semantics §4)."""
    if _smoothing_on() or _declines(a, b):
        return NotImplemented
    pred, what = _CMP[func.overloadpacket]
    return pred(R.lead_sign(_difference(a, b), what))


@native([aten.sign.default, aten.sgn.default])
@_native_or_fallback
def sign(func, x):
    if _smoothing_on() or _declines(x):
        return NotImplemented
    r = to_ragged(x)
    return real(R.lead_sign(r, "sign").to(r.vals.dtype), r.order)


@native([aten.abs.default])
@_native_or_fallback
def abs_(func, x):
    """|x| = sign(x)·x, the sign of each element's leading coefficient (a NaN element stays NaN)."""
    if _declines(x):
        return NotImplemented
    r = to_ragged(x)
    _, c, _ = R.lead(r)
    sg = torch.sign(c)
    return from_ragged(R.Ragged(r.ptr, r.num, r.vals * sg[r.rows()], r.den, r.lo, r.hi, r.shape, r.order, r.exact))


@native([aten.relu.default])
@_native_or_fallback
def relu(func, x):
    """relu keeps the elements whose leading coefficient is positive (NaN stays NaN, like torch)."""
    if _declines(x):
        return NotImplemented
    r = to_ragged(x)
    if r.exact is not None:
        return NotImplemented  # the planes rule records the exact zeros it makes (decisions read them)
    _, c, nan = R.lead(r)
    keep = (c > 0) | nan
    return from_ragged(R.gather(r, torch.where(keep, torch.arange(r.n, device=c.device), -1), r.shape))


@native([aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar])
@_native_or_fallback
def where(func, cond, a, b):
    if isinstance(cond, LCTensor) or _smoothing_on() or _declines(a, b):
        return NotImplemented
    ra, rb = _operands(a, b)
    shape = tuple(torch.broadcast_shapes(cond.shape, ra.shape, rb.shape))
    ra, rb = R.common(R.broadcast(ra, shape), R.broadcast(rb, shape))
    both = R.concat([ra, rb], shape)
    n = ra.n
    ar = torch.arange(n, device=ra.ptr.device)
    idx = torch.where(cond.expand(shape).reshape(-1), ar, ar + n)
    res = R.gather(both, idx, shape)
    res.order, res.exact = result_order(ra, rb), min_exact(ra.exact, rb.exact)
    return from_ragged(res)


# -- reductions ------------------------------------------------------------------------------------------------


@native([aten.sum.default, aten.sum.dim_IntList])
@_native_or_fallback
def sum_(func, x, dim=None, keepdim=False, *, dtype=None):
    """A sum over dims is a segmented merge: every element's terms go to its output element."""
    if _declines(x):
        return NotImplemented
    r = to_ragged(x)
    nd = len(r.shape)
    dims = list(range(nd)) if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0) else (
        [dim] if isinstance(dim, int) else list(dim))
    dims = sorted({d + nd if d < 0 else d for d in dims})
    kshape = tuple(1 if i in dims else s for i, s in enumerate(r.shape))
    n_out = math.prod(kshape)
    gid = torch.arange(n_out, device=r.ptr.device).reshape(kshape).expand(r.shape)
    out_shape = kshape if keepdim else tuple(s for i, s in enumerate(r.shape) if i not in dims)
    res = R.group_sum(r, gid, n_out, out_shape)
    if dtype is not None:
        res.vals = res.vals.to(dtype)
    return from_ragged(res)


@native([aten.prod.default, aten.prod.dim_int])
@_native_or_fallback
def prod(func, x, dim=None, keepdim=False, *, dtype=None):
    """A product over a dim (or all elements): pairwise Cauchy products of its elements, halving the
    dim each round (⌈log₂ L⌉ rounds of one vectorised product over every output element at once; an
    odd count carries its last element over). An empty dim gives 1."""
    if _declines(x) or dtype not in (None, x.dtype):  # a dtype to cast to: the dense rule
        return NotImplemented
    r = to_ragged(x)
    nd, dev = len(r.shape), r.ptr.device
    ar = torch.arange(r.n, device=dev).reshape(r.shape)
    if dim is None:
        rows, out_shape = ar.reshape(1, -1), ()
    else:
        d = dim + nd if dim < 0 else dim
        if nd == 0:
            ar, d = ar.reshape(1), 0
        rows = ar.movedim(d, -1).reshape(-1, ar.shape[d]) if ar.numel() else torch.empty(
            (math.prod(ar.shape[:d] + ar.shape[d + 1:]), ar.shape[d]), dtype=torch.int64, device=dev)
        kept = [s for i, s in enumerate(r.shape) if i != d]
        out_shape = tuple(r.shape[:d]) + (1,) + tuple(r.shape[d + 1:]) if keepdim and nd else tuple(kept)
    M, L = rows.shape
    if L == 0:
        one = torch.ones(M, dtype=r.vals.dtype, device=dev)
        res = R.monomials(0, one, r.den, out_shape, r.order, r.exact)
    else:
        cur = R.gather(r, rows, (M * L,))
        while L > 1:
            half = L // 2
            grid = torch.arange(M * L, device=dev).reshape(M, L)
            prod_ = R.mul(R.gather(cur, grid[:, :half], (M * half,)),
                          R.gather(cur, grid[:, half : 2 * half], (M * half,)))
            if L % 2:  # the odd element of each row goes on to the next round
                both = R.concat(R.common(prod_, R.gather(cur, grid[:, -1], (M,))), (M * half + M,))
                nxt = torch.cat([torch.arange(M * half, device=dev).reshape(M, half),
                                 (M * half + torch.arange(M, device=dev)).reshape(M, 1)], 1)
                cur, L = R.gather(both, nxt, (M * (half + 1),)), half + 1
            else:
                cur, L = prod_, half
        res = cur
        res.shape = tuple(out_shape)
    if dtype is not None:
        res.vals = res.vals.to(dtype)
    return from_ragged(res)


@native([aten.masked_fill.Scalar, aten.masked_fill.Tensor])
def masked_fill(func, x, mask, value):
    """x with ``value`` where the plain bool ``mask`` holds: the native ``where``."""
    if isinstance(mask, LCTensor) or not isinstance(x, LCTensor) or (
            isinstance(value, torch.Tensor) and value.dim() != 0):
        return NotImplemented
    if isinstance(value, torch.Tensor) and not isinstance(value, LCTensor):
        value = value.item()  # a 0-d plain value, as torch.masked_fill takes it
    return where(None, mask, value, x)


# -- data movement: the op runs on the element indices, the terms follow -------------------------------------------

_MOVES = [
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default, aten.permute.default,
    aten.transpose.int, aten.t.default, aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim,
    aten.squeeze.dims, aten.select.int, aten.slice.Tensor, aten.narrow.default, aten.flip.default,
    aten.roll.default, aten.repeat.default, aten.index.Tensor, aten.index_select.default, aten.unfold.default,
    aten.diagonal.default, aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default,
    aten.unbind.int, aten.movedim.int, aten.gather.default,
]


def _has_lc(args) -> bool:
    return any(isinstance(a, LCTensor) or (isinstance(a, (list, tuple)) and any(isinstance(t, LCTensor) for t in a))
               for a in args)


@native(_MOVES)
@_native_or_fallback
def move(func, x, *args, **kwargs):
    """A data-movement op on a CSR tensor: computed on ``arange(numel)`` shaped like x, it says which
    element lands where; the elements' term runs are gathered accordingly (no coefficient combined)."""
    if _declines(x) or _has_lc(args) or _has_lc(kwargs.values()):
        return NotImplemented
    r = to_ragged(x)
    idx = func(torch.arange(r.n, device=r.ptr.device).reshape(r.shape), *args, **kwargs)
    return tree_map(lambda t: from_ragged(R.gather(r, t, tuple(t.shape))) if isinstance(t, torch.Tensor) else t, idx)


@native([aten.clone.default, aten.detach.default, aten.alias.default, aten.contiguous.default,
         aten.lift_fresh.default, aten.positive.default])
def same(func, x, *args, **kwargs):
    """A new tensor of the same value: CSR storage is never written in place (in-place ops replace it),
    so the copy shares it."""
    if _declines(x):
        return NotImplemented
    return from_storage(CSR_LAYOUT, x.lc_storage, x.lc_order, x.lc_exact, tuple(x.shape), x.dtype)


@native([aten._to_copy.default])
def to_copy(func, x, *, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False,
            memory_format=None):
    if _declines(x) or (device is not None and torch.device(device) != x.device) or (
            dtype is not None and not dtype.is_floating_point):
        return NotImplemented
    r = to_ragged(x)
    r.vals = r.vals.to(dtype or r.vals.dtype, copy=True)
    return from_ragged(r)


@native([aten.cat.default, aten.stack.default])
@_native_or_fallback
def cat(func, tensors, dim=0):
    """Joins: the element indices of every operand (offset) joined by the op, the terms gathered."""
    if _declines(tensors):
        return NotImplemented
    rs = R.common(*_operands(*tensors))
    off, idx = 0, []
    for r in rs:
        idx.append(torch.arange(off, off + r.n, device=r.ptr.device).reshape(r.shape))
        off += r.n
    joined = func(idx, dim)
    return from_ragged(R.gather(R.concat(rs, (off,)), joined, tuple(joined.shape)))
