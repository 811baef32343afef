"""Dispatch: the rule table, the one registration API, and the fallback chain.

Every aten op on an LCTensor arrives at :func:`dispatch` (installed as the tensor class's dispatcher
on import). It looks the op up in the rule table — by OpOverload, then by overload packet — and runs
the rule inside ``_RestorePythonTLSSnapshot`` so autograd records on the planes. Misses fall back, in
this order: an in-place op runs its functional variant and writes the result into the LCTensor's
storage; a CompositeImplicitAutograd op runs its decomposition; an op in ``torch._decomp`` runs that;
anything else raises ``NotImplementedError`` naming the op.

Rules register through one API, :func:`register` (or the decorator :func:`implements`), with a *kind*
that says what sort of rule it is (see :data:`KINDS`); registering an op twice raises
:class:`RegistrationError`. The kinds serve introspection and tests (every ``"decision"`` op is tested
for tie handling, every ``"per_plane"`` op for linearity, ...). Two kinds add behaviour:

* :func:`decomposed` registers ops that must run PyTorch's own decomposition on LC arguments;
* :func:`composite` registers rules for CompositeImplicitAutograd ops that the dispatcher would
  decompose above the Python key (F.linear, layer norm, attention, matmul, the recurrent layers): a
  kernel at the PythonTLSSnapshot key, which plain calls never reach, routes LC calls past the
  autograd keys to the rule.

Users add rules for their own linear custom ops with :func:`register_linear_op`
(``torchlc.register_linear_op``).
"""

from __future__ import annotations

import torch
import torch._decomp
import torch._prims_common as _prims_common

from . import _context
from . import _support as S
from ._algebra import Series, add
from ._tensor import (
    COMPLEX_SEEN,
    LCTensor,
    note_plane_write,
    read_planes,
    series,
    set_dispatcher,
    wrap,
)
from .layouts import NATIVE_SEEN

__all__ = [
    "KINDS", "RegistrationError", "register", "implements", "decomposed", "composite", "decompose_composite",
    "check_as_torch", "find_rule",
    "kind_of", "registered", "dispatch", "in_place_via_functional", "register_linear_op", "run_decomposition", "implements_complex", "COMPLEX_KINDS", "implements_layout",
]

aten = torch.ops.aten

KINDS = {
    "rule": "a general rule on series (arithmetic, products, reductions, ...)",
    "per_plane": "linear in its LC argument: the op runs on every coefficient plane",
    "structural": "data movement (views, indexing, joins): acts on the storage, terms alike",
    "analytic": "an analytic function from the Taylor table (torchlc._taylor)",
    "decision": "reads the field order (comparisons, selections, sorting, rounding)",
    "jet": "a first-order jet formula with a general decomposition for other inputs",
    "factory": "creates a tensor like an LC one (zeros_like, new_zeros, ...)",
    "decomposition": "runs PyTorch's own decomposition on LC arguments",
    "composite": "a CompositeImplicitAutograd op computed whole (LC calls skip its decomposition)",
}

_RULES: dict = {}
_KIND: dict = {}


class RegistrationError(RuntimeError):
    """An aten op was given a second LC rule (each op has exactly one)."""


