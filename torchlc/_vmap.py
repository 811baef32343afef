"""vmap support.

``torch.func.vmap`` hands our rules *physical* LCTensors, so ops on batched LC inputs need nothing
special. Two places do: building an LCTensor from batched planes (``x.nonstd(v)`` inside a vmap over
directions) and reading planes of a batched LCTensor (``torchlc.coeffs``). Both work one vmap level
at a time: unwrap the BatchedTensor, act on the physical tensor with the batch dimension placed right
after the plane dimension, and re-add the batch dimension at the same level.
"""

from __future__ import annotations

import torch
import torch._C._functorch as _F

from ._tensor import LCTensor, series


def is_batched(t) -> bool:
    return isinstance(t, torch.Tensor) and _F.is_batchedtensor(t)


def lift_planes(planes, build):
    """``build(physical_planes)`` for batched planes: returns the LC re-batched at each level."""
    if not is_batched(planes):
        return build(planes)
    level = _F.maybe_get_level(planes)
    bdim = _F.maybe_get_bdim(planes)
    phys = _F.get_unwrapped(planes).movedim(bdim, 1)
    inner = lift_planes(phys, build)
    return _F._add_batch_dim(inner, 0, level)


def read_planes(x) -> torch.Tensor:
    """Planes (T, *shape) of an LCTensor, batched or not; a plain tensor gives x[None]."""
    if isinstance(x, LCTensor):
        return series(x).planes
    if is_batched(x):
        level = _F.maybe_get_level(x)
        bdim = _F.maybe_get_bdim(x)
        phys = _F.get_unwrapped(x)
        planes = read_planes(phys)  # (T, ..., B at bdim + 1, ...)
        if not isinstance(phys, LCTensor) and not is_batched(phys):
            return _F._add_batch_dim(phys.unsqueeze(0), bdim + 1, level)
        return _F._add_batch_dim(planes, bdim + 1, level)
    return torch.as_tensor(x).unsqueeze(0)


def unwrap_lc(x):
    """The physical LCTensor under any number of vmap levels (None if x is not LC)."""
    while is_batched(x):
        x = _F.get_unwrapped(x)
    return x if isinstance(x, LCTensor) else None


def jacobian(f, argnums=0, *, side="forward", order=0, chunk_size=None):
    """LC Jacobian by ``torch.func.vmap`` of ``ngrad`` over the basis directions."""
    from . import api

    def jac(*args):
        args = list(args)
        x = api._float(torch.as_tensor(args[argnums]))
        n = x.numel()
        basis = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *x.shape)

        def g(xi):
            a = list(args)
            a[argnums] = xi
            return f(*a)

        meta = {}

        def column(v):
            d = api.ngrad(g, x, v, side=side, order=order)
            lc = unwrap_lc(d)
            if lc is None:  # f does not depend on x: derivative 0
                meta["lc"] = None
                return torch.as_tensor(d).unsqueeze(0) * 0
            meta["lc"] = lc  # the body is traced once per chunk: metadata is the same for all
            return read_planes(d)

        planes = torch.func.vmap(column, chunk_size=chunk_size)(basis)  # (n, T, *out)
        planes = planes.movedim(0, -1)  # (T, *out, n)
        planes = planes.reshape(*planes.shape[:-1], *x.shape)
        from . import _support as S
        from ._tensor import wrap

        lc = meta["lc"]
        if lc is None:
            return wrap(planes, (S.ZERO,), S.as_exponent(order), None)
        return wrap(planes, lc._support, lc._order, lc._exact)

    return jac
