"""Linear algebra and nn primitives: GEMMs run once on all planes (bias on the ε⁰ plane only);
LC×LC products are truncated Cauchy products with the GEMM as the bilinear map."""

from __future__ import annotations

import torch

from .. import _algebra as A
from .. import _support as S
from .._tensor import Series, implements, series
from ._util import out

aten = torch.ops.aten


def _with_bias(res: Series, bias):
    if bias is None:
        return res
    return A.add(res, series(bias))


@implements([aten.mm.default])
def mm(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.mm))


@implements([aten.bmm.default])
def bmm(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.bmm))


@implements([aten.addmm.default])
def addmm(func, bias, a, b, *, beta=1, alpha=1):
    res = A.bilinear(series(a), series(b), torch.mm)
    if alpha != 1:
        res = A.scale(res, alpha)
    if beta != 1:
        bias = aten.mul.Scalar(bias, beta) if isinstance(bias, torch.Tensor) else bias * beta
    return out(_with_bias(res, bias))


@implements([aten.baddbmm.default])
def baddbmm(func, bias, a, b, *, beta=1, alpha=1):
    res = A.bilinear(series(a), series(b), torch.bmm)
    if alpha != 1:
        res = A.scale(res, alpha)
    if beta != 1:
        bias = aten.mul.Scalar(bias, beta)
    return out(_with_bias(res, bias))


@implements([aten.mv.default])
def mv(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.mv))


@implements([aten.dot.default, aten.vdot.default])
def dot(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.dot))


_ = S