def _describe(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def register(ops, rule, *, kind: str = "rule", replace: bool = False):
    """Make ``rule(func, *args, **kwargs)`` the LC rule of each aten op (OpOverload or packet) in
    ``ops``. Raises :class:`RegistrationError` if one already has a rule (unless ``replace``)."""
    if kind not in KINDS:
        raise ValueError(f"torchlc: unknown rule kind {kind!r}; choose one of {sorted(KINDS)}")
    for op in ops:
        if op in _RULES and not replace:
            raise RegistrationError(
                f"torchlc: {op} already has a rule ({_KIND[op]}: {_describe(_RULES[op])}); "
                f"cannot also register {_describe(rule)}. Each op has one rule: change that one."
            )
    for op in ops:
        _RULES[op] = rule
        _KIND[op] = kind
    return rule


def implements(ops, *, kind: str = "rule"):
    """Decorator form of :func:`register`: ``@implements([aten.sin.default], kind="analytic")``."""

    def deco(fn):
        return register(ops, fn, kind=kind)

    return deco


def kind_of(op):
    """The kind of op's rule (by OpOverload, then packet), or None when it has none."""
    kind = _KIND.get(op)
    if kind is None and hasattr(op, "overloadpacket"):
        kind = _KIND.get(op.overloadpacket)
    return kind


def registered(kind: str | None = None) -> list:
    """The ops with a rule (of ``kind``, if given), in registration order."""
    return [op for op, k in _KIND.items() if kind is None or k == kind]


def run_decomposition(func, *args, **kwargs):
    """``func`` through torch's own decomposition (``torch._decomp``): the rule of ops registered with
    :func:`decomposed`, and the general path of rules that have a fast case."""
    return torch._decomp.decomposition_table[func](*args, **kwargs)


def decomposed(ops):
    """Register ops whose LC rule is PyTorch's own decomposition (``torch._decomp``)."""
    missing = [op for op in ops if op not in torch._decomp.decomposition_table]
    if missing:
        raise RegistrationError(f"torchlc: no torch._decomp decomposition for {missing}")
    register(ops, run_decomposition, kind="decomposition")


# -- composites computed whole ---------------------------------------------------------------------------
# Under no_grad and with grad, PyTorch runs a CompositeImplicitAutograd op's decomposition at the autograd
# keys, so an LC call reaches the Python key in pieces: F.linear as t + addmm, F.layer_norm as
# native_layer_norm with statistics nobody asked for, F.scaled_dot_product_attention as a backend's
# kernel or, on the math backend, a dozen separate ops, an LSTM as its cells' matmuls and gates
# (inference_mode skips the autograd keys, and there they arrive whole). Each piece is a dispatch, and in
# eager mode dispatches are host time. A kernel at the PythonTLSSnapshot key, which only calls with a
# tensor subclass or a Python mode active reach (plain code never runs it), sends LC calls of these ops
# past the autograd keys to their rule, which then sees the composite whole in every grad mode; autograd
# records on the planes inside the rule as in any other. Every call, LC or not, goes on through PyTorch's
# own fallback for that key: it records the dispatch state on entry that the Python key's fallback
# restores (and asserts on, torch 2.11), so the kernel only narrows the key set it hands on.

_LIB = None  # torch.library.Library("aten", "IMPL"), made on first use and kept for the process
_CIA = torch._C.DispatchKey.CompositeImplicitAutograd


def _has_lc(args) -> bool:
    for a in args:
        if isinstance(a, LCTensor):
            return True
        if isinstance(a, (list, tuple)) and any(isinstance(t, LCTensor) for t in a):
            return True
    return False


def _library():
    global _LIB
    if _LIB is None:
        _LIB = torch.library.Library("aten", "IMPL")
    return _LIB


def _overload_name(op) -> str:
    return op._schema.name.split("::", 1)[1] + ("" if op._overloadname == "default" else "." + op._overloadname)


_BELOW_AUTOGRAD = (torch._C._dispatch_keyset_full().remove(torch._C.DispatchKey.AutogradFunctionality)
                   .remove(torch._C.DispatchKey.AutogradOther).remove(torch._C.DispatchKey.AutogradNestedTensor))
_SNAPSHOT_FALLBACKS: dict = {}  # op -> PyTorch's kernel at PythonTLSSnapshot, taken before ours replaces it


def _route_whole(op):
    if op not in _SNAPSHOT_FALLBACKS:
        _SNAPSHOT_FALLBACKS[op] = torch.library.get_kernel(op, "PythonTLSSnapshot")
    fallback = _SNAPSHOT_FALLBACKS[op]

    def kernel(keyset, *args, **kwargs):
        if _has_lc(args) or _has_lc(kwargs.values()):
            keyset = keyset & _BELOW_AUTOGRAD
        return fallback.call_boxed(keyset, *args, **kwargs)

    _library().impl(_overload_name(op), kernel, "PythonTLSSnapshot", with_keyset=True)


_NOT_DECOMPOSED_FOR_COMPLEX: set = set()  # composites whose decomposition cannot take LC arguments


def composite(ops, *, complex_decomposes: bool = True):
    """Decorator: ``rule`` computes the CompositeImplicitAutograd ops ``ops`` whole on LC arguments
    (kind ``"composite"``); LC calls no longer reach it decomposed (see above). A composite rule falls
    back to :func:`decompose_composite` for the inputs it does not cover; complex coefficients take
    the decomposition too, unless ``complex_decomposes=False`` (a decomposition that cannot run on LC
    arguments at all), when they raise the TypeError naming the op."""

    def deco(rule):
        for op in ops:
            if not torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd"):
                raise RegistrationError(f"torchlc: {op} is not a CompositeImplicitAutograd op")
        register(ops, rule, kind="composite")
        if not complex_decomposes:
            _NOT_DECOMPOSED_FOR_COMPLEX.update(ops)
        for op in ops:
            _route_whole(op)
        return rule

    return deco


def decompose_composite(func, *args, **kwargs):
    """PyTorch's own decomposition of a composite op, the C++ one that eager runs for plain calls (its
    pieces dispatch to their LC rules). Not ``func.decompose``, which prefers a Python decomposition
    where torch._decomp registered one: the recurrent layers' skips the dropout between layers."""
    return func._op_dk(_CIA, *args, **kwargs)


# -- complex coefficients ------------------------------------------------------------------------------
# An LCTensor may hold complex coefficients (an element of the Levi-Civita field over C). The field over
# C has no order, so an op with a complex LC operand runs only a rule that is valid there: its rule of
# this second table (:func:`implements_complex`), else its ordinary rule when that rule's kind is one of
# COMPLEX_KINDS (linear per plane, data movement, factories, torch's own decompositions, whose pieces
# dispatch again). Every other op (decisions, analytic functions, jets, ...) raises a TypeError naming
# itself and the dtype; an op without any rule takes the usual fallback chain.

COMPLEX_KINDS = frozenset({"per_plane", "structural", "factory", "decomposition"})
_COMPLEX_RULES: dict = {}


def implements_complex(ops):
    """Decorator: the rule of each op in ``ops`` for calls with an LCTensor of complex coefficients
    (one per op; a second registration raises :class:`RegistrationError`)."""

    def deco(fn):
        for op in ops:
            if op in _COMPLEX_RULES:
                raise RegistrationError(
                    f"torchlc: {op} already has a complex rule ({_describe(_COMPLEX_RULES[op])}); "
                    f"cannot also register {_describe(fn)}"
                )
        for op in ops:
            _COMPLEX_RULES[op] = fn
        return fn

    return deco


def _complex_operand(args):
    """The dtype of the first LCTensor operand with complex coefficients (None if there is none)."""
    for a in args:
        if isinstance(a, LCTensor):
            if a.dtype.is_complex:
                return a.dtype
        elif isinstance(a, (list, tuple)):
            for t in a:
                if isinstance(t, LCTensor) and t.dtype.is_complex:
                    return t.dtype
    return None


def _complex_rule(func, dtype):
    rule = _COMPLEX_RULES.get(func) or _COMPLEX_RULES.get(func.overloadpacket)
    if rule is not None:
        return rule
    rule = find_rule(func)
    if rule is not None and kind_of(func) == "composite" and func not in _NOT_DECOMPOSED_FOR_COMPLEX:
        return decompose_composite  # the pieces decide what complex coefficients may do
    if rule is not None and kind_of(func) not in COMPLEX_KINDS:
        raise TypeError(
            f"torchlc: {func.name()} on an LCTensor with complex coefficients ({dtype}) is not "
            "supported: complex LC tensors take linear ops, data movement, + − × ÷, real/imag/conj, "
            "abs/angle, view_as_real/complex/polar and the FFTs; decisions (comparisons, sign, "
            "sorting, rounding, max/min) and analytic functions need real coefficients. Work on "
            "x.real and x.imag (or torch.view_as_real(x)) instead"
        )
    return rule


# -- storage-native rules ------------------------------------------------------------------------------
# A layout may compute some ops on its own storage instead of on decoded planes (CSR: per-element
# exponent runs, torchlc.ops.ragged). Such rules live in a second table, per layout; dispatch consults
# it first when an operand is stored in that layout. A native rule returns NotImplemented to decline
# (autograd, complex, a case it does not cover), and the op takes the ordinary path below, which
# decodes to planes: nothing without a native rule changes behaviour.

_LAYOUT_RULES: dict = {}  # layout -> {aten op or packet: rule}


def implements_layout(layout, ops):
    """Decorator: the native rule of each op in ``ops`` for operands stored in ``layout`` (one per op
    and layout; a second registration raises :class:`RegistrationError`)."""

    def deco(fn):
        table = _LAYOUT_RULES.setdefault(layout, {})
        for op in ops:
            if op in table:
                raise RegistrationError(f"torchlc: {op} already has a {layout.name} rule ({_describe(table[op])})")
        for op in ops:
            table[op] = fn
        return fn

    return deco


def _layout_rule(func, args):
    """The native rule for the first LC operand whose layout has a table with ``func`` (None if none)."""
    for a in args:
        if isinstance(a, (list, tuple)):
            a = next((t for t in a if isinstance(t, LCTensor)), None)
        if isinstance(a, LCTensor) and (table := _LAYOUT_RULES.get(a._layout)) is not None:
            rule = table.get(func) or table.get(func.overloadpacket)
            if rule is not None:
                return rule
    return None


# -- dispatch --------------------------------------------------------------------------------------------
_DECOMP = torch._decomp.decomposition_table


def find_rule(func):
    """The rule for an aten op: by OpOverload, then by overload packet (None if neither)."""
    rule = _RULES.get(func)
    if rule is None:
        rule = _RULES.get(func.overloadpacket)
    return rule


_RESHAPING = {"squeeze_", "unsqueeze_", "t_", "transpose_", "swapaxes_", "swapdims_", "as_strided_"}


_FUNCTIONAL: dict = {}  # in-place op -> its out-of-place overload (or None); bounded by aten's ops


def _functional_variant(func):
    """The out-of-place overload of an in-place op (``add_.Tensor`` → ``add.Tensor``), or None."""
    try:
        return _FUNCTIONAL[func]
    except KeyError:
        res = _FUNCTIONAL[func] = _find_functional_variant(func)
        return res


def _find_functional_variant(func):
    name = func.overloadpacket.__name__
    if not name.endswith("_") or name.startswith("_"):
        return None
    packet = getattr(aten, name[:-1], None)
    if packet is None:
        return None
    # match by argument types, not by overload name (pow_.Scalar is pow.Tensor_Scalar)
    want = [str(a.type) for a in func._schema.arguments]
    for ov in packet.overloads():
        cand = getattr(packet, ov)
        if [str(a.type) for a in cand._schema.arguments] == want:
            return cand
    return None


def _plain_destination(func) -> TypeError:
    return TypeError(
        f"torchlc: {func.name()} would write LCTensor values into a plain tensor, which cannot "
        "hold them; create the destination from the LCTensor instead, e.g. lc.new_zeros(shape) "
        "or torch.zeros_like(lc), or use the out-of-place op"
    )


def in_place_via_functional(func, args, kwargs):
    """An in-place op on an LCTensor ``args[0]`` by its functional variant: compute out of place, then
    write into self's storage (the general path of in-place ops; rules with an in-place fast path
    call it for the other cases). Runs where rules run (the Python TLS restored: ops on LCTensors
    dispatch again). None when the op has no functional variant."""
    if not isinstance(args[0], LCTensor):
        raise _plain_destination(func)
    functional = _functional_variant(func)
    if functional is None:
        return None
    # in-place on an LCTensor: compute out of place, then write into self's storage. When
    # autograd records, the out-of-place result's graph may hold self's planes (h / h.sum()):
    # compute it from a copy, as torch's in-place ops do, so writing into self does not
    # modify a tensor the backward needs
    fargs = args
    reshaping = func.overloadpacket.__name__ in _RESHAPING  # views: never from a copy
    if not reshaping and torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args
    ):
        snap = aten.clone.default(args[0])
        fargs = tuple(snap if a is args[0] else a for a in args)
    res = functional(*fargs, **kwargs)
    if not isinstance(res, LCTensor):
        res = wrap(res.unsqueeze(0).to(args[0].dtype), (S.ZERO,), args[0].lc_order, None)
    elif res.dtype != args[0].dtype:
        res = res.to(args[0].dtype)
    if reshaping:
        # an in-place view op (also one that keeps the shape: transpose_ of a square
        # matrix): self takes the view's strides and storage, nothing is copied
        args[0].lc_restride_(res)
        return args[0]
    if tuple(res.shape) != tuple(args[0].shape):
        raise RuntimeError(
            f"torchlc: in-place {func.name()} would change the shape {tuple(args[0].shape)} "
            f"to {tuple(res.shape)}"
        )
    args[0].lc_write_(res)  # with the TLS restored, autograd records the write into the planes
    return args[0]


