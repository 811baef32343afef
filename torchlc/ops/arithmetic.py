"""+ − × ÷, powers and roots (semantics §3)."""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from .. import _algebra as A
from .. import _support as S
from .. import kernels
from .._algebra import Series
from .._context import grad_free as _grad_free
from .._context import inner_is_plain as _inner_is_plain
from .._dispatch import implements, in_place_via_functional
from .._tensor import (
    LCTensor,
    read_planes,
    record_standard_part_fact,
    series,
    standard_part_fact,
    wrap,
)
from ..layouts import PLANES
from . import ragged
from ._util import is_monomial, operand, out

aten = torch.ops.aten


def _add(a, b, alpha=1):
    a, b = operand(a), operand(b)
    # x + eps, 1 + tanh(…), 1 − x: the number into the ε⁰ plane, nothing broadcast
    if (isinstance(a, Series) and type(b) in (int, float) and alpha in (1, -1)
            and (res := A.add_number(a, b if alpha == 1 else -b)) is not None):
        return out(res)
    if (isinstance(b, Series) and type(a) in (int, float) and alpha == 1
            and (res := A.add_number(b, a)) is not None):
        return out(res)
    if not isinstance(b, Series):
        if not isinstance(a, Series):
            raise TypeError("add of two numbers")
        b = series(torch.tensor(b, dtype=a.planes.dtype, device=a.planes.device))
    if not isinstance(a, Series):
        a = series(torch.tensor(a, dtype=b.planes.dtype, device=b.planes.device))
    return out(A.add(a, b, alpha))


@implements([aten.add.Tensor, aten.add.Scalar])
def add(func, a, b, *, alpha=1):
    res = _add(a, b, alpha)
    if type(b) in (int, float) and alpha == 1 and standard_part_fact(a) is not None and _normal_positive(b, a.dtype):
        # x ≥ 0 plus c > 0 normal in the dtype: ≥ c after rounding, never 0 (RMS norm's mean(x²) + eps)
        record_standard_part_fact(res, "pos")
    return res


def _normal_positive(c, dtype) -> bool:
    """Whether the number c is finite, positive and at least the dtype's smallest normal number (so a
    sum with a value ≥ 0 rounds to a positive number in the dtype, whatever math type adds them)."""
    return dtype.is_floating_point and math.isfinite(c) and c >= torch.finfo(dtype).tiny


@implements([aten.add_.Tensor])
def add_(func, a, b, *, alpha=1):
    """a += alpha·b. Two exact first-order tensors (a residual connection) add in place on a's planes
    (one kernel, no result and no copy back); every other case through the functional add."""
    if (pair := _first_order_pair(a, b)) is not None and a.lc_exact is None and b.lc_exact is None:
        pa, pb = pair
        # b broadcasts into a (a's shape is the result's, as torch requires of in-place ops)
        if pa.is_contiguous() and _grad_free(pa, pb) and A.bshape(pa.shape, pb.shape) == pa.shape:
            pa.add_(pb, alpha=alpha)
            return a
    return in_place_via_functional(func, (a, b), {"alpha": alpha})


@implements([aten.sub.Tensor, aten.sub.Scalar])
def sub(func, a, b, *, alpha=1):
    return _add(a, b, -alpha)


@implements([aten.rsub.Tensor, aten.rsub.Scalar])
def rsub(func, a, b, *, alpha=1):
    return _add(b, _neg(a) if alpha == 1 else _scaled(a, -alpha), 1)


def _neg(x):
    s = series(x)
    return out(A.neg(s), monomial=is_monomial(x))


def _scaled(x, c):
    return out(A.scale(series(x), c), monomial=is_monomial(x))


@implements([aten.neg.default])
def neg(func, x):
    return _neg(x)


@implements([aten.positive.default, aten.lift_fresh.default])
def positive(func, x):
    return x


def mul_lc(a, b):
    """Product of two operands (LCTensor, tensor or number) with the monomial flag."""
    mono = is_monomial(a) and is_monomial(b)
    sa, sb = operand(a), operand(b)
    if not isinstance(sb, Series):
        return out(A.scale(sa, sb), monomial=mono)
    if not isinstance(sa, Series):
        return out(A.scale(sb, sa), monomial=mono)
    return out(A.bilinear(sa, sb, torch.mul), monomial=mono)


