"""Views, indexing, joins and other data movement.

These ops never combine coefficients, so they act on every plane alike: on planes storage the element
dimensions are shifted by one (plane dimension first); on boxed storage the op runs on the 64-bit
words directly, so a boxed tensor stays boxed; CSR storage is decoded first.
"""

from __future__ import annotations

import torch

from .. import _algebra as A
from .._algebra import Series, broadcast_planes
from .._dispatch import implements
from .._tensor import LCTensor, read_planes, series, wrap
from ..layouts import PLANES
from . import order
from ._util import check_as_torch, is_monomial, out

aten = torch.ops.aten


def _norm(d, ndim):
    return d + ndim if d < 0 else d


_inference_mode_on = torch.is_inference_mode_enabled
_InferenceMode = torch._C._InferenceMode
_is_inference = torch.Tensor.is_inference


def structural(x: LCTensor, fn, alias=True):
    """Apply a data-movement ``fn(storage, shift)`` to x's storage; fn may return a list.

    ``alias``: whether torch's op returns a view of its input: True for view ops, False for ops that
    return fresh tensors, None for those that return either (reshape, contiguous), decided by ``fn``'s
    result. Views write in place through to their base (``lc_view``). The op runs on the layout's
    storage when the layout allows it (planes, boxed words), else on the decoded planes.
    """
    src, offset, rebuild = x.movable()
    res = fn(src, offset)
    mk = rebuild
    # A view takes its base's inference mode, as torch's own views do (they copy the base's dispatch
    # keys); everything else is created in the current mode. Built in the current mode, a view of a
    # normal LCTensor inside inference_mode would be an inference tensor, and the ADInplaceOrView
    # kernel's as_view, which gives a view its base's version counter, raises "Cannot set
    # version_counter for inference tensor". Hot path (no inference_mode anywhere): one mode check
    # and one check of the storage (an inference LCTensor built from normal storage is the only miss:
    # its views outside the region are then normal tensors, which is harmless).
    if alias is not False:
        if _inference_mode_on():
            inference = _is_inference(x)
            other_mode = not inference
        else:
            other_mode = inference = _is_inference(src) and _is_inference(x)
        if other_mode:
            plain_mk = mk

            def mk(t, view):
                if alias or _aliases(t, src):
                    with _InferenceMode(inference):
                        return plain_mk(t, view=view)
                return plain_mk(t, view=view)

    if isinstance(res, (list, tuple)):
        return [mk(t, view=alias if alias is not None else t._is_view()) for t in res]
    return mk(res, view=alias if alias is not None else res._is_view())


def _aliases(t, src) -> bool:
    """Whether ``t`` shares ``src``'s storage (views of inference tensors keep no ``_base``)."""
    if t is src:
        return True
    try:
        return t.untyped_storage().data_ptr() == src.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without data (fake, functorch-wrapped)
        return t._base is not None


@implements([aten.view.default, aten._unsafe_view.default, aten.reshape.default], kind="structural")
def view(func, x, size):
    if func is aten.view.default:
        if not torch.is_grad_enabled() and list(size) == list(x.shape) and x.requires_grad:
            # x.view_as(x) with grad off and planes that require grad: what autograd.Function does
            # with an input it returns unchanged (_view_as_self_with_no_grad; FSDP2 passes every
            # module input through one). The alias keeps the very same planes, so the planes'
            # graph stays connected: autograd records on planes, never on the wrapper.
            return structural(x, lambda t, k: t)
        return structural(x, lambda t, k: t.view(*t.shape[:k], *size))
    r = structural(x, lambda t, k: t.reshape(*t.shape[:k], *size), None)
    if r.lc_view and func is aten.reshape.default and _inference_mode_on() and not _is_inference(x):
        # reshape (composite) arrives here undecomposed under inference_mode; on a normal tensor
        # torch's reshape is then a tracked view (shared version counter, _base): dispatch the view
        return aten.view.default(x, size)
    return r


@implements([aten.expand.default], kind="structural")
def expand(func, x, size, *, implicit=False):
    def fn(t, k):
        if k:
            t = broadcast_planes(t, len(size))
        return t.expand(*t.shape[:k], *size)

    return structural(x, fn)


@implements([aten.permute.default], kind="structural")
def permute(func, x, dims):
    n = x.dim()
    return structural(x, lambda t, k: t.permute(*range(k), *[_norm(d, n) + k for d in dims]))


@implements([aten.transpose.int], kind="structural")
def transpose(func, x, d0, d1):
    n = x.dim()
    return structural(x, lambda t, k: t.transpose(_norm(d0, n) + k, _norm(d1, n) + k))


