"""constant_pad_nd: padding is linear in the input, but the fill value is not scaled with it: it is a
real number, which goes on the ε⁰ plane, and the other planes are padded with zeros."""

from __future__ import annotations

import torch

from .. import _algebra as A
from .. import _support as S
from .._algebra import Series
from .._dispatch import register
from .._tensor import series
from ._util import out

aten = torch.ops.aten


def _constant_pad_nd(func, x, pad, value=0):
    sx = series(x)
    planes = func(sx.planes, pad, 0)  # the pad covers trailing (element) dims only: one call
    res = Series(planes, sx.support, sx.order, sx.exact)
    if value != 0:
        region = func(torch.zeros(x.shape, dtype=torch.bool, device=planes.device), pad, True)
        if S.ZERO in res.support:
            k = res.support.index(S.ZERO)
            p0 = torch.where(region, torch.tensor(value, dtype=planes.dtype, device=planes.device), planes[k])
            planes = torch.cat([planes[:k], p0.unsqueeze(0), planes[k + 1 :]])
            res = Series(planes, res.support, res.order, res.exact)
        else:
            fill = torch.where(region, torch.tensor(value, dtype=planes.dtype, device=planes.device), 0.0)
            res = A.add(res, Series(fill.unsqueeze(0), (S.ZERO,)))
    return out(res)


register([aten.constant_pad_nd.default], _constant_pad_nd, kind="structural")
