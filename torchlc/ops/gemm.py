"""Matrix products: GEMMs run once on all planes (a plain bias on the ε⁰ plane only); LC×LC products
are truncated Cauchy products with the GEMM as the bilinear map. Also nn.Bilinear's trilinear product."""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .. import _jet
from .._algebra import Series
from .._context import grad_free as _grad_free
from .._context import inner_is_plain as _inner_is_plain
from .._dispatch import composite, decompose_composite, implements
from .._tensor import LCTensor, read_planes, series
from ._util import check_as_torch, is_lc, out

aten = torch.ops.aten


def _with_bias(res: Series, bias):
    if bias is None:
        return res
    if isinstance(bias, torch.Tensor) and not isinstance(bias, LCTensor):
        return A.add_bias(res, bias)
    return A.add(res, series(bias))


@implements([aten.mm.default])
def mm(func, a, b):
    return out(A.bilinear(series(a), series(b), torch.mm))


def _first_order_series(s: Series) -> bool:
    return s.support == A.FIRST_ORDER and s.order == 1 and s.zero is None


def _bmm(sa: Series, sb: Series) -> Series:
    """The batched matrix product of two series (N, M, K) and (N, K, N')."""
    if (_first_order_series(sa) and _first_order_series(sb) and sa.planes.dtype == sb.planes.dtype
            and (_grad_free(sa.planes, sb.planes) or (_inner_is_plain(sa.planes) and _inner_is_plain(sb.planes)))):
        # LC × LC at first order (attention's q·kᵀ and weights·v): two GEMMs, with or without autograd
        # recording (in-place steps on a fresh buffer: the same roundings in both grad modes; traced
        # and vmapped code takes the general product)
        return Series(_jet.bmm(sa.planes, sb.planes), A.FIRST_ORDER, 1, A.min_exact(sa.exact, sb.exact, 1))
    return A.bilinear(sa, sb, torch.bmm)


@implements([aten.bmm.default])
def bmm(func, a, b):
    return out(_bmm(series(a), series(b)))


def _reshaped(s: Series, shape) -> Series:
    """The series with its elements reshaped (planes, and the exact-zero mask if any)."""
    zero = None if s.zero is None else s.zero.reshape(shape)
    return Series(s.planes.reshape(s.planes.shape[0], *shape), s.support, s.order, s.exact, zero)


@composite([aten.matmul.default])
def matmul(func, a, b):
    """a @ b whole for operands of the same batch dims (attention's q·kᵀ and weights·v as eager
    attention code writes them): the decomposition's bmm on the folded planes, bit for bit, in one
    dispatch instead of its expands, reshapes, bmm and view. Vectors, matrices and broadcast batches
    take the decomposition."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() >= 3 and a.dim() == b.dim()
            and a.shape[:-2] == b.shape[:-2] and a.shape[-1] == b.shape[-2] and a.dtype == b.dtype
            and not a.dtype.is_complex):
        return decompose_composite(func, a, b)
    batch, (M, K), N = tuple(a.shape[:-2]), a.shape[-2:], b.shape[-1]
    n = math.prod(batch)
    res = _bmm(_reshaped(series(a), (n, M, K)), _reshaped(series(b), (n, K, N)))
    return out(_reshaped(res, (*batch, M, N)))


def _plain_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and not isinstance(x, LCTensor)  # nn.Parameter included


def _planes_of(x):
    return read_planes(x) if type(x) is LCTensor else None


def _check_dtypes(func, bias, *mats):
    """torch's addmm/baddbmm check: the added tensor has the matrices' dtype (no promotion)."""
    if isinstance(bias, torch.Tensor):
        for m in mats:
            if m.dtype != bias.dtype:
                raise RuntimeError(f"{func}: self and mat2 must have the same dtype, but got {bias.dtype} and "
                                   f"{m.dtype}")


def _planes_gemm(x, P, wt, bias) -> Series:
    """nn.Linear's case, written out: x's planes P (T, M, K) times the plain wt (K, N) in one GEMM over
    the planes, the plain bias (if any) into the ε⁰ plane."""
    if bias is not None and x.lc_support == A.FIRST_ORDER and _jet.splits_bias(P, wt, bias):
        # half precision on CUDA: the bias in the ε⁰ GEMM's epilogue, as the plain addmm has it
        return Series(_jet.split_bias_gemm(P, wt, bias), x.lc_support, x.lc_order, x.lc_exact)
    T, M, K = P.shape
    Y = torch.mm(P.reshape(T * M, K), wt).view(T, M, wt.shape[1])
    return A.add_bias(Series(Y, x.lc_support, x.lc_order, x.lc_exact), bias)


@implements([aten.addmm.default])
def addmm(func, bias, a, b, *, beta=1, alpha=1):
    _check_dtypes(func, bias, a, b)
    P = _planes_of(a)
    if P is not None and beta == 1 and alpha == 1 and _plain_tensor(b) and _plain_tensor(bias):
        return out(_planes_gemm(a, P, b, bias))
    res = A.bilinear(series(a), series(b), torch.mm)
    if alpha != 1:
        res = A.scale(res, alpha)
    if beta != 1:
        bias = aten.mul.Scalar(bias, beta) if isinstance(bias, torch.Tensor) else bias * beta
    return out(_with_bias(res, bias))


@composite([aten.linear.default])
def linear(func, x, weight, bias=None):
    """F.linear whole: one GEMM over the planes of x (its rows and planes fold into one matrix), the
    bias into the ε⁰ plane; the GEMMs of the decomposition's addmm, without its transpose and view
    dispatches. LC weights, or storage other than planes, take the decomposition."""
    P = _planes_of(x)
    if P is None or not _plain_tensor(weight) or not (bias is None or _plain_tensor(bias)):
        return decompose_composite(func, x, weight, bias)
    if not (x.dim() > 0 and weight.dim() == 2 and weight.shape[1] == P.shape[-1] and weight.dtype == P.dtype
            and (bias is None or (tuple(bias.shape) == (weight.shape[0],) and bias.dtype == P.dtype))):
        check_as_torch(func, x, weight, bias)  # torch's own error for what it refuses
        return decompose_composite(func, x, weight, bias)
    batch = tuple(P.shape[1:-1])
    rows = P.reshape(P.shape[0], math.prod(batch), P.shape[-1])
    return out(_reshaped(_planes_gemm(x, rows, weight.t(), bias), (*batch, weight.shape[0])))


@implements([aten.baddbmm.default])
def baddbmm(func, bias, a, b, *, beta=1, alpha=1):
    _check_dtypes(func, bias, a, b)
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



# -- bilinear (nn.Bilinear) --------------------------------------------------------------------------


@implements([aten._trilinear.default])
def trilinear(func, i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim=1):
    def ex(t, dims):
        for d in sorted(dims):
            t = t.unsqueeze(d)
        return t

    if not any(is_lc(t) for t in (i1, i2, i3)):
        return func(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim)
    r = ex(i1, expand1) * ex(i2, expand2) * ex(i3, expand3)
    return r.sum(list(sumdim)) if len(sumdim) else r