@implements([aten.t.default], kind="structural")
def t_(func, x):
    if x.dim() > 2:
        check_as_torch(aten.t.default, x)  # torch's error: t() takes at most 2-D
    if x.dim() < 2:
        return structural(x, lambda t, k: t.view(t.shape))  # a fresh view, as torch returns
    return transpose(None, x, 0, 1)


@implements([aten.alias.default], kind="structural")
def alias(func, x):
    return structural(x, lambda t, k: t.view(t.shape))


@implements([aten.unsqueeze.default], kind="structural")
def unsqueeze(func, x, d):
    d = _norm(d, x.dim() + 1)
    return structural(x, lambda t, k: t.unsqueeze(d + k))


@implements([aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims], kind="structural")
def squeeze(func, x, dim=None):
    n = x.dim()
    if n == 0:
        return structural(x, lambda t, k: t.view(t.shape))
    if dim is None:
        dims = [i for i in range(n) if x.shape[i] == 1]
    else:
        dims = [_norm(d, n) for d in ([dim] if isinstance(dim, int) else dim) if x.shape[_norm(d, n)] == 1]
    return structural(x, lambda t, k: t.squeeze(tuple(d + k for d in dims)) if dims else t.view(t.shape))


@implements([aten.select.int], kind="structural")
def select(func, x, dim, index):
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: t.select(d + k, index))


@implements([aten.slice.Tensor], kind="structural")
def slice_(func, x, dim=0, start=None, end=None, step=1):
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: aten.slice.Tensor(t, d + k, start, end, step))


@implements([aten.split.Tensor, aten.split_with_sizes.default], kind="structural")
def split(func, x, sizes, dim=0):
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: func(t, sizes, d + k))


@implements([aten.narrow.default], kind="structural")
def narrow(func, x, dim, start, length):
    # composite, but with an ADInplaceOrView kernel: under inference_mode it arrives here, and its
    # decomposition's result (already a view of x) cannot be made a view a second time
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: t.narrow(d + k, start, length))


@implements([aten.chunk.default], kind="structural")
def chunk(func, x, chunks, dim=0):
    d = _norm(dim, x.dim())  # as narrow
    return structural(x, lambda t, k: t.chunk(chunks, d + k))


@implements([aten.unbind.int], kind="structural")
def unbind(func, x, dim=0):
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: t.unbind(d + k))


@implements([aten.unfold.default], kind="structural")
def unfold(func, x, dim, size, step):
    if x.dim() == 0:  # torch treats a 0-d tensor as one element (planes have no dim to unfold)
        return per_plane(func, (x, dim, size, step), {}, (0,))
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: t.unfold(d + k, size, step))  # a view, as torch's unfold is


@implements([aten.diagonal.default], kind="structural")
def diagonal(func, x, offset=0, dim1=0, dim2=1):
    n = x.dim()
    return structural(x, lambda t, k: t.diagonal(offset, _norm(dim1, n) + k, _norm(dim2, n) + k))


def in_memory_format(t, k: int, fmt):
    """A copy of storage ``t`` (``k`` leading plane dims) whose elements are laid out in memory format
    ``fmt`` as torch lays out a tensor of the elements' shape: row-major for ``contiguous_format``,
    channels last for ``channels_last``/``channels_last_3d`` (torch's rank errors for other ranks);
    the planes stay outermost. ``preserve_format`` keeps the elements' layout (torch's rule: a dense
    layout is kept, anything else becomes row-major)."""
    e = t.dim() - k
    if fmt in (torch.channels_last, torch.channels_last_3d):
        want = 4 if fmt is torch.channels_last else 5
        if e != want:  # torch's own error, e.g. "required rank 4 tensor to use channels_last format"
            torch.empty((1,) * e).clone(memory_format=fmt)
            raise RuntimeError(f"required rank {want} tensor to use {fmt} format")
        perm = [*range(k), k, *range(k + 2, t.dim()), k + 1]  # planes, N, spatial dims, C
        inverse = sorted(range(t.dim()), key=perm.__getitem__)
        return t.permute(perm).contiguous().permute(inverse)
    if fmt is torch.contiguous_format:
        return t.clone(memory_format=torch.contiguous_format)
    return t.clone()  # preserve: the planes' strides, which are the elements' with the planes first


@implements([aten.clone.default], kind="structural")
def clone(func, x, *, memory_format=None):
    return structural(x, lambda t, k: in_memory_format(t, k, memory_format or torch.preserve_format), False)


@implements([aten.detach.default], kind="structural")
def detach(func, x):
    return structural(x, lambda t, k: t.detach())


@implements([aten.flip.default], kind="structural")
def flip(func, x, dims):
    n = x.dim()
    return structural(x, lambda t, k: t.flip([_norm(d, n) + k for d in dims]), False)


