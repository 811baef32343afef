"""LCTensors with complex coefficients, and the ops between real and complex ones.

An element Σ z_q ε^q with complex z_q lives in the Levi-Civita field over C. Its ring operations are
those of the real field, coefficientwise over C: + and − termwise, × the truncated Cauchy product,
÷ through the reciprocal series 1/z = z_λ⁻¹ ε^{−λ} Σ_k (−d)^k (z = z_λ ε^λ (1 + d), λ the leading
exponent) — all written without any order, so the real rules compute them unchanged on complex planes.
The field over C has no order, so nothing on it decides: :mod:`torchlc._dispatch` sends an op with a
complex LC operand to a rule of this module, or to its ordinary rule when that one is linear per
plane, moves data, is a factory or a decomposition, and refuses every other op (comparisons, sign,
sorting, rounding, max/min, analytic functions) with a TypeError naming it.

Rules of this module, with z = x + i y (x, y real LC tensors):

* ``view_as_real`` (…) → (…, 2): a view of every plane's real and imaginary parts (kind
  structural); ``real`` and ``imag`` are torch's selections from it;
* ``view_as_complex`` (…, 2) → (…): the inverse view, plane by plane;
* ``complex(x, y)`` = x + i y: linear in (x, y) jointly, so plane q is complex(x_q, y_q);
* ``polar(r, θ)`` = r cos θ + i r sin θ, composed from the real rules;
* ``conj`` (x − i y): conjugates every plane (a new tensor, never a lazily conjugated view);
* ``abs(z)`` = √(x² + y²) and ``angle(z)`` = atan2(y, x), from the real rules: at z = 0 they are the
  field's values (|v ε| = |v| ε, the one-sided values of the kinks);
* ``angle`` of a real x: 0 for x ≥ 0, π for x < 0 (NaN for NaN), decided in the field's order;
* sums, means, cumulative sums, products and matrix products (mm, bmm, mv), and ``where`` with a
  plain bool mask: the real rules, which never decide;
* ``_to_copy`` and ``copy_`` refuse to turn complex coefficients into real ones (torch would drop the
  imaginary part); take ``.real`` explicitly.
"""

from __future__ import annotations

import math

import torch

from .._algebra import Series
from .._dispatch import implements, implements_complex
from .._tensor import LCTensor, series
from . import arithmetic, discontinuous, gemm, reductions, shape
from ._util import out, real_out
from .shape import per_plane, structural

aten = torch.ops.aten


def _refuse_real(name, dtype, src_dtype):
    raise TypeError(
        f"torchlc: {name} would turn complex LC coefficients ({src_dtype}) into {dtype} and drop their "
        "imaginary parts; take x.real (or x.imag, torch.view_as_real(x)) explicitly"
    )


# -- the ring operations: the real rules, unchanged ------------------------------------------------------
implements_complex([aten.add.Tensor, aten.add.Scalar])(arithmetic.add)
implements_complex([aten.sub.Tensor, aten.sub.Scalar])(arithmetic.sub)
implements_complex([aten.rsub.Tensor, aten.rsub.Scalar])(arithmetic.rsub)
implements_complex([aten.mul.Tensor, aten.mul.Scalar])(arithmetic.mul)
implements_complex([aten.div.Tensor, aten.div.Scalar])(arithmetic.div)
implements_complex([aten.reciprocal.default])(arithmetic.reciprocal)
implements_complex([aten.neg.default])(arithmetic.neg)
implements_complex([aten.positive.default, aten.lift_fresh.default])(arithmetic.positive)
# sums (termwise), products (trees of Cauchy products) and matrix products (Cauchy products with the
# GEMM as the bilinear map): no decision anywhere
implements_complex([aten.sum.default, aten.sum.dim_IntList])(reductions.sum_)
implements_complex([aten.mean.default, aten.mean.dim])(reductions.mean)
implements_complex([aten.cumsum.default])(reductions.cumsum)
implements_complex([aten.prod.default, aten.prod.dim_int])(reductions.prod)
implements_complex([aten.mm.default])(gemm.mm)
implements_complex([aten.bmm.default])(gemm.bmm)
implements_complex([aten.mv.default])(gemm.mv)


@implements_complex([aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar])
def where(func, cond, a, b):
    # a selection by a plain bool mask: linear in (a, b) jointly, no decision on complex values
    if isinstance(cond, LCTensor):
        raise TypeError("torch.where: the condition must be a bool tensor, not an LCTensor")
    return discontinuous.select(cond, a, b)


@implements_complex([aten._to_copy.default])
def to_copy(func, x, *, dtype=None, **kwargs):
    if dtype is not None and not dtype.is_complex:
        _refuse_real("a conversion", dtype, x.dtype)
    return shape.to_copy(func, x, dtype=dtype, **kwargs)


@implements_complex([aten.copy_.default])
def copy_(func, dst, src, non_blocking=False):
    if isinstance(src, LCTensor) and src.dtype.is_complex and not dst.dtype.is_complex:
        _refuse_real("copy_", dst.dtype, src.dtype)
    return shape.copy_(func, dst, src, non_blocking)


# -- conjugation, modulus, argument -----------------------------------------------------------------------
@implements_complex([aten._conj.default, aten.conj_physical.default, aten._conj_physical.default])
def conj(func, x):
    return structural(x, lambda t, k: t.conj_physical(), False)


@implements_complex([aten.resolve_conj.default, aten.resolve_neg.default])
def resolve(func, x):
    return x  # an LCTensor's planes never carry a lazy conjugate/negative bit


@implements_complex([aten.abs.default])
def abs_(func, z):
    x, y = aten.real.default(z), aten.imag.default(z)
    return aten.sqrt.default(aten.add.Tensor(aten.mul.Tensor(x, x), aten.mul.Tensor(y, y)))


@implements_complex([aten.angle.default])
def angle_complex(func, z):
    return aten.atan2.default(aten.imag.default(z), aten.real.default(z))


@implements([aten.angle.default], kind="decision")
def angle(func, x):
    """The argument of a real number: 0 for x ≥ 0, π for x < 0, decided in the field (a truncated
    tie with 0 raises); NaN stays NaN. Piecewise constant: every infinitesimal term is 0."""
    s = series(x)
    neg = aten.lt.Scalar(x, 0)
    zero = s.planes.new_zeros(s.shape)
    val = torch.where(neg, zero + math.pi, zero)  # π in the coefficient dtype
    val = torch.where(torch.isnan(s.planes).any(0), math.nan, val)
    return real_out(val, s)


# -- between real and complex -------------------------------------------------------------------------------
@implements([aten.view_as_real.default], kind="structural")
def view_as_real(func, z):
    # a view of every plane's (real, imaginary) pairs: writes reach z, as torch's view does
    return structural(z, lambda t, k: torch.view_as_real(t))


@implements([aten.view_as_complex.default], kind="per_plane")
def view_as_complex(func, x):
    # plane by plane (a new tensor): the pairs of the last dimension become complex numbers
    s = series(x)
    return out(Series(torch.view_as_complex(s.planes), s.support, s.order, s.exact))


@implements([aten.complex.default], kind="per_plane")
def complex_(func, re, im):
    return per_plane(func, (re, im), {}, (0, 1))


@implements([aten.polar.default])
def polar(func, r, theta):
    re = aten.mul.Tensor(r, aten.cos.default(theta))
    im = aten.mul.Tensor(r, aten.sin.default(theta))
    return aten.complex.default(re, im)

