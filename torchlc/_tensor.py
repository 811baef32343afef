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

import itertools as _itertools
import weakref as _weakref
from fractions import Fraction

import torch
import torch._C._functorch as _F

from . import _context, _rulehash, _vmap
from . import _support as S
from . import layouts as _layouts
from ._algebra import FIRST_ORDER, Series, min_exact, place
from ._repr import lc_repr
from .errors import TruncationError

__all__ = ["LCTensor", "Series", "series", "wrap", "set_dispatcher", "read_planes", "unwrap_lc"]


def _is_number(x):
    return isinstance(x, (int, float, bool)) and not isinstance(x, torch.Tensor)


def series(x) -> Series:
    """Series view of an LCTensor, a plain tensor or a Python number."""
    if isinstance(x, LCTensor):
        return Series(x._planes_view(), x._support, x._order, x._exact, x._zero)
    if isinstance(x, torch.Tensor):
        if _F.is_batchedtensor(x):
            lc = unwrap_lc(x)
            if lc is not None:  # API code running inside vmap: batched planes, same metadata
                return Series(read_planes(x), lc._support, lc._order, lc._exact)
        return Series(x.unsqueeze(0), (S.ZERO,))
    if _is_number(x):
        return Series(torch.tensor([x]), (S.ZERO,))
    raise TypeError(f"torchlc: cannot use {type(x).__name__} as a tensor operand")


def read_planes(x) -> torch.Tensor:
    """Planes (T, *shape) of an LCTensor, batched by vmap or not; a plain tensor gives x[None]."""
    if isinstance(x, LCTensor):
        return x._planes_view()
    if _vmap.is_batched(x):
        level = _F.maybe_get_level(x)
        bdim = _F.maybe_get_bdim(x)
        phys = _F.get_unwrapped(x)
        if not isinstance(phys, LCTensor) and not _vmap.is_batched(phys):
            return _F._add_batch_dim(phys.unsqueeze(0), bdim + 1, level)
        return _F._add_batch_dim(read_planes(phys), bdim + 1, level)  # (T, ..., B at bdim + 1, ...)
    return torch.as_tensor(x).unsqueeze(0)


def unwrap_lc(x):
    """The physical LCTensor under any number of vmap levels (None if x is not LC)."""
    while _vmap.is_batched(x):
        x = _F.get_unwrapped(x)
    return x if isinstance(x, LCTensor) else None


def real(t: torch.Tensor, order) -> LCTensor:
    """A real-valued LCTensor (one ε⁰ plane) holding the plain tensor t, truncated at ``order``."""
    return wrap(t.unsqueeze(0), (S.ZERO,), order, None)


# Set once an LCTensor with complex coefficients has been built: until then dispatch skips the check
# for complex operands (a list, so other layers read the current value through one shared object).
COMPLEX_SEEN = [False]


def wrap(planes, support, order, exact, *, monomial=False, zero=None) -> LCTensor:
    """Build an LCTensor from planes, choosing the storage layout by policy (see layouts)."""
    # one functorch check covers both vmap (lift) and grad transforms (refuse); dynamo-traced code
    # never sees functorch wrappers here
    if _context.is_wrapped(planes) and not _context.is_compiling():
        if _vmap.is_batched(planes):
            return _vmap.lift_planes(planes, lambda p: wrap(p, support, order, exact, monomial=monomial))
        if _F.is_gradtrackingtensor(planes):
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
    if planes.dtype.is_complex:
        COMPLEX_SEEN[0] = True  # from now on dispatch checks for complex operands (see _dispatch)
    if order is not None and exact is not None and exact is not order and exact > order:
        exact = order
    layout = _layouts.choose(planes, support, monomial)
    inner = (planes,) if layout is _layouts.PLANES else layout.encode(planes, support)
    if inner is None:  # the layout declined these values
        layout, inner = _layouts.PLANES, (planes,)
    r = LCTensor(layout, inner, support, order, exact, planes.shape[1:], planes.dtype)
    if zero is not None and exact is not None and zero.shape == r.shape:
        r._zero = zero  # only informative for truncated tensors
    return r


