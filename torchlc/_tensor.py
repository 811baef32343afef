"""``LCTensor``: the ``__torch_dispatch__`` wrapper subclass and its plumbing.

An LCTensor of shape S holds elements Σ c_q ε^q. It has one static *support* (the sorted exponents it
can carry), an ``order`` (absolute truncation cutoff) and an ``exact`` bound (highest exponent known to
be exact; ``None`` means nothing was ever dropped). The coefficients live in one of three storage
layouts (see :mod:`torchlc.layouts`); every rule computes on the *planes* form ``(T, *S)`` unless it has
a layout-specific fast path, and results pass through :func:`wrap`, which applies the layout policy.

Dispatch: aten op → rule table (by OpOverload, then overload packet) → CompositeImplicit decomposition
→ ``torch._decomp`` decomposition → ``NotImplementedError`` naming the op. Rules run inside
``_RestorePythonTLSSnapshot`` so autograd records on the planes ("inner" autograd).
"""

from __future__ import annotations

import contextlib
import threading
from fractions import Fraction

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch._subclasses.functional_tensor import FunctionalTensor

from . import _support as S

_TRACED = (FakeTensor, FunctionalTensor)

__all__ = ["LCTensor", "Series", "series", "wrap", "RULES", "implements"]

RULES: dict = {}
_DISPATCH = [None]  # set by torchlc.ops once the rule table exists


def implements(ops):
    """Register ``fn(func, *args, **kwargs)`` as the LC rule for each aten op in ``ops``."""

    def deco(fn):
        for op in ops:
            RULES[op] = fn
        return fn

    return deco


class Series:
    """Planes view of any operand: ``planes`` of shape (T, *shape) over ``support``.

    ``order``/``exact`` are ``None`` for plain tensors and numbers (exact, never truncated).
    """

    __slots__ = ("planes", "support", "order", "exact", "zero")

    def __init__(self, planes, support, order=None, exact=None, zero=None):
        self.planes = planes
        self.support = support
        self.order = order
        self.exact = exact
        # optional bool mask: elements known to be exactly 0, dropped terms included (a product with
        # an exact-zero factor, a relu of a negative number). Decisions there need no higher order.
        self.zero = zero

    @property
    def shape(self):
        return self.planes.shape[1:]

    def plane(self, q):
        """Coefficient tensor of ε^q (a zeros tensor when q is not in the support)."""
        try:
            return self.planes[self.support.index(q)]
        except ValueError:
            return self.planes.new_zeros(self.shape)


def _is_number(x):
    return isinstance(x, (int, float, bool)) and not isinstance(x, torch.Tensor)


def series(x) -> Series:
    """Series view of an LCTensor, a plain tensor or a Python number."""
    if isinstance(x, LCTensor):
        return Series(x._planes_view(), x._support, x._order, x._exact, x._zero)
    if isinstance(x, torch.Tensor):
        if torch._C._functorch.is_batchedtensor(x):
            from ._vmap import read_planes, unwrap_lc

            lc = unwrap_lc(x)
            if lc is not None:  # API code running inside vmap: batched planes, same metadata
                return Series(read_planes(x), lc._support, lc._order, lc._exact)
        return Series(x.unsqueeze(0), (S.ZERO,))
    if _is_number(x):
        return Series(torch.tensor([x]), (S.ZERO,))
    raise TypeError(f"torchlc: cannot use {type(x).__name__} as a tensor operand")


def result_order(*xs):
    """Truncation order of a result: the largest order among LC operands (None if none)."""
    orders = [x.order for x in xs if x.order is not None]
    return max(orders) if orders else None


def min_exact(*bounds):
    """Minimum of exactness bounds where None means +infinity."""
    bs = [b for b in bounds if b is not None]
    return min(bs) if bs else None


_STATIC = threading.local()


@contextlib.contextmanager
def static_mode():
    """Never look at data while tracing (supports become static over-approximations)."""
    old = getattr(_STATIC, "on", False)
    _STATIC.on = True
    try:
        yield
    finally:
        _STATIC.on = old


@contextlib.contextmanager
def speculate():
    """Trace with data-dependent decisions taken from the example inputs; every such decision
    appends a bool tensor to the yielded list that is True when new data would decide differently
    (checked at run time by torchlc.compile, which then falls back to eager)."""
    old = getattr(_STATIC, "rec", None)
    rec = []
    _STATIC.rec = rec
    try:
        with static_mode():
            yield rec
    finally:
        _STATIC.rec = old


def speculation_record():
    return getattr(_STATIC, "rec", None)


def _tracing() -> bool:
    """Under torch.compile/export or inside :func:`static_mode` (torchlc.compile's trace)."""
    return _is_compiling() or getattr(_STATIC, "on", False)