_MUTATES: dict = {}  # op -> whether it writes into an argument; bounded by the ops that exist


# -- type promotion ------------------------------------------------------------------------------
# Elementwise ops whose operands torch brings to one dtype by its type promotion, where 0-d tensors
# and Python numbers act as scalars (a float64 0-d tensor does not make a float32 tensor float64). The
# rules compute on planes, where an LC operand of 0-d elements and a plain 0-d operand (as a Series)
# are 1-d, and so would promote as dimensioned tensors; and several rules compute in their LC
# operand's dtype. So promotion is decided here, once, on the elements: tensor operands whose dtype is
# not torch's result dtype for them are converted before the rule runs. op -> positions of the operands
_PROMOTED = {
    op: (1, 2) if op is aten.where.self else (0, 1)
    for op in (
        aten.add.Tensor, aten.sub.Tensor, aten.rsub.Tensor, aten.mul.Tensor, aten.div.Tensor,
        aten.div.Tensor_mode, aten.true_divide.Tensor, aten.pow.Tensor_Tensor, aten.maximum.default,
        aten.minimum.default, aten.fmax.default, aten.fmin.default, aten.atan2.default,
        aten.arctan2.default, aten.hypot.default, aten.copysign.Tensor, aten.fmod.Tensor,
        aten.remainder.Tensor, aten.xlogy.Tensor, aten.floor_divide.default, aten.where.self,
        aten.eq.Tensor, aten.ne.Tensor, aten.lt.Tensor, aten.le.Tensor, aten.gt.Tensor, aten.ge.Tensor,
    )
}
_PROMOTED[aten.clamp.Tensor] = (0, 1, 2)  # self, min, max (min or max may be None)
_BOOL_REFUSED = {aten.sub.Tensor, aten.rsub.Tensor}
_DEFAULT_PROMOTION = _prims_common.ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT
_REALS = (bool, int, float)
_RESULT_DTYPE: dict = {}  # operand kinds -> torch's result dtype; bounded (cleared when full)


