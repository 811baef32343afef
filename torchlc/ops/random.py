"""Random ops on LC tensors: dropout, bernoulli fills and RReLU, drawing from the same random stream
as for plain tensors of the same dtype."""

from __future__ import annotations

import torch

from .. import _algebra as A
from .. import _support as S
from .._dispatch import implements
from .._tensor import LCTensor, real, series
from ._util import is_lc, out

aten = torch.ops.aten


# -- dropout -----------------------------------------------------------------------------------------


@implements([aten.native_dropout.default])
def native_dropout(func, x, p, train):
    if train is False or p == 0 and train is None:
        return x.clone(), torch.ones(x.shape, dtype=torch.bool, device=x.device)
    # the same random stream as plain CPU/CUDA native_dropout: one bernoulli_ draw of x's dtype
    mask = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    scale = 0.0 if p == 1 else 1.0 / (1 - p)
    return x * (mask * scale), mask.bool()


# -- random fills -----------------------------------------------------------------------------------


@implements([aten.bernoulli_.float])
def bernoulli_(func, x, p=0.5, *, generator=None):
    """Dropout's noise tensor (``empty_like(lc).bernoulli_(q)``): a real 0/1 sample drawn from the same
    random stream as for a plain tensor of x's dtype."""
    if not is_lc(x):
        return func(x, p, generator=generator)
    noise = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(p, generator=generator)
    x.lc_write_(real_lc(noise, x))
    return x


@implements([aten.bernoulli.default])
def bernoulli(func, p, *, generator=None):
    """``torch.bernoulli(p)`` with LC probabilities: a uniform draw u falls below p + vε exactly when
    it falls below p (u = p has probability 0), so the sample is the plain op's on the standard
    parts, from the same random stream under the same seed."""
    return real_lc(func(series(p).plane(S.ZERO), generator=generator), p)


@implements([aten.bernoulli.p])
def bernoulli_p(func, x, p=0.5, *, generator=None):
    """``torch.bernoulli(x, p)``: x gives only the shape and dtype; the same draws as for a plain
    tensor of x's dtype under the same seed."""
    noise = func(torch.empty(x.shape, dtype=x.dtype, device=x.device), p, generator=generator)
    return real_lc(noise, x)


def real_lc(t: torch.Tensor, like) -> LCTensor:
    return real(t, like.lc_order if is_lc(like) else None)


@implements([aten.rrelu_with_noise.default], kind="decision")
def rrelu_with_noise(func, x, noise, lower=0.125, upper=1.0 / 3.0, training=False, generator=None):
    """RReLU: slopes are drawn for the elements that are ≤ 0 in the field's order, from the same random
    stream as a plain tensor with that sign pattern (torch draws only for those elements)."""
    if not is_lc(x):
        return func(x, noise, lower, upper, training, generator)
    sx = series(x)
    sgn = A.lead_sign(sx.planes)
    if training:
        buf = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        func(sgn.to(x.dtype), buf, lower, upper, True, generator)
        slope = buf
        if is_lc(noise):
            noise.lc_write_(real_lc(buf, noise))
        else:
            noise.copy_(buf)
    else:
        neg = torch.tensor((lower + upper) / 2, dtype=x.dtype, device=x.device)
        slope = torch.where(sgn > 0, torch.ones_like(neg), neg)
    return out(A.scale(sx, slope))