def _traced_tensor(t) -> bool:
    """A functorch wrapper (vmap/grad), or a functional/fake tensor of AOTAutograd's trace (torch 2.11
    does not report that phase as compiling)."""
    return _is_wrapped(t) or isinstance(t, _TRACED)


def _inner_is_plain(t) -> bool:
    """False for functorch-wrapped (vmap/grad) tensors and when tracing (torch.compile, make_fx):
    then rules must not look at data (no host syncs, no data-dependent supports)."""
    return not (_tracing() or _traced_tensor(t))


_is_compiling = torch.compiler.is_compiling
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _place_planes(p, sup, u):
    """Planes over support ``sup`` re-laid over the larger support ``u`` (zero planes elsewhere)."""
    pos = dict(zip(sup, range(len(sup))))
    zero = p.new_zeros(p.shape[1:])
    return torch.stack([p[pos[q]] if q in pos else zero for q in u])


def wrap(planes, support, order, exact, *, monomial=False, zero=None) -> LCTensor:
    """Build an LCTensor from planes, choosing the storage layout by policy (see layouts)."""
    # one functorch check covers both vmap (lift) and grad transforms (refuse); dynamo-traced code
    # never sees functorch wrappers here
    if _is_functorch_wrapped(planes) and not torch.compiler.is_compiling():
        if _vmap.is_batched(planes):
            return _vmap.lift_planes(planes, lambda p: wrap(p, support, order, exact, monomial=monomial))
        if torch._C._functorch.is_gradtrackingtensor(planes):
            # torch.func.grad/jacrev/jvp would see none of the rules' work and return silent zeros
            raise NotImplementedError(
                "torchlc: torch.func.grad/jacrev/jacfwd/jvp transforms over LCTensor code are not "
                "supported (they would silently give zeros). Use ordinary autograd on coefficients "
                "instead: loss = f(torchlc.coeff(model(x.nonstd(v)), 1)); loss.backward() or "
                "torch.autograd.grad(loss, params). torch.func.vmap is supported."
            )
    if not support:
        planes = planes.new_zeros((1, *planes.shape[1:]))
        support = (S.ZERO,)
    if order is not None and exact is not None and exact > order:
        exact = order
    r = _layouts.store(planes, support, order, exact, monomial)
    if zero is not None and exact is not None and zero.shape == r.shape:
        r._zero = zero  # only informative for truncated tensors
    return r


_is_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _outside_inference(owner, inner):
    """``inner`` storage for ``owner``: under ``torch.inference_mode()`` a normal (non-inference)
    LCTensor that adopts new storage (an in-place op that grows its support) gets normal copies of
    the inference tensors, so it stays usable outside the region, as a plain tensor updated in place
    there does."""
    if not torch.is_inference_mode_enabled() or owner.is_inference():
        return inner
    with torch.inference_mode(False), torch.no_grad():
        return tuple(t.clone() if t.is_inference() else t for t in inner)


_make_wrapper = torch.Tensor._make_wrapper_subclass