def _promotion_kind(x):
    """What torch's promotion sees of an operand: a tensor's dtype and whether it is 0-d, a number's
    type (None: not an operand that promotes)."""
    if isinstance(x, torch.Tensor):
        return x.dtype, x.dim() == 0
    return type(x) if type(x) in (bool, int, float, complex) else None


def _stand_in(kind):
    if isinstance(kind, tuple):
        return torch.empty(() if kind[1] else (0,), dtype=kind[0], device="meta")
    return kind(1)


def _promoted(func, pos, args):
    """``args`` with the operands at ``pos`` (``_PROMOTED[func]``) converted to torch's result dtype
    for them (the same args when nothing changes)."""
    if len(pos) == 2 and len(args) > pos[1]:
        # the common cases first, in a few attribute reads (this runs for every add and mul)
        a, b = args[pos[0]], args[pos[1]]
        da = a.dtype if isinstance(a, torch.Tensor) else None
        db = b.dtype if isinstance(b, torch.Tensor) else None
        if da is db and da is not None and da is not torch.bool:
            return args  # one dtype
        if (db is None and da is not None and type(b) in _REALS and da.is_floating_point) or (
                da is None and db is not None and type(a) in _REALS and db.is_floating_point):
            return args  # a real number beside a floating tensor never changes its dtype
    pos = [k for k in pos if k < len(args) and args[k] is not None]
    ops = [args[k] for k in pos]
    if func in _BOOL_REFUSED and any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in ops):
        # torch's refusal, word for word (promoted, the bool tensor would silently become a number)
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying "
                           "to invert a mask, use the `~` or `logical_not()` operator instead.")
    if len(ops) < 2:
        return args
    kinds = tuple(_promotion_kind(t) for t in ops)
    if None in kinds:
        return args
    dtype = _RESULT_DTYPE.get(kinds)
    if dtype is None:
        if len(_RESULT_DTYPE) > 1024:
            _RESULT_DTYPE.clear()
        stand_ins = [_stand_in(k) for k in kinds]
        dtype = _RESULT_DTYPE[kinds] = (torch.result_type(*stand_ins) if len(stand_ins) == 2 else
                                        _prims_common.elementwise_dtypes(
                                            *stand_ins, type_promotion_kind=_DEFAULT_PROMOTION)[1])
    if all(not isinstance(t, torch.Tensor) or t.dtype == dtype for t in ops):
        return args
    args = list(args)
    with torch._C._RestorePythonTLSSnapshot():  # where rules run: ops on LCTensors dispatch again
        for k in pos:
            t = args[k]
            if isinstance(t, torch.Tensor) and t.dtype != dtype:
                args[k] = aten._to_copy.default(t, dtype=dtype) if isinstance(t, LCTensor) else t.to(dtype)
    return tuple(args)