def _first_order_pair(a, b):
    """Planes of a and b when both are first-order LCTensors on the planes layout with one dtype and
    no exact-zero record (the common case of ``x.nonstd(v)`` programs), else None. Their shapes may
    broadcast (an RMS norm's x·rsqrt(mean x²), a gate times its values)."""
    if not (type(a) is LCTensor and type(b) is LCTensor):
        return None
    if not (a.lc_support == A.FIRST_ORDER == b.lc_support and a.lc_order == 1 == b.lc_order):
        return None
    if a.lc_layout is not PLANES or b.lc_layout is not PLANES or a.lc_zero is not None or b.lc_zero is not None:
        return None
    pa, pb = read_planes(a), read_planes(b)
    if pa.dtype != pb.dtype:
        return None
    if pa.dim() != pb.dim():  # broadcasting operands: the same number of element dims, planes first
        nd = max(pa.dim(), pb.dim()) - 1
        pa, pb = A.broadcast_planes(pa, nd), A.broadcast_planes(pb, nd)
    return pa, pb


@implements([aten.mul.Tensor, aten.mul.Scalar])
def mul(func, a, b):
    """a·b; first-order fast path (a0 + a1ε)(b0 + b1ε) = a0b0 + (a0b1 + a1b0)ε, before the general
    truncated Cauchy product of :func:`torchlc._algebra.bilinear`."""
    if (pair := _first_order_pair(a, b)) is not None:
        pa, pb = pair
        same = pa.shape == pb.shape
        if same and kernels.usable(pa, pb):
            planes = kernels.mul2(pa, pb)
        elif _grad_free(pa, pb):
            # the operands' memory format when the shapes agree (channels-last stays)
            planes = torch.empty_like(pa) if same else torch.empty(
                A.bshape(pa.shape, pb.shape), dtype=pa.dtype, device=pa.device)
            if pa is pb:  # a square: [a₀a₀, a₀a₁] in one pass, then 2·(a₀a₁), which is what
                # a₀a₁ + a₁a₀ rounds to (see _algebra._cauchy_mul): two passes instead of three
                torch.mul(pa[0], pa, out=planes)
                planes[1].mul_(2)
                return _square_result(a, planes)
            torch.mul(pa[0], pb, out=planes)  # [a₀b₀, a₀b₁] in one kernel
            planes[1].addcmul_(pa[1], pb[0])
        else:
            planes = torch.stack([pa[0] * pb[0], torch.addcmul(pa[0] * pb[1], pa[1], pb[0])])
        if a is b:
            return _square_result(a, planes)
        return wrap(planes, A.FIRST_ORDER, a.lc_order, A.min_exact(a.lc_exact, b.lc_exact, a.lc_order))
    return mul_lc(a, b)


def _square_result(a, planes):
    """The first-order square a·a from its planes: its ε⁰ plane a₀·a₀ is ≥ 0 (or NaN) everywhere."""
    res = wrap(planes, A.FIRST_ORDER, a.lc_order, A.min_exact(a.lc_exact, a.lc_exact, a.lc_order))
    record_standard_part_fact(res, "nonneg")
    return res


def _power(x, r):
    """x ** r by :func:`torchlc._algebra.power`, told when x's standard part is known nonzero (then the
    first-order path needs no host read of the data)."""
    return out(A.power(series(x), r, nonzero=standard_part_fact(x) == "pos"), monomial=is_monomial(x))


def reciprocal_lc(x):
    return _power(x, Fraction(-1))


@implements([aten.reciprocal.default])
def reciprocal(func, x):
    return reciprocal_lc(x)


@implements([aten.div.Tensor, aten.div.Scalar])
def div(func, a, b):
    if not isinstance(b, LCTensor):
        # plain divisor: divide every plane (the ε⁰ plane rounds exactly like torch's a / b)
        # divide every plane, so the ε⁰ plane rounds exactly like torch's a / b
        if not isinstance(b, torch.Tensor):
            s = series(a)
            return out(Series(s.planes / b, s.support, s.order, s.exact), monomial=is_monomial(a))
        return out(_div_plain(a, b), monomial=is_monomial(a))
    if (q := _quotient_first_order(a, b)) is not None:
        return q
    return mul_lc(a, reciprocal_lc(b))


