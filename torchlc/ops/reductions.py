"""Reductions. Sums are termwise; products are trees of Cauchy products; max/min/argmax/sort use
the field's order, which on aligned planes is the lexicographic order of the coefficient vectors
(lowest exponent first)."""

from __future__ import annotations

import math

import torch

from .. import _algebra as A
from .. import _jet
from .. import _support as S
from .._algebra import Series
from .._context import grad_free as _grad_free
from .._dispatch import implements, register
from .._tensor import LCTensor, read_planes, record_standard_part_fact, series, standard_part_fact
from ..layouts import PLANES
from . import order
from ._util import decomposed, first_order, out

aten = torch.ops.aten


def zero_dim_ok(rule):
    """Reductions of a 0-d tensor along dim 0/-1 (torch allows it): run on a (1,) view, then
    squeeze every (1,)-shaped output back to 0-d."""

    def wrapped(func, x, *args, **kwargs):
        if not (isinstance(x, LCTensor) and x.dim() == 0):
            return rule(func, x, *args, **kwargs)
        res = rule(func, aten.unsqueeze.default(x, 0), *args, **kwargs)

        def back(r):
            if isinstance(r, torch.Tensor) and r.dim() == 1 and r.shape[0] == 1:
                if isinstance(r, LCTensor):  # squeeze the storage: a fresh tensor, not an LC view of
                    src, k, rebuild = r.movable()  # an internal temporary (in-place ops under grad)
                    return rebuild(src.squeeze(k))
                return r.squeeze(0)
            return r

        if isinstance(res, tuple):
            return type(res)(back(r) for r in res) if not hasattr(res, "_fields") else type(res)(*map(back, res))
        return back(res)

    wrapped.__name__ = rule.__name__
    return wrapped


def reduced_dims(x, dim):
    """The element dims a reduction over ``dim`` covers (None or () means all), non-negative."""
    n = x.dim()
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(n))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [d + n if d < 0 else d for d in dims]


def _termwise(reduce):
    """A linear reduction acts on every plane alike (element dims shifted past the plane dim)."""

    @zero_dim_ok
    def rule(func, x, dim=None, keepdim=False, *, dtype=None):
        s = series(x)
        dims = [d + 1 for d in reduced_dims(x, dim)]
        p = reduce(s.planes, dims, keepdim=keepdim, dtype=dtype) if dims else s.planes.clone()
        res = out(Series(p, s.support, s.order, s.exact))
        if standard_part_fact(x) is not None and (dtype is None or dtype.is_floating_point):
            # a sum or mean of values ≥ 0 is ≥ 0 (a mean may underflow to 0: no more than "nonneg")
            record_standard_part_fact(res, "nonneg")
        return res

    return rule


sum_ = implements([aten.sum.default, aten.sum.dim_IntList])(_termwise(torch.sum))
mean = implements([aten.mean.default, aten.mean.dim])(_termwise(torch.mean))


def _flatten_dims(x: Series, dims):
    """Move ``dims`` (element dims) to the end and flatten them into one."""
    p = x.planes
    n = p.dim() - 1
    keep = [d for d in range(n) if d not in dims]
    p = p.permute(0, *[d + 1 for d in keep], *[d + 1 for d in dims])
    n_red = math.prod(p.shape[1 + len(keep):])  # explicit: a zero-size tensor has no "-1"
    return p.reshape(*p.shape[: 1 + len(keep)], n_red), keep


def _arg_reduce(x, dim, keepdim, largest):
    s = series(x)
    what = "argmax" if largest else "argmin"
    if dim is None:
        flat = Series(s.planes.reshape(s.planes.shape[0], -1), s.support, s.order, s.exact,
                      None if s.zero is None else s.zero.expand(s.shape).reshape(-1))
        idx = order.arg_extreme(flat, 0, largest, what)
        return idx.squeeze(0) if not keepdim else idx.reshape([1] * x.dim())
    d = dim + x.dim() if dim < 0 else dim
    idx = order.arg_extreme(s, d, largest, what)
    return idx if keepdim else idx.squeeze(d)


@implements([aten.argmax.default], kind="decision")
@zero_dim_ok
def argmax(func, x, dim=None, keepdim=False):
    return _arg_reduce(x, dim, keepdim, True)


@implements([aten.argmin.default], kind="decision")
@zero_dim_ok
def argmin(func, x, dim=None, keepdim=False):
    return _arg_reduce(x, dim, keepdim, False)


def _take(s: Series, idx, d):
    return s.planes.gather(d + 1, idx.unsqueeze(0).expand(s.planes.shape[0], *idx.shape))