# A write clock for the planes that keep no version counter (inference tensors, and every plane a
# trace sees: torchlc.compile traces in inference mode, and fake or functional planes are not ours to
# trust). Each write into LC planes draws a new, never repeated value: an in-place or out= LC op at
# dispatch, an LC-level write (lc_write_, lc_restride_), a compiled graph that mutates its inputs'
# planes, and every hand-out of planes to code outside torchlc (LCTensor.lc_planes, torchlc.coeffs,
# terms, coeff), after which plain ops may write into them unseen. A fact recorded on such planes
# holds while the clock shows the value it was recorded at. Conservative, never wrong: a write
# anywhere voids every such fact, and in any thread (the clock is one for the process; a draw from
# itertools.count is atomic, and no value repeats, so no interleaving of draws can bring the clock
# back to a value a fact was recorded at).
_PLANE_WRITES = _itertools.count(1)
_write_clock = [0]


def note_plane_write() -> None:
    """Tell the facts on unversioned planes that LC planes may be written (see above)."""
    _write_clock[0] = next(_PLANE_WRITES)


def standard_part_fact(x) -> str | None:
    """What is known of the ε⁰ coefficient of every element of a first-order planes tensor x, without
    reading the data: ``"nonneg"`` (≥ 0 or NaN: a square, a sum or mean of such) or ``"pos"`` (> 0
    or NaN: such a value plus a positive number that is normal in the dtype, as RMS norm's
    ``mean(x²) + eps``); None when nothing is known. A fact holds for the planes it was recorded on,
    unchanged: new planes void it, and so does a write into them, seen by their version counter
    (eager planes) or, for planes without one, by the write clock above (inference mode, traces)."""
    fact = x._lead_fact if type(x) is LCTensor else None
    if fact is None:
        return None
    ref, version, clock, kind = fact
    planes = x._inner[0]
    if x._layout is not _layouts.PLANES or ref() is not planes:
        return None
    if version is None:
        return kind if _write_clock[0] == clock else None
    return kind if planes._version == version else None


def record_standard_part_fact(x, kind: str) -> None:
    """Record ``kind`` (see :func:`standard_part_fact`) for x's current planes, which the caller has
    just made; first-order planes tensors only, not under vmap (whose wrappers the clock does not
    see written)."""
    if type(x) is not LCTensor or x._layout is not _layouts.PLANES or x._support != FIRST_ORDER:
        return
    planes = x._inner[0]
    if _context.is_wrapped(planes):
        return
    if planes.is_inference() or not _context.inner_is_plain(planes):
        x._lead_fact = (_weakref.ref(planes), None, _write_clock[0], kind)
    else:
        x._lead_fact = (_weakref.ref(planes), planes._version, None, kind)


def from_storage(layout, inner, order, exact, shape, dtype) -> LCTensor:
    """An LCTensor of ``layout`` from its inner tensors, with a *lazy* support: computed from the
    storage (``layout.support(inner)``) only when something asks for it. The native CSR rules build
    their results this way, since a per-element support may hold ~numel distinct exponents."""
    r = LCTensor(layout, inner, None, order, exact, shape, dtype)
    del r._support
    return r


def _adopt_support(dst, src) -> None:
    """dst takes src's support, staying lazy when src's is (never computes it)."""
    if "_support" in src.__dict__:
        dst._support = src._support
    else:
        dst.__dict__.pop("_support", None)


