"""``*_like`` and ``new_*`` factories: they return real-valued LCTensors with the source's support
and order (higher planes zero), so code such as ``h = x.new_zeros(n); h[i] = f(x)`` or
``out = torch.empty_like(x); out[:, t] = step(...)`` writes LC values in place just works."""

from __future__ import annotations

import torch
import torch._prims_common as _prims_common

from .. import _support as S
from .._dispatch import implements
from .._tensor import LCTensor, wrap

aten = torch.ops.aten


# torch's check whether a tensor's elements fill their storage without overlap (renamed across versions)
_dense = getattr(_prims_common, "is_non_overlapping_and_dense_or_false", None) or _prims_common.is_non_overlapping_and_dense


def _real(t: torch.Tensor, like: LCTensor):
    """The plain tensor t as the ε⁰ plane of an LCTensor with like's support and order, its elements
    laid out in memory as t's (a channels-last t gives channels-last planes)."""
    sup = like.lc_support if S.ZERO in like.lc_support else tuple(sorted((S.ZERO, *like.lc_support)))
    k = sup.index(S.ZERO)
    if t.is_contiguous() or not _dense(t):
        planes = t.new_zeros((len(sup), *t.shape))
    else:
        planes = torch.empty_strided((len(sup), *t.shape), (t.numel(), *t.stride()), dtype=t.dtype,
                                     device=t.device).zero_()
    planes[k] = t
    return wrap(planes, sup, like.lc_order, None)


def _kw(like, kwargs):
    kwargs = dict(kwargs)
    kwargs.pop("memory_format", None)
    kwargs.setdefault("dtype", like.dtype)
    kwargs.setdefault("device", like.device)
    kwargs["dtype"] = kwargs["dtype"] or like.dtype
    kwargs["device"] = kwargs["device"] or like.device
    kwargs.pop("layout", None)
    kwargs.pop("pin_memory", None)
    return kwargs


def _like(func, x, *args, **kwargs):
    """A ``*_like`` factory: torch's own op on a plain stand-in with x's shape, strides, dtype and
    device (so its dtype, memory format and random draws are torch's), as the ε⁰ plane. ``empty_like``
    gives zeros, as it always has here: uninitialised memory read as an LC value would carry garbage
    (NaN, huge numbers) into exact arithmetic."""
    stand_in = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    if func is aten.empty_like.default:
        func = aten.zeros_like.default
    t = func(stand_in, *args, **kwargs)
    if not t.dtype.is_floating_point:
        return t
    return _real(t, x)


implements([aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default, aten.full_like.default,
            aten.rand_like.default, aten.randn_like.default], kind="factory")(_like)


def _new(fn):
    def rule(func, x, size, *args, **kwargs):
        kw = _kw(x, kwargs)
        t = fn(size, *args, **kw)
        if not t.dtype.is_floating_point:
            return t
        return _real(t, x)

    return rule


implements([aten.new_zeros.default], kind="factory")(_new(lambda s, **kw: torch.zeros(s, **kw)))
implements([aten.new_ones.default], kind="factory")(_new(lambda s, **kw: torch.ones(s, **kw)))
implements([aten.new_empty.default], kind="factory")(_new(lambda s, **kw: torch.zeros(s, **kw)))
implements([aten.new_full.default], kind="factory")(_new(lambda s, v, **kw: torch.full(s, v, **kw)))


@implements([aten.new_empty_strided.default], kind="factory")
def new_empty_strided(func, x, size, stride, **kwargs):
    return _real(torch.zeros(size, **_kw(x, kwargs)), x)


@implements([aten.empty_strided.default], kind="factory")
def empty_strided(func, size, stride, **kwargs):
    raise NotImplementedError("torchlc: aten.empty_strided with LCTensor inputs")


@implements([aten.zero_.default])
def zero_(func, x):
    x.lc_write_(_real(torch.zeros(x.shape, dtype=x.dtype, device=x.device), x))
    return x


@implements([aten._local_scalar_dense.default])
def local_scalar_dense(func, x):
    # .item() and friends inside torch: an element is a series, not a number
    raise TypeError(
        "an LCTensor element is a series, not a Python number; read a real number off it with "
        "torchlc.standard_part(x) or torchlc.coeff(x, q)"
    )