@implements([aten.roll.default], kind="structural")
def roll(func, x, shifts, dims=()):
    n = x.dim()
    if not dims:
        return structural(x, lambda t, k: t.flatten(k).roll(shifts, k).view(t.shape), False)
    return structural(x, lambda t, k: t.roll(shifts, [_norm(d, n) + k for d in dims]), False)


@implements([aten.repeat.default], kind="structural")
def repeat(func, x, repeats):
    def fn(t, k):
        t = broadcast_planes(t, len(repeats)) if k else t
        return t.repeat(*([1] * k), *repeats)

    return structural(x, fn, False)


@implements([aten.index.Tensor], kind="structural")
def index(func, x, indices):
    return structural(x, lambda t, k: aten.index.Tensor(t, [None] * k + list(indices)), False)


@implements([aten.index_select.default], kind="structural")
def index_select(func, x, dim, idx):
    if x.dim() == 0:  # torch treats a 0-d tensor as one element and returns 0-d
        return aten.squeeze.default(index_select(func, aten.unsqueeze.default(x, 0), 0, idx.reshape(-1)))
    d = _norm(dim, x.dim())
    return structural(x, lambda t, k: t.index_select(d + k, idx), False)


@implements([aten.gather.default], kind="structural")
def gather(func, x, dim, idx, *, sparse_grad=False):
    d = _norm(dim, x.dim())

    def fn(t, k):
        i = idx.unsqueeze(0).expand(t.shape[0], *idx.shape) if k else idx
        return t.gather(d + k, i)

    return structural(x, fn, False)


def _lc_args(xs):
    return [x for x in xs if isinstance(x, LCTensor)]