def _rebuild(planes, support, order, exact):
    """Unpickle an LCTensor (the function pickles name; ``torchlc.ops._rebuild`` is its 0.1.0 name).

    The metadata is checked against the planes before anything is built: a checkpoint that
    contradicts itself is refused with a clear error, never loaded as a wrong number."""
    def bad(why):
        return ValueError(f"torchlc: cannot load this LCTensor: {why}. The checkpoint is corrupt or "
                          "was not written by torchlc")

    if (not isinstance(planes, torch.Tensor) or not (planes.dtype.is_floating_point or planes.dtype.is_complex)
            or planes.dim() < 1):
        raise bad(f"its coefficient planes must be a floating or complex tensor (T, *shape), got "
                  f"{type(planes).__name__}"
                  + (f" of {planes.dtype}" if isinstance(planes, torch.Tensor) else ""))
    if not isinstance(support, tuple) or not all(isinstance(q, Fraction) for q in support):
        raise bad(f"its support must be a tuple of fractions.Fraction, got {support!r}")
    if any(a >= b for a, b in zip(support, support[1:])):
        raise bad(f"its support {tuple(str(q) for q in support)} is not sorted with unique exponents")
    if len(support) != planes.shape[0]:
        raise bad(f"it has {planes.shape[0]} coefficient planes for {len(support)} exponents")
    for name, v in (("order", order), ("exact_through", exact)):
        if v is not None and not isinstance(v, Fraction):
            raise bad(f"its {name} must be a Fraction or None, got {v!r}")
    if order is not None and exact is not None and exact is not order and exact > order:
        raise bad(f"its exact_through {exact} is above its order {order}")
    if order is not None and support and support[-1] > order:
        raise bad(f"its support reaches ε^{support[-1]}, above its order {order}")
    return wrap(planes, support, order, exact)


# torch.load(..., weights_only=True), the default since torch 2.6, loads LCTensors and state_dicts
# holding them: the rebuild function (under its current and its 0.1.0 name) and the exponent type
# are safe globals (_rebuild validates everything it is given).
torch.serialization.add_safe_globals([_rebuild, (_rebuild, "torchlc.ops._rebuild"), Fraction])


def set_dispatcher(fn) -> None:
    """Install the function every aten op on an LCTensor goes to (:mod:`torchlc._dispatch` does, on
    import). The tensor layer only holds this hook, so it never imports the rules above it."""
    LCTensor._dispatcher = staticmethod(fn)


def _no_dispatcher(func, args, kwargs):
    raise RuntimeError(f"torchlc: {func} reached an LCTensor before the rules were loaded; import torchlc")


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

class _Handles:
    """Removable handle of a hook registered on several tensors."""

    def __init__(self, handles):
        self.handles = handles

    def remove(self):
        for h in self.handles:
            h.remove()


# -- gradients with respect to an LCTensor: dual series ----------------------------------------------------
# The gradient of a real loss L with respect to y = Σ_p y_p ε^p is the family of its planes' gradients
# ∂L/∂y_p. Where it is itself an LCTensor (``lc.grad``, ``lc.backward(gradient)``, the gradients a custom
# autograd.Function's backward receives and returns) it is the *dual series* Σ_p (∂L/∂y_p) ε^(-p),
# exponents negated: the pairing of a gradient with a perturbation is then the ε⁰ coefficient of their
# product, so LC arithmetic computes vector-Jacobian products. For y = f(x) in LC arithmetic the plane
# gradients of x are the ε^(-q) coefficients of f'(x)·ȳ, the formula a backward writes (on the same
# support as y, f'(x)·ȳ would mix the planes the wrong way: (x²)' = 2x gives x₁'s gradient 2x₀ȳ₁, not
# 2x₀ȳ₁ + 2x₁ȳ₀).


def cotangent(grad_planes: torch.Tensor, support, order) -> LCTensor:
    """The dual series Σ_p g_p ε^(-p) of plane gradients ``grad_planes`` (T, *shape) over ``support``."""
    sup = tuple(-q for q in reversed(support))
    top = sup[-1]
    order = top if order is None or order < top else order
    return wrap(grad_planes.flip(0) if len(sup) > 1 else grad_planes, sup, order, None)