# -- torch's own errors for arguments torch refuses ---------------------------------------------------
# A rule computes on planes, whose shapes have one dim more than the elements', and some read their
# shapes off the planes: with arguments torch refuses, a rule could fail with an error about the planes
# ("6x4" for a 3x4 input), crash with an IndexError, or (worst) compute something. Rules that take a
# shape from their arguments check it with check_as_torch; and when a rule fails with a plain error
# type, dispatch asks torch whether it accepts the arguments at all, and raises torch's error, word for
# word, when it does not (a rule's genuine failure on arguments torch accepts is raised as it was).
# Nothing of this runs unless a rule fails.

# the exception types a failure on refused arguments shows up as; exactly these (their subclasses are
# someone's own signal: torchlc's TruncationError, DomainError and TermBudgetError, torch's linalg and
# out-of-memory errors, and control flow such as non-reentrant checkpointing's early stop)
_ARGUMENT_ERRORS = frozenset({RuntimeError, IndexError, ValueError, TypeError, AssertionError, AttributeError,
                              KeyError})


def _plain_stand_in(t):
    """A plain tensor for an LCTensor argument: its standard part (the ε⁰ plane, a view with the
    element strides; zeros when it has none), so that checks of values (a singular matrix, an index)
    and of strides (a view) see what torch would."""
    if isinstance(t, LCTensor):
        s = series(t)
        if S.ZERO in s.support:
            return s.planes[s.support.index(S.ZERO)].detach()
        return torch.zeros(t.shape, dtype=t.dtype, device=t.device)
    if isinstance(t, (list, tuple)) and any(isinstance(u, LCTensor) for u in t):
        return type(t)(_plain_stand_in(u) for u in t)
    return t


