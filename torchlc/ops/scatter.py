"""scatter_reduce (sum/mean per plane; amax/amin by the field's order; prod as truncated Cauchy
products) and cdist."""

from __future__ import annotations

import torch
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

from .. import _algebra as A
from .. import _support as S
from .._algebra import Series, min_exact
from .._context import inner_is_plain as _inner_is_plain
from .._context import speculation_record
from .._dispatch import implements
from .._tensor import series
from . import shape as _shape
from ._util import out
from .reductions import _tree_prod

aten = torch.ops.aten


def _scatter_operands(x, index, src):
    """Series of self and of the part of src that index reads (src[:index.shape])."""
    sx, ss = series(x), series(src)
    used = (slice(None),) + tuple(slice(0, n) for n in index.shape)
    return sx, Series(ss.planes[used], ss.support, ss.order, ss.exact)


def _scatter_extreme(x, d, index, src, largest, include_self):
    """amax/amin in the field's order (lexicographic over the planes, lowest exponent first). Plane t
    of the result is the max of plane t over the candidates that tie with the max on planes < t, so
    every plane is one of the inputs' coefficients, and autograd follows torch's scatter_reduce rule
    (a tie shares the gradient evenly), on the ε⁰ plane exactly as for the plain tensors."""
    sx, ss = _scatter_operands(x, index, src)
    u = S.union(sx.support, ss.support)
    px = sx.planes if sx.support == u else A.place(sx.planes, sx.support, u, sx.shape)
    ps = ss.planes if ss.support == u else A.place(ss.planes, ss.support, u, ss.shape)
    red, fill = ("amax", float("-inf")) if largest else ("amin", float("inf"))
    dev = px.device
    cand_x = torch.ones(px.shape[1:], dtype=torch.bool, device=dev)
    if not include_self:  # self takes part only where no src element lands
        cand_x = ~torch.zeros_like(cand_x).scatter(d, index, True)
    cand_s = torch.ones(index.shape, dtype=torch.bool, device=dev)
    planes, nan = [], None
    for t in range(len(u)):
        xt = torch.where(cand_x, px[t], fill)
        st = torch.where(cand_s, ps[t], fill)
        m = xt.scatter_reduce(d, index, st, red, include_self=True)
        if nan is not None:  # a NaN on a lower plane left no candidates: NaN throughout
            m = torch.where(nan, float("nan"), m)
        planes.append(m)
        if t + 1 < len(u):
            cand_x = cand_x & (xt == m)
            cand_s = cand_s & (st == m.gather(d, index))
            nan = m.isnan() if nan is None else nan | m.isnan()
    return out(
        Series(torch.stack(planes), u, A.result_order(sx, ss), min_exact(sx.exact, ss.exact))
    )


def _max_group_size(counts, bound):
    """Largest number of src elements sharing a target: from the data in eager mode (one host sync),
    speculated and checked under torchlc.compile, the static bound when traced otherwise."""
    rec = speculation_record()
    if rec is not None:
        with disable_proxy_modes_tracing():
            k = int(counts.max())
        rec.append(counts.max() > k)
        return k
    if _inner_is_plain(counts):
        return int(counts.max())
    return bound


def _scatter_prod(x, d, index, src, include_self):
    """prod: every target's src elements are laid out in a row of K slots (padded with 1) and
    multiplied by a log-depth tree of truncated Cauchy products (exact for zeros and signs alike),
    then times self where include_self; targets no src element reaches keep self."""
    sx, ss = _scatter_operands(x, index, src)
    shape, dev = sx.shape, sx.planes.device
    n, nd = sx.planes[0].numel(), len(shape)
    strides = [1] * nd
    for k in range(nd - 2, -1, -1):
        strides[k] = strides[k + 1] * shape[k + 1]
    target = index * strides[d]  # flat position in self of each used src element
    for k in range(nd):
        if k != d:
            view = [1] * nd
            view[k] = -1
            target = target + torch.arange(index.shape[k], device=dev).view(view) * strides[k]
    target = target.reshape(-1)
    counts = torch.zeros(n, dtype=torch.long, device=dev).index_add(
        0, target, torch.ones_like(target)
    )
    K = _max_group_size(counts, index.shape[d])
    pos, perm = torch.sort(target, stable=True)
    rank = torch.arange(pos.numel(), device=dev) - torch.searchsorted(pos, pos)
    sup = S.union(ss.support, (S.ZERO,))  # padding slots hold the real number 1
    T = len(sup)
    rows = ss.planes.reshape(len(ss.support), -1)[:, perm]
    if sup != ss.support:
        rows = A.place(rows, ss.support, sup, rows.shape[1:])
    dense = rows.new_zeros((T, n * K))
    dense[sup.index(S.ZERO)] = 1.0
    dense = dense.index_copy(1, pos * K + rank, rows)
    res = _tree_prod(Series(dense.reshape(T, n, K), sup, ss.order, ss.exact), 1)
    flat_x = Series(sx.planes.reshape(len(sx.support), n), sx.support, sx.order, sx.exact)
    if include_self:
        res = A.bilinear(flat_x, res)
    pr, px, u = A.aligned(res, flat_x)
    planes = torch.where(counts > 0, pr, px).reshape(len(u), *shape)
    return out(Series(planes, u, A.result_order(res, flat_x), min_exact(res.exact, flat_x.exact)))


@implements([aten.scatter_reduce.two])
def scatter_reduce(func, x, dim, index, src, reduce, *, include_self=True):
    """sum and mean are linear in (self, src) jointly: once per plane. amax/amin select by the field's
    order; prod multiplies series. Exact throughout (no logarithms, no loops over elements)."""
    if reduce in ("sum", "mean"):
        return _shape.per_plane(
            func, (x, dim, index, src, reduce), {"include_self": include_self}, (0, 3)
        )
    if reduce not in ("amax", "amin", "prod"):
        raise ValueError(f"scatter_reduce: unknown reduce {reduce!r}")
    d = dim + x.dim() if dim < 0 else dim
    if index.numel() == 0:
        s = series(x)
        return out(Series(s.planes.clone(), s.support, s.order, s.exact))
    if reduce == "prod":
        return _scatter_prod(x, d, index, src, include_self)
    return _scatter_extreme(x, d, index, src, reduce == "amax", include_self)


@implements([aten._cdist_forward.default])
def cdist_forward(func, x1, x2, p, compute_mode=None):
    return torch.linalg.vector_norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, dim=-1)