def plane_gradients(g, support) -> torch.Tensor:
    """Plane gradients (T, *shape) over ``support`` from a gradient ``g``: the ε^(-q) coefficients of a
    dual series (an LCTensor), or a plain tensor taken as the ε⁰ coefficient (zeros elsewhere)."""
    if isinstance(g, LCTensor):
        gs, gp, exact = g._support, g._planes_view(), g._exact
    else:
        gs, gp, exact = (S.ZERO,), g.unsqueeze(0), None
    need = tuple(-q for q in support)
    if exact is not None and need[0] > exact:
        raise TruncationError(
            f"torchlc: a gradient is exact only through ε^{exact}, but the plane ε^{support[0]} of the "
            f"tensor it belongs to needs its coefficient of ε^{need[0]}; raise the truncation order "
            "(x.nonstd(v, order=...)) of the computation that produced it"
        )
    if gs == need[::-1]:
        return gp.flip(0) if len(gs) > 1 else gp
    pos = {q: i for i, q in enumerate(gs)}
    zero = None
    planes = []
    for e in need:
        if e in pos:
            planes.append(gp[pos[e]])
        else:
            if zero is None:
                zero = gp.new_zeros(gp.shape[1:])
            planes.append(zero)
    return torch.stack(planes)


_NOT_A_NUMBER = (
    "an LCTensor element is a series, not {what}; read a real number off it with "
    "torchlc.standard_part(x) or torchlc.coeff(x, q)"
)


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

    _layout: _layouts.Layout
    _support: tuple
    _order: Fraction
    _exact: Fraction | None

    @staticmethod
    def __new__(cls, layout, inner, support, order, exact, shape, dtype):
        first = inner[0]
        # the wrapper reports its storage's strides, so torch's view-vs-copy decisions (reshape)
        # match what the planes (plane dim first) or boxed words can actually do
        strides = layout.strides(inner)
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
        r._lead_fact = None  # see standard_part_fact
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl
    _dispatcher = staticmethod(_no_dispatcher)

    # -- metadata, read-only (rules and the API read these; the storage stays private) ----------------
    @property
    def lc_layout(self) -> _layouts.Layout:
        """The storage :class:`~torchlc.layouts.Layout` (``torchlc.layout(x)`` gives its name)."""
        return self._layout

    @property
    def lc_support(self) -> tuple:
        """The sorted exponents this tensor can carry (static metadata)."""
        return self._support

    @property
    def lc_order(self):
        """The truncation order: terms above ε^order were dropped."""
        return self._order

    @property
    def lc_exact(self):
        """Highest exponent known to be exact (None: nothing was ever dropped)."""
        return self._exact

    @property
    def lc_zero(self):
        """Bool mask of elements known to be exactly 0 although truncated (None: no record)."""
        return self._zero

    def lc_planes(self) -> torch.Tensor:
        """Coefficient planes (T, *shape) over ``lc_support``, decoded from any layout. On the planes
        layout they are the storage itself: an in-place write into them changes this tensor."""
        note_plane_write()  # the caller may write into them (see standard_part_fact)
        return self._planes_view()

    def storage_nbytes(self) -> int:
        """Bytes of the inner storage tensors."""
        return self._layout.nbytes(self._inner)

    @property
    def lc_support_known(self) -> bool:
        """Whether the support is at hand (False for a lazy support not computed yet, see
        :func:`from_storage`); reading ``lc_support`` computes it."""
        return "_support" in self.__dict__

    @property
    def lc_storage(self) -> tuple:
        """The layout's inner tensors, for layout-specific rules (CSR's native ones) that compute on
        the storage itself; everything else reads planes (``lc_planes``)."""
        note_plane_write()  # the planes layout's storage is its planes (see standard_part_fact)
        return self._inner

    def __getattr__(self, name):
        # Only reached when normal lookup fails: a tensor built without a support (a *lazy* support,
        # see from_storage) computes it from its storage on first use and keeps it. The dense path
        # never gets here (its ``_support`` is an ordinary attribute).
        if name == "_support" and "_layout" in self.__dict__:
            sup = self._layout.support(self._inner)
            self._support = sup
            return sup
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def movable(self):
        """``(storage, offset, rebuild)`` for data-movement ops (views, indexing, joins), which act
        on every term alike: ``storage`` holds the elements in its trailing dimensions after
        ``offset`` leading ones, and ``rebuild(t, exact=...)`` makes an LCTensor of the same layout
        and metadata from the moved storage ``t``. Layouts that cannot move their storage directly
        (CSR) give their planes, and results are stored by policy."""
        lay = self._layout
        off = lay.element_dims_offset
        sup, order, ex = self._support, self._order, self._exact
        if off is None or lay is _layouts.PLANES:

            def rebuild(t, exact=ex, view=False):
                r = wrap(t, sup, order, exact)
                r._lc_view = view
                return r

            return self._planes_view(), 1, rebuild

        def rebuild(t, exact=ex, view=False):
            r = LCTensor(lay, (t,), sup, order, exact, t.shape[off:], self.dtype)
            r._lc_view = view
            return r

        return self._inner[0], off, rebuild

    @property
    def lc_view(self) -> bool:
        """Whether this tensor is a view sharing another LCTensor's storage (writes reach the base)."""
        return self._lc_view

    # ----------------------------------------------------------------------------------------------
    def _set_inner(self, inner):
        inner = tuple(inner)
        self._inner = inner
        for i, t in enumerate(inner):
            setattr(self, f"_t{i}", t)

    def _planes_view(self):
        """Planes (T, *shape) of this tensor, decoding boxed/csr storage (cached)."""
        lay = self._layout
        if lay is _layouts.PLANES:
            return self._inner[0]
        if self._cache is None:
            if torch.is_inference_mode_enabled() and not self.is_inference():
                # a normal tensor outlives this inference_mode region: cache normal planes, or its
                # later use with autograd or in-place would meet inference tensors
                with torch.inference_mode(False), torch.no_grad():
                    self._cache = lay.decode(self._inner, self._support, self.shape, self.dtype)
            else:
                self._cache = lay.decode(self._inner, self._support, self.shape, self.dtype)
        return self._cache

    def lc_write_(self, other: LCTensor):
        """In-place update. Writes into the existing planes whenever they can hold the new value (so
        views and their bases stay aliased); a view cannot grow its support, which raises."""
        note_plane_write()
        mine = self._inner[0]
        planes = self._layout is _layouts.PLANES
        if planes and (other._support == self._support or set(other._support) <= set(self._support)):
            src = other._planes_view()
            if other._support != self._support:
                src = place(src, other._support, self._support, src.shape[1:])
            mine.copy_(src.expand(mine.shape))
        elif planes and self._lc_view:
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
            _adopt_support(self, other)
        self._zero = None
        self._order = other._order if self._order is None else max(self._order, other._order or self._order)
        self._exact = min_exact(self._exact, other._exact) if self._lc_view else other._exact
        self._cache = None

    def lc_restride_(self, other: LCTensor):
        """Shape-changing in-place view ops (squeeze_, t_, …): take other's shape and storage."""
        note_plane_write()
        with torch._C._DisableTorchDispatch():
            try:
                torch.Tensor.as_strided_(self, other.shape, other.stride())
            except RuntimeError:  # as_strided_ beyond the wrapper's own (data-less) storage: new one
                torch.Tensor.set_(self, _make_wrapper(LCTensor, other.shape, strides=other.stride(),
                                                      dtype=self.dtype, device=self.device))
        self._layout = other._layout
        self._zero = None
        self._set_inner(other._inner)
        _adopt_support(self, other)
        self._cache = None

    # -- torch.compile support ---------------------------------------------------------------------
    def __tensor_flatten__(self):
        names = list(self._layout.inner_names[: len(self._inner)])
        ctx = (self._layout.name, self._support, self._order, self._exact, self.dtype, _rulehash.RULES_HASH)
        return names, ctx

    @staticmethod
    def __tensor_unflatten__(inner_tensors, ctx, outer_size, outer_stride):
        layout, support, order, exact, dtype, _ = ctx
        inner = [inner_tensors[k] for k in sorted(inner_tensors)]
        return LCTensor(_layouts.get(layout), inner, support, order, exact, outer_size, dtype)

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return cls._dispatcher(func, args, kwargs or {})

    def __repr__(self, *, tensor_contents=None):
        return lc_repr(self)

    def __reduce_ex__(self, proto):
        return _rebuild, (self._planes_view(), self._support, self._order, self._exact)

    def requires_grad_(self, requires_grad: bool = True):
        """Make the coefficient planes autograd leaves that require grad (``False``: stop requiring
        it). An LCTensor never requires grad itself: its adjoint is not an LC product; gradients land
        on the planes (read them with ``torchlc.coeffs(x)`` kept from before, as ``x.grad`` (a dual
        series, see :func:`cotangent`), or make the planes ``nn.Parameter``s and build the LCTensor
        in forward with ``torchlc.from_terms``)."""
        for t in self._inner:
            # planes computed from others already require grad (non-leaves); only leaves can change
            if t.is_leaf and (t.is_floating_point() or t.is_complex()):
                t.requires_grad_(requires_grad)
            elif not requires_grad:
                raise RuntimeError("torchlc: cannot stop requiring grad on planes computed from other "
                                   "tensors (not autograd leaves); use x.detach()")
        return self

    # -- autograd seen from outside: an LCTensor is a container of planes --------------------------------
    # Autograd records on the coefficient planes ("inner" autograd): the wrapper itself is never in
    # the graph. Engines that look at a module's outputs from Python (FSDP2's pre-backward hooks,
    # which re-gather sharded parameters before their gradients are needed) see an LCTensor as
    # requiring grad when its planes do, and a hook registered on it is registered on those planes
    # (it receives the planes' gradient). Without this FSDP2 never re-gathers and backward fails.
    # ``grad_fn`` is the planes' node and ``grad`` their gradient as a dual series (see cotangent);
    # custom autograd.Functions on LCTensors run on the planes (torchlc._autograd).
    @property
    def requires_grad(self) -> bool:
        return any(t.requires_grad for t in self._inner)

    @requires_grad.setter
    def requires_grad(self, value: bool):
        self.requires_grad_(value)  # on the planes (Wav2Vec2's feature encoder sets it on its input)

    def register_hook(self, hook):
        """Register ``hook`` on the coefficient planes that require grad (it receives their gradient);
        returns a handle whose ``remove()`` removes it from all of them."""
        return _Handles([t.register_hook(hook) for t in self._inner if t.requires_grad])

    @property
    def grad_fn(self):
        """The autograd node that made the coefficient planes (None for leaves and non-planes storage)."""
        return self._inner[0].grad_fn if self._layout is _layouts.PLANES else None

    @property
    def grad(self):
        """The gradient accumulated on the coefficient planes (autograd leaves), as the dual series
        Σ_p (∂L/∂x_p) ε^(-p) (see :func:`cotangent`); None when the planes have none."""
        t = self._inner[0]
        if self._layout is not _layouts.PLANES or t.grad is None:
            return None
        return cotangent(t.grad, self._support, self._order)

    @grad.setter
    def grad(self, value):
        if self._layout is _layouts.PLANES:
            self._inner[0].grad = None if value is None else plane_gradients(value, self._support)
        elif value is not None:
            raise RuntimeError("torchlc: only an LCTensor stored as planes (one that requires grad) takes a .grad")

    def __bool__(self):
        raise TypeError(
            "the truth value of an LCTensor is ambiguous: compare it (x > 0 gives a plain bool "
            "tensor) or take torchlc.standard_part(x)"
        )

    def __float__(self):
        raise TypeError(_NOT_A_NUMBER.format(what="a Python float"))

    def __int__(self):
        raise TypeError(_NOT_A_NUMBER.format(what="a Python int") + " (floor/round of x are exact)")

    def __index__(self):
        raise TypeError(_NOT_A_NUMBER.format(what="an index"))

    def __complex__(self):
        raise TypeError(_NOT_A_NUMBER.format(what="a Python complex"))

    def item(self):
        raise TypeError(_NOT_A_NUMBER.format(what="a Python number (.item())"))

    def __format__(self, spec):
        if not spec:
            return repr(self)
        raise TypeError(_NOT_A_NUMBER.format(what=f"formatted with {spec!r}") + "; format the coefficients")

    def tolist(self):
        raise TypeError("LCTensor.tolist: use torchlc.terms(x) or torchlc.coeffs(x)")

    def numpy(self, *a, **k):
        raise TypeError("LCTensor.numpy: use torchlc.coeffs(x).numpy() (planes first)")