# ops whose checks depend on the storage itself (offsets and sizes in elements of the storage), which
# a stand-in does not share with the LC tensor: their rules' own errors stand
_STORAGE_OPS = frozenset({"as_strided", "as_strided_", "as_strided_scatter", "as_strided_copy", "set_"})


def check_as_torch(func, *args, **kwargs) -> None:
    """Run ``func`` with each LCTensor argument replaced by its standard part, a plain tensor of the
    same shape and strides (the error path only: it may run the kernel): arguments torch refuses raise
    torch's own error, word for word, instead of one about the planes. Returns when torch accepts
    them."""
    # in the caller's grad mode: torch's checks (and so its messages) differ with autograd on
    func(*[_plain_stand_in(a) for a in args], **{k: _plain_stand_in(v) for k, v in kwargs.items()})


_META_CHECKED: dict = {}  # call signatures torch's meta kernels accepted (bounded: cleared when full)
_META_CHECKED_MAX = 1024


def check_on_meta(func, *args, **kwargs) -> None:
    """torch's own argument checks for a call, from its meta kernel on stand-ins of the tensor
    arguments (shape, dtype and strides, no data), once per call signature: arguments torch refuses
    raise torch's error, word for word. For rules that compute from the arguments themselves (window
    arithmetic) and would otherwise accept what torch refuses; a few µs per call after the first.
    Skipped while tracing (the stand-in call would join the trace)."""
    if _context.tracing():
        return
    key = (func, *(_signature(a) for a in args), *((k, _signature(v)) for k, v in kwargs.items()))
    if key in _META_CHECKED:
        return
    meta = [_meta_stand_in(a) for a in args]
    func(*meta, **{k: _meta_stand_in(v) for k, v in kwargs.items()})
    if len(_META_CHECKED) >= _META_CHECKED_MAX:
        _META_CHECKED.clear()
    _META_CHECKED[key] = True