def _extreme(x, dims, keepdim, largest):
    s = series(x)
    if not dims:
        return aten.clone.default(x)  # a fresh result, never the input itself
    for d in dims:
        if x.shape[d] == 0:
            raise IndexError(f"{'amax' if largest else 'amin'}(): Expected reduction dim {d} to have non-zero size.")
    p, keep = _flatten_dims(s, dims)
    # the values are exact even where candidates tie through exact_through (tied candidates share
    # every exact coefficient), so no tie is refused here; NaN propagates as in torch.amax
    idx = order._lex_arg(order.key_planes(Series(p, s.support, s.order, s.exact)), p.dim() - 2, largest)
    vals = _take(Series(p, s.support), idx, p.dim() - 2).squeeze(-1)
    if keepdim:
        shape = list(x.shape)
        for d in dims:
            shape[d] = 1
        vals = vals.reshape(vals.shape[0], *shape)
    return out(Series(vals, s.support, s.order, s.exact))


@implements([aten.amax.default], kind="decision")
@zero_dim_ok
def amax(func, x, dim=(), keepdim=False):
    return _extreme(x, reduced_dims(x, dim), keepdim, True)


@implements([aten.amin.default], kind="decision")
@zero_dim_ok
def amin(func, x, dim=(), keepdim=False):
    return _extreme(x, reduced_dims(x, dim), keepdim, False)


@implements([aten.max.default], kind="decision")
def max_all(func, x):
    return _extreme(x, list(range(x.dim())), False, True)


@implements([aten.min.default], kind="decision")
def min_all(func, x):
    return _extreme(x, list(range(x.dim())), False, False)


def _max_dim(x, dim, keepdim, largest):
    s = series(x)
    d = dim + x.dim() if dim < 0 else dim
    # the index is a decision: an undecidable tie raises (torch.amax/amin give the values alone)
    what = ("max" if largest else "min") + "(dim) indices (use torch.amax/amin for the values alone)"
    idx = order.arg_extreme(s, d, largest, what)
    vals = _take(s, idx, d)
    if not keepdim:
        vals, idx = vals.squeeze(d + 1), idx.squeeze(d)
    return out(Series(vals, s.support, s.order, s.exact)), idx


@implements([aten.max.dim], kind="decision")
@zero_dim_ok
def max_dim(func, x, dim, keepdim=False):
    return _max_dim(x, dim, keepdim, True)


@implements([aten.min.dim], kind="decision")
@zero_dim_ok
def min_dim(func, x, dim, keepdim=False):
    return _max_dim(x, dim, keepdim, False)


@implements([aten.sort.default, aten.sort.stable], kind="decision")
@zero_dim_ok
def sort(func, x, *args, **kwargs):
    if func is aten.sort.stable:
        dim = kwargs.get("dim", -1)
        descending = kwargs.get("descending", False)
    else:
        dim = args[0] if args else kwargs.get("dim", -1)
        descending = args[1] if len(args) > 1 else kwargs.get("descending", False)
    s = series(x)
    if x.dim() == 0:
        return aten.clone.default(x), torch.zeros((), dtype=torch.long, device=x.device)
    d = dim + x.dim() if dim < 0 else dim
    idx = order.sort_indices(s, d, descending, "sort indices")
    vals = _take(s, idx, d)
    return out(Series(vals, s.support, s.order, s.exact)), idx


@implements([aten.argsort.default, aten.argsort.stable], kind="decision")
@zero_dim_ok
def argsort(func, x, *args, **kwargs):
    if func is aten.argsort.stable:
        dim, descending = kwargs.get("dim", -1), kwargs.get("descending", False)
    else:
        dim = args[0] if args else kwargs.get("dim", -1)
        descending = args[1] if len(args) > 1 else kwargs.get("descending", False)
    d = dim + x.dim() if dim < 0 else dim
    return order.sort_indices(series(x), d, descending, "argsort")


@implements([aten.topk.default], kind="decision")
@zero_dim_ok
def topk(func, x, k, dim=-1, largest=True, sorted=True):
    s = series(x)
    d = dim + x.dim() if dim < 0 else dim
    # NaN is the largest value, as in torch.topk: first in a descending sort, last in an ascending
    # one; only ties that change the k selected or their order are refused
    idx = order.sort_indices(s, d, largest, "topk indices", upto=k).narrow(d, 0, k).contiguous()
    # gather only the k selected: fresh values (an LC view of an internal tensor would refuse
    # in-place ops under grad, e.g. topk(...)[0].div_(2) in mixture-of-experts routing)
    vals = _take(s, idx, d)
    return out(Series(vals, s.support, s.order, s.exact)), idx


