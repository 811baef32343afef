"""``as_strided``, ``as_strided_``, ``as_strided_scatter`` and ``as_strided_copy``: strided views in
element coordinates.

An LCTensor reports its storage's strides minus the plane stride and storage offset 0, so a size,
stride and storage offset given to these ops are in *element* coordinates, counted from the tensor's
own first element. The same view applies to every term:

* planes storage ``(T, *shape)``: each plane is viewed with the given element strides, its plane
  stride kept, and the given offset added to that plane's own offset, so the result aliases its
  base and writes through (``lc_view``), as torch's ``as_strided`` does;
* boxed storage (one word per element): the words are viewed directly;
* CSR: decoded to planes first (as every data-movement op).

As torch does, a view that reaches outside the storage raises. The storage of an LCTensor holds, from
its first element, the elements that every plane still has before the end of the storage and, for
plane-major storage, before the next plane begins (a view never reads another term's coefficients).
"""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .._algebra import Series
from .._dispatch import implements
from .._tensor import LCTensor, series
from ._util import is_monomial, out
from .shape import structural

aten = torch.ops.aten


def _extent(size, stride) -> int:
    """Elements a strided view spans from its offset (0 for an empty view, which fits anywhere)."""
    if any(s == 0 for s in size):
        return 0
    return 1 + sum((s - 1) * st for s, st in zip(size, stride))


def _check_args(name, size, stride, offset):
    if len(size) != len(stride):
        raise RuntimeError(f"torchlc: {name}: mismatch in length of strides and shape "
                           f"(size {list(size)}, stride {list(stride)})")
    if any(s < 0 for s in size):
        raise RuntimeError(f"torchlc: {name}: negative size in {list(size)}")
    if any(st < 0 for st in stride):
        raise RuntimeError(f"torchlc: {name}: negative strides are not supported (as in torch), got "
                           f"strides {list(stride)}")
    if offset < 0:
        raise RuntimeError(f"torchlc: {name}: invalid storage offset {offset}")


def _out_of_bounds(name, size, stride, offset, capacity):
    return RuntimeError(
        f"torchlc: {name}: size {list(size)}, stride {list(stride)} and storage offset {offset} need "
        f"{offset + _extent(size, stride)} elements of storage, out of bounds for the LCTensor's "
        f"storage, which holds {capacity} elements from its first element"
    )


def _capacity(t: torch.Tensor, k: int):
    """Elements the storage tensor ``t`` (``k`` leading non-element dims) holds from its first
    element, per term; None when the storage cannot be measured (tensors without data)."""
    try:
        n = t.untyped_storage().nbytes() // t.element_size()
    except (RuntimeError, NotImplementedError):
        return None
    lead = sum((s - 1) * st for s, st in zip(t.shape[:k], t.stride()[:k]) if s > 0)
    cap = n - t.storage_offset() - lead  # the last term's elements still before the storage's end
    if k == 1 and t.shape[0] > 1 and t.stride(0) > 0:
        plane = t.stride(0)
        if _extent(t.shape[1:], t.stride()[1:]) <= plane:  # plane-major: terms do not interleave
            cap = min(cap, plane)  # ... and a view must not run into the next term's plane
    return cap


def _strided(x, size, stride, storage_offset, name="as_strided"):
    """The strided view of x's storage (an LCTensor aliasing x), validated as torch validates."""
    size, stride = [int(s) for s in size], [int(s) for s in stride]
    base = x.storage_offset()  # 0: the wrapper counts from its own first element
    offset = base if storage_offset is None else int(storage_offset)
    _check_args(name, size, stride, offset)
    rel = offset - base

    def fn(t, k):
        cap = _capacity(t, k)
        if cap is not None and _extent(size, stride) and rel + _extent(size, stride) > cap:
            raise _out_of_bounds(name, size, stride, rel, cap)
        return t.as_strided((*t.shape[:k], *size), (*t.stride()[:k], *stride), t.storage_offset() + rel)

    return structural(x, fn)


@implements([aten.as_strided.default], kind="structural")
def as_strided(func, x, size, stride, storage_offset=None):
    return _strided(x, size, stride, storage_offset)


@implements([aten.as_strided_copy.default], kind="structural")
def as_strided_copy(func, x, size, stride, storage_offset=None):
    v = _strided(x, size, stride, storage_offset, "as_strided_copy")
    return structural(v, lambda t, k: t.clone(memory_format=torch.contiguous_format), False)


@implements([aten.as_strided_.default], kind="structural")
def as_strided_(func, x, size, stride, storage_offset=None):
    """Restride x in place: it takes the view's shape, strides and storage (still aliasing its own)."""
    v = _strided(x, size, stride, storage_offset, "as_strided_")
    # the wrapper's own metadata changes below autograd and the Python key (the call that reached
    # this rule already went through them)
    with torch._C._AutoDispatchBelowADInplaceOrView():
        x.lc_restride_(v)
    return x


def _storage_of(x):
    """(first element's position, elements of storage) of x in the coordinates its size, strides and
    offset are given in: an LCTensor's element storage from its first element, a plain tensor's
    storage. None for the size when it cannot be measured."""
    if isinstance(x, LCTensor):
        t, k, _ = x.movable()
        return 0, _capacity(t, k)
    try:
        return x.storage_offset(), x.untyped_storage().nbytes() // x.element_size()
    except (RuntimeError, NotImplementedError):
        return x.storage_offset(), None


@implements([aten.as_strided_scatter.default])
def as_strided_scatter(func, x, src, size, stride, storage_offset=None):
    """x with src written into its strided view, as torch: the result is a copy of x's storage with
    x's size and strides (a plain copy when x overlaps itself) and the view is taken in that copy."""
    size, stride = [int(s) for s in size], [int(s) for s in stride]
    shape, xstride = tuple(x.shape), tuple(x.stride())
    start, total = _storage_of(x)
    if torch._debug_has_internal_overlap(torch.empty_strided(shape, xstride, device="meta")) == 1:
        # torch's clone_preserve_strides falls back to a plain (contiguous) clone
        xstride, start, total = torch.empty(shape, device="meta").stride(), 0, math.prod(shape)
    offset = start if storage_offset is None else int(storage_offset)
    _check_args("as_strided_scatter", size, stride, offset)
    if tuple(src.shape) != tuple(size):
        raise RuntimeError(f"torchlc: as_strided_scatter: expected src to have a size equal to the slice "
                           f"of self. src size = {list(src.shape)}, slice size = {size}")
    need = offset + _extent(size, stride) if _extent(size, stride) else 0
    if total is not None and need > total:
        raise _out_of_bounds("as_strided_scatter", size, stride, offset, total)
    sx, ss = series(x), series(src)
    sup = A.S.union(sx.support, ss.support)
    xp = A.place(sx.planes, sx.support, sup, shape) if sx.support != sup else sx.planes
    sp = A.place(ss.planes, ss.support, sup, tuple(size)) if ss.support != sup else ss.planes
    T = len(sup)
    # the copied storage, as far as the result or the written view reach (the rest is never seen)
    n = max(start + _extent(shape, xstride), need)
    buf = xp.new_zeros((T, n))
    res = buf.as_strided((T, *shape), (n, *xstride), start)
    res.copy_(xp.to(buf.dtype))
    view = buf.as_strided((T, *size), (n, *stride), offset)
    view.copy_(sp.to(buf.dtype).expand(T, *size))
    mono = is_monomial(x) and is_monomial(src)
    return out(Series(res, sup, A.result_order(sx, ss), A.min_exact(sx.exact, ss.exact)), monomial=mono)