def _signature(a):
    if isinstance(a, torch.Tensor):
        return (tuple(a.shape), a.stride(), a.dtype, a.device.type)
    if isinstance(a, (list, tuple)):
        return tuple(_signature(u) for u in a)
    return a


def _meta_stand_in(a):
    if isinstance(a, torch.Tensor):
        return torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="meta")
    if isinstance(a, (list, tuple)) and any(isinstance(u, torch.Tensor) for u in a):
        return type(a)(_meta_stand_in(u) for u in a)
    return a


def _raise_torchs_error(func, args, kwargs, error) -> None:
    """torch's error for these arguments, if torch refuses them (else returns), when ``error`` is one
    that refused arguments cause. Not for ops that write into an argument (the stand-in call would
    write into plain arguments), nor while tracing (the stand-in call would join the trace)."""
    if (type(error) not in _ARGUMENT_ERRORS or func._schema.is_mutable or func.overloadpacket.__name__ in _STORAGE_OPS
            or _context.tracing() or any(_context.traced_tensor(t) for t in _flat_tensors(args, kwargs))):
        return
    try:
        check_as_torch(func, *args, **kwargs)
    except Exception as refused:
        raise refused.with_traceback(None) from None


def _flat_tensors(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield read_planes(a) if isinstance(a, LCTensor) else a
        elif isinstance(a, (list, tuple)):
            yield from (read_planes(t) if isinstance(t, LCTensor) else t for t in a if isinstance(t, torch.Tensor))


def dispatch(func, args, kwargs):
    mutable = _MUTATES.get(func)
    if mutable is None:
        mutable = _MUTATES[func] = func._schema.is_mutable
    if mutable:
        note_plane_write()  # before the write: facts on planes without a version counter lapse
    # storage-native rules (CSR): one list read on the dense path until a CSR tensor exists
    if NATIVE_SEEN[0] and (native := _layout_rule(func, args)) is not None:
        with torch._C._RestorePythonTLSSnapshot():
            res = native(func, *args, **kwargs)
        if res is not NotImplemented:
            return res
    if (pos := _PROMOTED.get(func)) is not None:
        args = _promoted(func, pos, args)
    if COMPLEX_SEEN[0] and (dtype := _complex_operand(args)) is not None:
        rule = _complex_rule(func, dtype)
    else:
        rule = find_rule(func)
    if rule is not None:
        with torch._C._RestorePythonTLSSnapshot():
            try:
                return rule(func, *args, **kwargs)
            except Exception as error:
                _raise_torchs_error(func, args, kwargs, error)
                raise
    if mutable and args and isinstance(args[0], LCTensor):
        with torch._C._RestorePythonTLSSnapshot():
            res = in_place_via_functional(func, args, kwargs)
        if res is not None:
            return res
        if func.overloadpacket.__name__.endswith("_") or "out" in func._overloadname:
            raise NotImplementedError(f"torchlc: in-place/out= op {func.name()} on an LCTensor has no rule")
    if mutable and args and not isinstance(args[0], LCTensor):
        raise _plain_destination(func)
    with torch._C._RestorePythonTLSSnapshot():
        try:
            out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            decomp = _DECOMP.get(func)
            if decomp is not None:
                return decomp(*args, **kwargs)
        except Exception as error:  # torch's decompositions check less, or with asserts
            _raise_torchs_error(func, args, kwargs, error)
            raise
    raise NotImplementedError(
        f"torchlc: {func.name()} has no rule for LCTensor inputs (and no decomposition). "
        "Please open an issue naming this op; as a workaround, compute it on torchlc.coeffs(x)."
    )


set_dispatcher(dispatch)


def register_linear_op(op, *, lc_arg: int = 0, bias_arg: int | None = None, replace: bool = False):
    """Give a custom op that is linear in argument ``lc_arg`` an LCTensor rule: the op runs on every
    coefficient plane, with the bias argument (if any) only on the ε⁰ plane (zeros elsewhere).

    Registering an op that already has a rule raises ``RegistrationError``; pass ``replace=True`` to
    replace a rule registered earlier with this function (e.g. when re-running a notebook cell).

    Example:
        >>> import torch, torchlc
        >>> @torch.library.custom_op("demo::scale3", mutates_args=())
        ... def scale3(x: torch.Tensor) -> torch.Tensor:
        ...     return 3 * x
        >>> @scale3.register_fake
        ... def _(x):
        ...     return torch.empty_like(x)
        >>> torchlc.register_linear_op(torch.ops.demo.scale3.default)
        >>> torch.ops.demo.scale3(torch.tensor([1.0]).nonstd())
        LCTensor([3.0 + 3.0ε], order=1)
    """
    def rule(func, *args, **kwargs):
        args = list(args)
        others = [i for i, a in enumerate(args) if isinstance(a, LCTensor) and i != lc_arg]
        if others:
            raise NotImplementedError(
                f"torchlc: {func.name()} is registered as linear in argument {lc_arg} only, "
                f"but argument(s) {others} are LCTensors too"
            )
        s = series(args[lc_arg])
        if bias_arg is not None and args[bias_arg] is not None and S.ZERO not in s.support:
            s = add(s, Series(s.planes.new_zeros((1, *s.shape)), (S.ZERO,)))
        outs = []
        for q, p in zip(s.support, s.planes):
            a = list(args)
            a[lc_arg] = p
            if bias_arg is not None and a[bias_arg] is not None and q != 0:
                a[bias_arg] = torch.zeros_like(a[bias_arg])
            outs.append(func(*a, **kwargs))
        return wrap(torch.stack(outs), s.support, s.order, s.exact)

    try:
        register([op], rule, kind="per_plane", replace=replace)
    except RegistrationError as e:
        raise RegistrationError(
            f"{e} To replace a rule you registered earlier with register_linear_op, pass replace=True."
        ) from None
    return op