def _tree_prod(p: Series, d):
    """Product along element dim d by a log-depth tree of truncated Cauchy products."""
    n = p.planes.shape[d + 1]
    if n == 0:  # the empty product is exactly 1
        shape = p.planes.shape[1:d + 1] + p.planes.shape[d + 2:]
        return Series(p.planes.new_ones((1, *shape)), (S.ZERO,), p.order, None)
    cur = p
    while n > 1:
        if n % 2:  # pad with the exact 1 (an ε⁰ term, which the support must then hold)
            sup = S.union(cur.support, (S.ZERO,))
            planes = cur.planes if sup == cur.support else A.place(cur.planes, cur.support, sup, cur.planes.shape[1:])
            z = torch.zeros_like(planes[0].narrow(d, 0, 1))
            one = torch.stack([z + 1 if q == 0 else z for q in sup])
            cur = Series(torch.cat([planes, one], d + 1), sup, cur.order, cur.exact)
            n += 1
        a = Series(cur.planes.narrow(d + 1, 0, n // 2), cur.support, cur.order, cur.exact)
        b = Series(cur.planes.narrow(d + 1, n // 2, n // 2), cur.support, cur.order, cur.exact)
        cur = A.bilinear(a, b)
        n //= 2
    return Series(cur.planes.squeeze(d + 1), cur.support, cur.order, cur.exact)


@implements([aten.prod.default, aten.prod.dim_int])
@zero_dim_ok
def prod(func, x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None and dtype != x.dtype:  # torch casts the input first
        x = aten._to_copy.default(x, dtype=dtype)
    s = series(x)
    if dim is None:
        s = Series(s.planes.reshape(s.planes.shape[0], -1), s.support, s.order, s.exact)
        r = _tree_prod(s, 0)
        return out(r)
    d = dim + x.dim() if dim < 0 else dim
    r = _tree_prod(s, d)
    if keepdim:
        r = Series(r.planes.unsqueeze(d + 1), r.support, r.order, r.exact)
    return out(r)


@implements([aten.cumsum.default])
@zero_dim_ok
def cumsum(func, x, dim, *, dtype=None):
    s = series(x)
    d = dim + x.dim() if dim < 0 else dim
    return out(Series(s.planes.cumsum(d + 1, dtype=dtype), s.support, s.order, s.exact))


@implements([aten.cumprod.default])
@zero_dim_ok
def cumprod(func, x, dim, *, dtype=None):
    """Hillis–Steele scan of truncated Cauchy products (log-depth, no loop over elements)."""
    s = series(x)
    d = dim + x.dim() if dim < 0 else dim
    n = x.shape[d]
    shift = 1
    cur = s
    while shift < n:
        head = cur.planes.narrow(d + 1, 0, shift)
        a = Series(cur.planes.narrow(d + 1, shift, n - shift), cur.support, cur.order, cur.exact)
        b = Series(cur.planes.narrow(d + 1, 0, n - shift), cur.support, cur.order, cur.exact)
        prod_ = A.bilinear(a, b)
        # the prefix carried over keeps its own exponents: the joined support holds both
        sup = S.union(cur.support, prod_.support)
        headp = A.place(head, cur.support, sup, head.shape[1:]) if cur.support != sup else head
        tail = A.place(prod_.planes, prod_.support, sup, prod_.planes.shape[1:]) if prod_.support != sup else prod_.planes
        cur = Series(torch.cat([headp, tail], d + 1), sup, prod_.order, A.min_exact(cur.exact, prod_.exact))
        shift *= 2
    return out(cur)


@implements([aten.any.default, aten.any.dim, aten.all.default, aten.all.dim], kind="decision")
def any_all(func, x, *args, **kwargs):
    return func(aten.ne.Scalar(x, 0), *args, **kwargs)


_ = LCTensor


@implements([aten._safe_softmax.default], kind="decision")
def safe_softmax(func, x, dim, dtype=None):
    """softmax, except that rows whose every entry is −inf give 0 (as torch's _safe_softmax)."""
    y = aten._softmax.default(x if dtype is None else aten._to_copy.default(x, dtype=dtype), dim, False)
    st = series(x).plane(S.ZERO)
    dead = (st == float("-inf")).all(dim, keepdim=True)
    if first_order(y) is not None and y.lc_layout is PLANES and y.lc_zero is None and _grad_free(read_planes(y)):
        # where(dead, 0, y) on y's own fresh planes: one masked fill (0 in every plane: +0.0, as the
        # general select gives), no zero planes built and stacked at the weights' size
        read_planes(y).masked_fill_(dead, 0.0)
        return y
    from .discontinuous import select

    return select(dead, 0.0, y)


# -- softmax and log_softmax: first-order jets (torchlc._jet), general inputs through the decomposition --
# Three fused-size kernels instead of the decomposition's exp/amax/sum/reciprocal chain of LC ops (and
# its leading-plane sync).


def _jet_rule(jet):
    def rule(func, x, dim, half_to_float):
        s = first_order(x)
        if s is None or half_to_float:
            return decomposed(func, x, dim, half_to_float)
        planes = jet(s.planes, dim)
        return out(Series(planes, s.support, s.order, A.min_exact(s.exact, s.order)))

    rule.__name__ = jet.__name__
    return rule


register([aten._softmax.default], _jet_rule(_jet.softmax), kind="jet")
register([aten._log_softmax.default], _jet_rule(_jet.log_softmax), kind="jet")