class LCTensor(torch.Tensor):
    """A tensor of truncated Levi-Civita numbers Σ c_q ε^q (ε > 0 infinitesimal, q rational).

    Create one with ``x.nonstd()``, :func:`torchlc.eps` or :func:`torchlc.from_terms`; any PyTorch code
    then runs on it. Its ``dtype`` is the coefficient dtype.

    Example:
        >>> import torch, torchlc
        >>> x = torch.tensor([0.0, 2.0]).nonstd()
        >>> (x * x)
        LCTensor([ε, 4.0 + 4.0ε], order=1)
    """

    _layout: str
    _support: tuple
    _order: Fraction
    _exact: Fraction | None

    @staticmethod
    def __new__(cls, layout, inner, support, order, exact, shape, dtype):
        first = inner[0]
        # the wrapper reports its storage's strides, so torch's view-vs-copy decisions (reshape)
        # match what the planes (plane dim first) or boxed words can actually do
        if layout == "planes":
            strides = first.stride()[1:]
        elif layout == "boxed":
            strides = first.stride()
        else:
            strides = None
        r = _make_wrapper(cls, shape, strides=strides, dtype=dtype, device=first.device, requires_grad=False)
        r._layout = layout
        if len(inner) == 1:  # planes/boxed: the common case, without the generic loop
            r._inner = (first,)
            r._t0 = first
        else:
            r._set_inner(inner)
        r._support = support
        r._order = order
        r._exact = exact
        r._cache = None
        r._zero = None
        r._lc_view = False  # set by view ops: this tensor aliases another LCTensor's storage
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    # ----------------------------------------------------------------------------------------------
    def _set_inner(self, inner):
        inner = tuple(inner)
        self._inner = inner
        for i, t in enumerate(inner):
            setattr(self, f"_t{i}", t)

    def _planes_view(self):
        """Planes (T, *shape) of this tensor, decoding boxed/csr storage (cached)."""
        if self._layout == "planes":
            return self._inner[0]
        if self._cache is None:
            from . import layouts

            if torch.is_inference_mode_enabled() and not self.is_inference():
                # a normal tensor outlives this inference_mode region: cache normal planes, or its
                # later use with autograd or in-place would meet inference tensors
                with torch.inference_mode(False), torch.no_grad():
                    self._cache = layouts.decode(self)
            else:
                self._cache = layouts.decode(self)
        return self._cache

    def _set_storage(self, other: LCTensor):
        """In-place update. Writes into the existing planes whenever they can hold the new value (so
        views and their bases stay aliased); a view cannot grow its support, which raises."""
        from . import _support as S

        mine = self._inner[0]
        if self._layout == "planes" and set(other._support) <= set(self._support):
            src = other._planes_view()
            if other._support != self._support:
                src = _place_planes(src, other._support, self._support)
            mine.copy_(src.expand(mine.shape))
        elif self._layout == "planes" and self._lc_view:
            missing = sorted(set(other._support) - set(self._support))
            raise RuntimeError(
                "torchlc: cannot write values with terms "
                + ", ".join(S.fmt_exponent(q) if q else "ε⁰" for q in missing)
                + " into a view of an LCTensor whose support lacks them. Create the destination "
                "with a wide enough support, e.g. torch.zeros_like(src) or base = base + 0 * src"
            )
        else:
            self._layout = other._layout
            self._set_inner(_outside_inference(self, other._inner))
            self._support = other._support
        self._zero = None
        self._order = other._order if self._order is None else max(self._order, other._order or self._order)
        self._exact = min_exact(self._exact, other._exact) if self._lc_view else other._exact
        self._cache = None

    def _restride_to(self, other: LCTensor):
        """Shape-changing in-place view ops (squeeze_, t_, …): take other's shape and storage."""
        with torch._C._DisableTorchDispatch():
            torch.Tensor.as_strided_(self, other.shape, other.stride())
        self._layout = other._layout
        self._set_inner(other._inner)
        self._support = other._support
        self._cache = None

    # -- torch.compile support ---------------------------------------------------------------------
    _INNER_NAMES = {
        "planes": ("_t0",),
        "boxed": ("_t0",),
        "csr": ("_t0", "_t1", "_t2"),
    }

    def __tensor_flatten__(self):
        from .ops import RULES_HASH

        names = list(self._INNER_NAMES[self._layout][: len(self._inner)])
        return names, (self._layout, self._support, self._order, self._exact, self.dtype, RULES_HASH)

    @staticmethod
    def __tensor_unflatten__(inner_tensors, ctx, outer_size, outer_stride):
        layout, support, order, exact, dtype, _ = ctx
        inner = [inner_tensors[k] for k in sorted(inner_tensors)]
        return LCTensor(layout, inner, support, order, exact, outer_size, dtype)

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _DISPATCH[0](func, args, kwargs or {})

    def __repr__(self, *, tensor_contents=None):
        from ._repr import lc_repr

        return lc_repr(self)

    def __reduce_ex__(self, proto):
        from .ops import _rebuild

        return _rebuild, (self._planes_view(), self._support, self._order, self._exact)

    def requires_grad_(self, requires_grad: bool = True):
        if requires_grad:
            raise TypeError(
                "an LCTensor cannot require grad itself (its adjoint is not an LC product). Make the "
                "coefficient planes the leaves instead, e.g. p = nn.Parameter(torchlc.coeffs(lc)) and "
                "build the LCTensor in forward with torchlc.from_terms({q: p[i] ...})"
            )
        return self

    def __bool__(self):
        raise TypeError(
            "the truth value of an LCTensor is ambiguous: compare it (x > 0 gives a plain bool "
            "tensor) or take torchlc.standard_part(x)"
        )

    def __float__(self):
        raise TypeError(
            "an LCTensor element is not a Python float; use torchlc.standard_part(x) or "
            "torchlc.coeff(x, q)"
        )

    def tolist(self):
        raise TypeError("LCTensor.tolist: use torchlc.terms(x) or torchlc.coeffs(x)")

    def numpy(self, *a, **k):
        raise TypeError("LCTensor.numpy: use torchlc.coeffs(x).numpy() (planes first)")


# imported last: these modules import the names defined above
from . import _vmap  # noqa: E402
from . import layouts as _layouts  # noqa: E402
