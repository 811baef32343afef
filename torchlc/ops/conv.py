"""Convolution: one call over all planes for a plain weight (planes folded into the batch), a truncated
Cauchy product with the convolution as the bilinear map otherwise; the bias joins the ε⁰ plane."""

from __future__ import annotations

import torch

from .. import _algebra as A
from .._algebra import Series
from .._dispatch import implements
from .._tensor import LCTensor, read_planes, series
from ._util import fold_batch, out

aten = torch.ops.aten


@implements([aten.convolution.default])
def convolution(func, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    def conv(a, b):
        return aten.convolution.default(a, b, None, stride, padding, dilation, transposed, output_padding, groups)

    if type(x) is LCTensor and not isinstance(w, LCTensor) and not isinstance(bias, LCTensor):
        # a plain weight (every model's case), written out: one convolution over the planes folded
        # into the batch (an unbatched input gets the planes as its batch), the bias into ε⁰
        P = read_planes(x)
        T = P.shape[0]
        batched = x.dim() == w.dim()  # planes (T, N, C, *spatial)
        Y = conv(P.reshape(T * P.shape[1], *P.shape[2:]) if batched else P, w)
        if batched:
            Y = Y.view(T, P.shape[1], *Y.shape[1:])
        res = Series(Y, x.lc_support, x.lc_order, x.lc_exact)
        if bias is not None:
            res = A.add_bias(res, bias.reshape(-1, *([1] * (x.dim() - 2))))
        return out(res)
    sx, sw = series(x), series(w)
    if A.is_plain(sw):
        res = fold_batch(lambda p: conv(p, sw.planes[0]), sx, x.dim())
        res = Series(res.planes, res.support, A.result_order(sx, sw), res.exact)
    else:
        res = A.bilinear(sx, sw, conv)
    if bias is not None:
        # the bias joins the ε⁰ plane: in place into the fresh result when nothing records autograd
        b = bias.reshape(-1, *([1] * (x.dim() - 2)))
        res = A.add(res, series(b)) if isinstance(b, LCTensor) else A.add_bias(res, b)
    return out(res)