def _channels_last(t) -> bool:
    """Whether eager ``cat`` keeps t's channels-last layout (only then is its result not contiguous)."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())
    return fmt is not None and not t.is_contiguous() and t.is_contiguous(memory_format=fmt)


@implements([aten.cat.default], kind="structural")
def cat(func, tensors, dim=0):
    tensors = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)] or list(tensors)
    nd = max(t.dim() for t in tensors)
    d = _norm(dim, nd)
    lcs = _lc_args(tensors)
    x = tensors[0]
    if (
        isinstance(x, LCTensor)
        and x.lc_layout is not PLANES
        and x.lc_layout.element_dims_offset is not None
        and all(isinstance(t, LCTensor) and t.lc_layout is x.lc_layout and t.lc_support == x.lc_support
                for t in tensors)
    ):
        # one layout that can move its storage (boxed words): join the storage, keep the layout
        moved = [t.movable() for t in tensors]
        off = moved[0][1]
        t = torch.cat([m[0] for m in moved], d + off)
        return moved[0][2](t, exact=A.min_exact(*(y.lc_exact for y in tensors)))
    ss = [series(t) for t in tensors]
    sup = ss[0].support
    for s in ss[1:]:
        sup = A.S.union(sup, s.support)
    planes = [A.place(s.planes, s.support, sup, s.planes.shape[1:]) if s.support != sup else s.planes for s in ss]
    if len(planes) == 1 and not _channels_last(planes[0]):
        # what eager cat of one tensor returns (a contiguous copy), said so explicitly: Inductor
        # lowers a one-tensor cat to a clone that keeps the input's strides, so views recorded after
        # it in a torchlc.compile trace failed (transformers' cache cats keys onto an empty tensor)
        res = planes[0].clone(memory_format=torch.contiguous_format)
    else:
        res = torch.cat(planes, d + 1)
    mono = all(is_monomial(t) for t in tensors)
    return out(Series(res, sup, A.result_order(*ss), A.min_exact(*(s.exact for s in ss))), monomial=mono and bool(lcs))


@implements([aten.stack.default], kind="structural")
def stack(func, tensors, dim=0):
    d = _norm(dim, tensors[0].dim() + 1)
    return cat(None, [aten.unsqueeze.default(t, d) for t in tensors], d)


def _lift_value(v, like):
    if isinstance(v, torch.Tensor):
        return series(v)
    return Series(torch.tensor([v], dtype=like.planes.dtype, device=like.planes.device), (A.S.ZERO,))


def per_plane(func, args, kwargs, value_positions):
    """Run an op that is linear in its value arguments (the LC ones and those at
    ``value_positions``) once per plane over the union support, then stack."""
    args = list(args)
    ss = {i: _lift_value(args[i], series(next(a for a in args if isinstance(a, LCTensor))))
          for i in value_positions if i < len(args) and args[i] is not None}
    sup = None
    for s in ss.values():
        sup = s.support if sup is None else A.S.union(sup, s.support)
    planes = {i: A.place(s.planes, s.support, sup, s.planes.shape[1:]) if s.support != sup else s.planes
              for i, s in ss.items()}
    outs = []
    for t in range(len(sup)):
        a = list(args)
        for i, p in planes.items():
            a[i] = p[t]
        outs.append(func(*a, **kwargs))
    res = torch.stack(outs)
    vals = list(ss.values())
    return out(Series(res, sup, A.result_order(*vals), A.min_exact(*(s.exact for s in vals))))


_VALUE_POS = {
    aten.index_put.default: (0, 2),
    aten.index_add.default: (0, 3),
    aten.index_copy.default: (0, 3),
    aten.scatter.src: (0, 3),
    aten.scatter_add.default: (0, 3),
    aten.masked_scatter.default: (0, 2),
    aten.slice_scatter.default: (0, 1),
    aten.select_scatter.default: (0, 1),
    aten.diagonal_scatter.default: (0, 1),
    aten.take.default: (0,),
    aten.tril.default: (0,),
    aten.triu.default: (0,),
}


def _per_plane_rule(func, *args, **kwargs):
    return per_plane(func, args, kwargs, _VALUE_POS[func])


implements(list(_VALUE_POS), kind="per_plane")(_per_plane_rule)


@implements([aten.scatter.value, aten.index_fill.int_Scalar, aten.masked_fill.Scalar, aten.fill.Scalar,
             aten.masked_fill.Tensor, aten.index_fill.int_Tensor, aten.fill.Tensor])
def fill_like_ops(func, x, *args):
    # the filled value is a real number: the ε⁰ plane gets it, every other plane gets 0
    *rest, value = args
    if isinstance(value, LCTensor):
        # an LC fill value v (0-dim): the op is linear in (x, v) jointly, so plane q gets v's q-th term
        return per_plane(func, (x, *args), {}, (0, len(args)))
    zero = torch.zeros_like(value) if isinstance(value, torch.Tensor) else 0
    s = series(x)
    if A.S.ZERO not in s.support:
        s = A.add(s, Series(s.planes.new_zeros((1, *s.shape)), (A.S.ZERO,)))
    planes = [func(p, *rest, value if q == 0 else zero) for q, p in zip(s.support, s.planes)]
    return out(Series(torch.stack(planes), s.support, s.order, s.exact))


@implements([aten.copy_.default], kind="structural")
def copy_(func, dst, src, non_blocking=False):
    if not isinstance(dst, LCTensor):
        raise TypeError(
            "torchlc: copy_ of an LCTensor into a plain tensor would drop its ε terms; create the "
            "destination from the LCTensor (lc.new_zeros(shape), torch.zeros_like(lc)) instead"
        )
    s = series(src)
    planes = broadcast_planes(s.planes, dst.dim()).expand(len(s.support), *dst.shape)
    planes = planes.to(dtype=dst.dtype, device=dst.device)
    new = wrap(planes.clone(), s.support, s.order if s.order is not None else dst.lc_order, s.exact)
    dst.lc_write_(new)
    return dst


@implements([aten._to_copy.default])
def to_copy(func, x, *, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False,
            memory_format=None):
    if dtype is not None and not (dtype.is_floating_point or dtype.is_complex):
        raise TypeError(
            f"torchlc: cannot convert an LCTensor to {dtype}; take torchlc.standard_part(x) (or "
            "floor/round, which are exact) first"
        )
    if x.lc_layout is not PLANES and x.lc_layout.element_dims_offset is not None and (dtype is None or dtype == x.dtype):
        # a copy of the storage itself (boxed words must never pass through a float cast)
        src, _, rebuild = x.movable()
        return rebuild(src.to(device=device) if device is not None else src.clone())
    p = read_planes(x)
    p = p.to(dtype=dtype or p.dtype, device=device or p.device, copy=True)
    if memory_format not in (None, torch.preserve_format):
        p = in_memory_format(p, 1, memory_format)
    return wrap(p, x.lc_support, x.lc_order, x.lc_exact, monomial=is_monomial(x))


@implements([aten.equal.default], kind="decision")
def equal(func, a, b):
    return order.equal(series(a), series(b), "torch.equal")


@implements([aten.is_same_size.default], kind="structural")
def is_same_size(func, a, b):
    return tuple(a.shape) == tuple(b.shape)


@implements([aten.contiguous.default], kind="structural")
def contiguous(func, x, memory_format=torch.contiguous_format):
    if memory_format is torch.preserve_format:
        check_as_torch(func, x, memory_format=memory_format)  # torch's refusal
    if x.is_contiguous(memory_format=memory_format):
        return structural(x, lambda t, k: t, None)
    return structural(x, lambda t, k: in_memory_format(t, k, memory_format), None)