def _quotient_first_order(a, b):
    """a / b for first-order LC a and b (one dtype, planes, no exact-zero record) whose every ε⁰
    coefficient b₀ is nonzero (known from how b was computed, or read from the data in eager code), as
    torch.func.jvp computes it: q₀ = a₀/b₀, the plain division bit for bit (a·(1/b) rounds twice), and
    q₁ = (a₁ − b₁·q₀)/b₀. None otherwise: the general rule, a times the leading-term reciprocal of b
    (also for a plain a, whose exact zeros it records so that decisions there need no higher order)."""
    if not isinstance(a, LCTensor) or (pair := _first_order_pair(a, b)) is None:
        return None
    pa, pb = pair
    b0 = pb[0]
    if standard_part_fact(b) != "pos" and not (_inner_is_plain(pb) and bool((b0 != 0).all())):
        return None
    q0 = pa[0] / b0
    q1 = (pa[1] - pb[1] * q0) / b0
    return wrap(torch.stack([q0, q1]), A.FIRST_ORDER, a.lc_order, A.min_exact(a.lc_exact, b.lc_exact, a.lc_order))


def _div_plain(a, b):
    s = series(a)
    from .._algebra import broadcast_planes

    nd = max(s.planes.dim() - 1, b.dim())
    return Series(broadcast_planes(s.planes, nd) / b, s.support, s.order, s.exact)


@implements([aten.div.Tensor_mode, aten.div.Scalar_mode])
def div_mode(func, a, b, *, rounding_mode=None):
    q = div(None, a, b)
    if rounding_mode is None:
        return q
    op = aten.floor.default if rounding_mode == "floor" else aten.trunc.default
    return op(q)


@implements([aten.true_divide.Tensor])
def true_divide(func, a, b):
    return div(None, a, b)


@implements([aten.pow.Tensor_Scalar])
def pow_scalar(func, x, e, dtype="float64"):
    r = S.scalar_exponent(e, dtype)
    if r is None:
        # an irrational-looking float exponent: exp(e·log x) on finite positive x
        return aten.exp(aten.mul(aten.log(x), e))
    if r == 1:
        return aten.clone.default(x) if isinstance(x, LCTensor) else x  # a new tensor, as torch's x ** 1
    if r.denominator == 1 and 2 <= r <= 4 and isinstance(x, LCTensor):
        # small integer powers through the product path (a truncated Cauchy product, one fused
        # kernel at first order) instead of the general leading-term series: the same exact value,
        # e.g. 3.2 against 157 ms for x**2 on 10⁶ float64 elements (CPU)
        if r > 2 and (pair := _first_order_pair(x, x)) is not None and kernels.usable(pair[0]):
            # x³, x⁴ of first-order planes in one kernel (GPT-2's gelu: x³ of the MLP's activations),
            # the products below computed in registers
            return wrap(kernels.powint2(pair[0], int(r)), A.FIRST_ORDER, x.lc_order,
                        A.min_exact(x.lc_exact, x.lc_exact, x.lc_order))
        sq = mul(None, x, x)
        return sq if r == 2 else mul(None, sq, x) if r == 3 else mul(None, sq, sq)
    return _power(x, r)


@implements([aten.pow.Tensor_Tensor])
def pow_tensor(func, x, e):
    if isinstance(e, LCTensor):
        # LC exponent: x^e = exp(e·log x) (x must be finite and positive)
        return aten.exp(aten.mul(aten.log(x), e))
    kind = str(e.dtype).removeprefix("torch.") if e.dtype.is_floating_point else "float64"
    shape = list(torch.broadcast_shapes(x.shape, e.shape))
    if e.numel() == 1 and e.dim() == 0 and not torch._C._functorch.is_functorch_wrapped_tensor(e):
        return pow_scalar(None, x, e.item(), kind)
    # per-element exponents: group elements by exponent value (one host sync)
    vals = torch.unique(e)
    if (many := ragged.pow_many(x, e, vals)) is not None:
        return many  # many distinct exponents: each element its own, natively on CSR (ops/ragged.py)
    res = None
    for v in vals.tolist():
        r = pow_scalar(None, x, v, kind)
        res = r if res is None else aten.where.self(e == v, r, res)
    if list(res.shape) != shape:  # one distinct exponent: broadcast as torch.pow does
        res = aten.clone.default(aten.expand.default(res, shape))
    return res


@implements([aten.pow.Scalar])
def pow_number_base(func, base, e):
    # c^x = exp(x·log c) for a positive number c
    import math

    if base <= 0:
        raise NotImplementedError(
            f"torchlc: aten.pow.Scalar with base {base} ≤ 0 and an LCTensor exponent is not supported"
        )
    return aten.exp(aten.mul(e, math.log(base)))


@implements([aten.sqrt.default])
def sqrt(func, x):
    return _power(x, S.HALF)


@implements([aten.rsqrt.default])
def rsqrt(func, x):
    return _power(x, S.MINUS_HALF)


@implements([aten.square.default])
def square(func, x):
    return mul(None, x, x)
