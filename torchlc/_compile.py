"""``torchlc.compile``: torch.compile for training code on LC tensors.

torch.compile of LC-in/LC-out functions works directly under ``torch.no_grad()``. With autograd on,
AOTAutograd would trace the *outer* (wrapper-level) joint graph, which is not the LC adjoint, and
Dynamo cannot build LCTensors inside a graph. So this wrapper keeps the compiled region's boundaries
plain: the function is traced with ``make_fx`` on the coefficient planes (LCTensors are rebuilt and
taken apart in Python, outside Dynamo), the tensors of modules and closures it reads (parameters,
buffers, captured tensors) are lifted to graph inputs, and the resulting plain aten graph is compiled
(by Inductor directly, or through ``torch.compile`` for other backends and CUDA graphs; see
``_compile_graph``). Gradients flow exactly as in eager mode.

What a trace bakes in, and what keys or guards it (no Dynamo guards it for us):

* **Inputs**: supports, orders, shapes, strides, dtypes, devices, ``requires_grad`` and the pytree
  structure of the arguments; non-tensor arguments by value. Tensor *values* are read at run time.
* **Global state**: grad mode (inference-mode trace without grad), autocast, the default dtype, and
  every torchlc mode through ``_context.snapshot()``: forced layout and smoothing (width and kernel)
  change the rules' results. ``torchlc.strict()`` calls run **eagerly**: strict mode exists to raise
  :class:`~torchlc.errors.DomainError` at the op that left the field, which needs a host check per
  checked op (what compiling removes) and messages computed on the host; falling back gives exactly
  eager's errors and, without one, eager's results (which the graph would give too).
* **Module and closure state** (``_read_state``, read on every call: about 1-2 µs of host time per
  module on a CPU): of each ``nn.Module`` reached (``fn`` itself, a bound method's ``self``, or found
  in the closure cells, defaults and the globals the code names, recursively through user functions,
  ``functools.partial``, tuples/lists/dicts of up to 64 items, submodules and module attributes): its
  class, ``training`` flag and other Python-scalar attributes, forward hooks, and the identity and
  ``requires_grad`` of every parameter and buffer; Python scalars/strings (and containers of them)
  by value; plain tensors by identity and ``requires_grad``. The ``forward`` of a user's module class
  is walked like a function. Not keyed: values reached through attributes of other objects
  (``cfg.scale`` of a dataclass, ``mylib.SCALE``), the code of torch and torchlc themselves, and
  backward hooks.
* **Tensor values**: every module/closure tensor the graph uses is lifted to a graph *input*, not
  only those that require grad: so in-place updates (optimizer steps, running statistics, a
  user's ``buf.mul_(2)``) are read at run time, need no key (an optimizer step must not trace
  again) and survive a compiler's constant folding, and a graph that mutates one (BatchNorm in
  train mode) mutates an input. Only values the *trace* read on the host are baked in: a reachable
  tensor that ``fn`` reads with ``.item()``/``float(t)``/``bool(t)`` or passes to an op whose output
  shape its values fix (``nonzero``, a boolean mask) is guarded by its version counter: an in-place
  change traces again (``_TraceWatch`` sees these ops). It sees ``fn``'s own ops only, not those of
  the rules, so rules that read a plain operand's values on the host are listed in
  ``_VALUE_OPERANDS``; one does: exponent tensors of ``x ** e`` fix the result's support
  (``ops.arithmetic.pow_tensor`` groups the elements by exponent value), so the trace hands the
  rule a constant copy of ``e``; a module/closure
  ``e`` is then version-guarded, any other (an argument, or computed in ``fn``) is *speculated*: the
  graph checks that its values are those seen, like the other data-dependent decisions below. Not
  caught: ``.tolist()``/``.numpy()`` reads of a captured tensor in ``fn`` (no op is dispatched).

Data-dependent decisions (which plane leads each element in a reciprocal or power, whether a
comparison on truncated inputs is decidable) are *speculated* from the inputs seen at trace time
and verified inside the graph: the compiled function returns one extra flag, checked once per call,
and on a mismatch the call runs eagerly (tensors the graph mutated are restored first), so results
are always those of eager mode. The trace itself runs ``fn`` once on real tensors: inputs are
cloned for it, and buffers and captured tensors it mutates (BatchNorm's running statistics in train
mode) are restored afterwards, so a call mutates state once, as eager does.

The cache of one compiled function is an LRU of ``cache_size`` entries (``torchlc.compile(...,
cache_size=n)``; default :data:`CACHE_SIZE`, env ``TORCHLC_COMPILE_CACHE_SIZE``). After
:data:`RECOMPILE_LIMIT` traces (env ``TORCHLC_COMPILE_RECOMPILE_LIMIT``) it warns once, naming what
changed in the key, as Dynamo's recompile limit does (and keeps compiling).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings
from collections import OrderedDict

import torch
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing, make_fx
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from . import _context, _plane_passes
from ._compile_state import _read_state
from ._context import speculate, speculation_record
from ._tensor import LCTensor, note_plane_write, wrap
from .ops import transformer as _transformer_rules

__all__ = ["compile", "CACHE_SIZE", "RECOMPILE_LIMIT"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


#: Traced graphs kept per compiled function (least recently used go first); ``cache_size=`` overrides.
CACHE_SIZE = _env_int("TORCHLC_COMPILE_CACHE_SIZE", 64)
#: Traces of one compiled function after which it warns (once), like Dynamo's ``recompile_limit``.
RECOMPILE_LIMIT = _env_int("TORCHLC_COMPILE_RECOMPILE_LIMIT", 8)
#: Whether graphs for Inductor get the plane passes (:mod:`torchlc._plane_passes`: exact rewrites, the
#: same numbers); env ``TORCHLC_COMPILE_PLANE_PASSES=0`` turns them off, to compare or to debug.
PLANE_PASSES = bool(_env_int("TORCHLC_COMPILE_PLANE_PASSES", 1))

aten = torch.ops.aten

# make_fx traces under a torch-function mode that records metadata; under any such mode
# has_torch_function() is true, so torch.nn's fused eval fast paths (TransformerEncoderLayer,
# MultiheadAttention) are skipped in the trace although eager mode and torch.compile take them.
# Without the mode (an option since torch 2.11/2.12) the trace takes them as eager does: that is
# wanted where the fused layers trace to opaque hand-fused jets (CUDA); on the CPU the composite path's
# formulas compile better (TransformerEncoder d 256, 4 layers, batch 8: 160 ms against 375 ms).
_FAST_PATH_OPTIONS = (
    {"_disable_torch_fn_metadata_mode": True}
    if "_disable_torch_fn_metadata_mode" in inspect.signature(make_fx).parameters
    else {}
)


@contextlib.contextmanager
def _compiling_flag():
    """``torch.compiler.is_compiling()`` is true while ``fn`` is traced, as under torch.export.

    Libraries branch on it to stay traceable: transformers' mask construction reads a tensor on the
    host (``(mask[:, -1] == 0).all()``, to detect packed sequences) unless it is set, and a host read of
    a traced tensor cannot be traced. torch.export sets the same module flag the same way; without it
    (torch versions that lack it) the trace proceeds as before. Like torch.export's, the flag is
    process-wide (PyTorch reads a module global): code running eagerly in another thread during a
    trace sees it too, and takes its trace-safe branch (for transformers: the packed-sequence mask
    computed rather than skipped, the same values).
    """
    if not hasattr(torch.compiler, "_is_compiling_flag"):
        yield
        return
    before = torch.compiler._is_compiling_flag
    torch.compiler._is_compiling_flag = True
    try:
        yield
    finally:
        torch.compiler._is_compiling_flag = before


def _make_fx_options(leaves) -> dict:
    opaque = _transformer_rules.OPAQUE_ENCODER_DEVICES
    return _FAST_PATH_OPTIONS if any(t.device.type in opaque for t in leaves) else {}


def _meta(x: LCTensor):
    return (x.lc_support, x.lc_order, x.lc_exact)


def _leaf_key(a):
    if isinstance(a, LCTensor):
        p = a._planes_view()
        return ("lc", _meta(a), p.shape, p.stride(), p.dtype, p.device, p.requires_grad)
    if isinstance(a, torch.Tensor):
        return ("t", a.shape, a.stride(), a.dtype, a.device, a.requires_grad)
    return ("c", a)


_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def _global_state():
    """What else a trace depends on outside torchlc: autocast (which casts inside the rules) and the
    default dtype (``torch.tensor(0.5)`` in ``fn``). Grad mode and torchlc's modes are keyed
    separately."""
    autocast = _any_autocast() and tuple(
        (d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cpu", "cuda")
    )
    return (autocast, torch.get_default_dtype())


def _flatten_inputs(args, kwargs):
    """Leaves and structure of a call; positional tensors only (the usual ``f(x)``) skip pytree, whose
    flatten/unflatten would cost more than the compiled graph's launch for small models."""
    if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
        return list(args), len(args)
    return tree_flatten((args, kwargs))


def _unflatten_inputs(flat, spec):
    if isinstance(spec, int):
        return tuple(flat), {}
    return tree_unflatten(flat, spec)


# -- tracing ------------------------------------------------------------------------------------------

# ops whose rule reads a plain tensor operand's values on the host: those values fix the support
# (pow_tensor groups the elements by exponent value); positions of such operands
_VALUE_OPERANDS = {aten.pow.Tensor_Tensor: 1, aten.pow_.Tensor: 1}
# ops whose results (values or shape) the trace takes from their operands' values: .item(), float(t),
# bool(t) (_local_scalar_dense), nonzero, unique, boolean-mask indexing
_DATA_DEPENDENT = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)


class _TraceWatch(TorchDispatchMode):
    """Active while ``fn`` is traced, above make_fx's proxy mode, so it sees the ops ``fn`` itself calls:

    * a host read (``.item()``, ``float(t)``, ``bool(t)``) of a state tensor, or an op whose output
      shape its values fix (``nonzero``, ``unique``, a boolean mask), marks it as read (its version
      then guards the entry);
    * a pow of an LC base by a plain exponent tensor gets a constant copy of the exponent (the rule
      may read it on the host); a state exponent is marked read, any other is speculated: the graph
      checks that the exponent's values at run time are those seen.
    """

    def __init__(self, state_ids):
        super().__init__()
        self.state_ids = state_ids
        self.read: set = set()

    def __torch_dispatch__(self, func, _types, args=(), kwargs=None):
        kwargs = kwargs or {}
        pos = _VALUE_OPERANDS.get(func)
        if pos is not None and len(args) > pos:
            e = args[pos]
            if isinstance(e, torch.Tensor) and type(e) is not LCTensor and any(type(a) is LCTensor for a in args):
                args = (*args[:pos], self._constant(e), *args[pos + 1:])
        elif self.state_ids and any(tag in getattr(func, "tags", ()) for tag in _DATA_DEPENDENT):
            for a in tree_flatten((args, kwargs))[0]:
                if isinstance(a, torch.Tensor) and id(a) in self.state_ids:
                    self.read.add(id(a))
        return func(*args, **kwargs)

    def _constant(self, e):
        with disable_proxy_modes_tracing():
            seen = e.detach().clone()
        if id(e) in self.state_ids:
            self.read.add(id(e))
            return seen
        rec = speculation_record()
        if rec is not None:  # NaN == NaN here: an exponent NaN seen again is the same decision
            differs = (e.detach() != seen) & ~(torch.isnan(e.detach()) & torch.isnan(seen))
            rec.append(differs.any())
        return seen


def _lift_constants(gm, state_ids):
    """Turn tensors the trace baked in as constants into graph inputs: those that require grad (so
    gradients reach them) and every module/closure tensor (so in-place updates are read at run time,
    and a graph that mutates one, BatchNorm's running statistics, mutates an input)."""
    lifted, names = [], set()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    anchor = placeholders[-1] if placeholders else None
    for node in list(gm.graph.nodes):
        if node.op != "get_attr":
            continue
        t = getattr(gm, node.target)
        if isinstance(t, torch.Tensor) and (t.requires_grad or id(t) in state_ids):
            ctx = gm.graph.inserting_after(anchor) if anchor is not None else gm.graph.inserting_before(node)
            with ctx:
                ph = gm.graph.placeholder(f"lifted_{len(lifted)}")
            ph.meta.update(node.meta)  # the fake value, for graph passes that read it
            anchor = ph
            node.replace_all_uses_with(ph)
            gm.graph.erase_node(node)
            lifted.append(t)
            names.add(node.target)
    for name in names:  # or a compiler would take them as inputs of the graph a second time
        delattr(gm, name)
    gm.graph.lint()
    gm.recompile()
    return lifted


class _Entry:
    """One compiled graph: the callable, the tensors appended to its inputs, the output metadata, the
    state tensors it was traced with (kept alive: their ids are in the key), the indices of those
    whose versions guard it and the versions, and what it mutates (restored before an eager rerun)."""

    __slots__ = ("fn", "lifted", "meta", "state", "guard", "versions", "mut_leaves", "mut_state")

    def __init__(self, fn, lifted, meta, state, guard, mut_leaves, mut_state):
        self.fn, self.lifted, self.meta, self.state = fn, lifted, meta, state
        self.guard = guard
        self.versions = [state[i]._version for i in guard]
        self.mut_leaves, self.mut_state = mut_leaves, mut_state


def _trace(fn, flat, spec, tensor_pos, leaves, grad, compile_kwargs, state) -> _Entry:
    """Trace ``fn`` on the planes of one input signature and compile the plain graph."""
    out_meta = {}
    state_ids = {id(t) for t in state}
    watch = _TraceWatch(state_ids)

    def inner(*tensors):
        rebuilt = list(flat)
        for i, t in zip(tensor_pos, tensors):
            a = flat[i]
            rebuilt[i] = wrap(t, *_meta(a)) if isinstance(a, LCTensor) else t
        a, k = _unflatten_inputs(rebuilt, spec)
        with watch:
            res = fn(*a, **k)
        out_flat, out_spec = tree_flatten(res)
        out_meta["spec"] = None if isinstance(res, torch.Tensor) else out_spec  # None: one tensor
        out_meta["lc"] = {j: _meta(o) for j, o in enumerate(out_flat) if isinstance(o, LCTensor)}
        outs = [o._planes_view() if isinstance(o, LCTensor) else o for o in out_flat]
        # data-dependent decisions were taken from the example inputs: one flag says
        # whether these inputs would decide differently
        flags = [f.reshape(1) for f in spec_flags]
        out_meta["checked"] = bool(flags)
        if not flags:  # nothing speculated: no flag, so no host sync per call
            return outs
        return outs + [torch.cat(flags).any()]

    # the trace runs fn on real tensors: on clones of the inputs, and on the state itself, whose
    # mutations (running statistics) are undone afterwards so that a call mutates it once
    before = [t._version for t in state]
    saved = {i: t.detach().clone() for i, t in enumerate(state) if not isinstance(t, torch.nn.Parameter)}
    examples = [t.detach().clone() for t in leaves]
    before_leaves = [t._version for t in examples]
    # with grad off nothing will differentiate the graph, so it is traced in inference mode: the
    # composites (scaled_dot_product_attention, linear, ...) then reach the LC rules whole and
    # trace to their jets (attention: two GEMMs per product) instead of to their decompositions
    trace_mode = torch.no_grad() if grad else torch.inference_mode()
    try:
        with speculate() as spec_flags, trace_mode, _compiling_flag():
            gm = make_fx(inner, **_make_fx_options(leaves))(*examples)
    finally:
        mut_state = tuple(i for i, t in enumerate(state) if t._version != before[i])
        with torch.no_grad():
            for i in mut_state:
                if i in saved:
                    state[i].copy_(saved[i])
    mut_leaves = tuple(i for i, t in enumerate(examples) if t._version != before_leaves[i])
    # what only the host read (torch.unique of an exponent, then .tolist()) is dead in the graph, and a
    # compiler could not run it (data-dependent output shapes); mutations and random ops stay
    gm.graph.eliminate_dead_code()
    lifted = _lift_constants(gm, state_ids)
    # guarded by version: the tensors whose values the trace read on the host. Not those the graph
    # merely does not use: eval-mode BatchNorm leaves num_batches_tracked alone, and guarding it would
    # trace the eval graph again after every training epoch
    guard = tuple(i for i, t in enumerate(state) if id(t) in watch.read)
    compiled = _compile_graph(gm, [*leaves, *lifted], lifted, compile_kwargs)
    return _Entry(compiled, lifted, out_meta, state, guard, mut_leaves, mut_state)


def _compile_graph(gm, example_inputs, lifted, compile_kwargs):
    """The traced graph, compiled as ``torch.compile(**compile_kwargs)`` would compile it.

    Inductor without CUDA graphs compiles the graph directly (``torch._inductor.compile``), without
    Dynamo: the graph is already traced, and the wrapper's cache key and guards are its guard, so
    Dynamo's frame evaluation and guards would only add host time to each call (~50-100 µs measured
    for a 4-layer MLP on the dev VM's CPU). Other backends, and CUDA graphs, whose trees rely on
    Dynamo's record of which inputs are parameters, go through ``torch.compile``.
    """
    kw = compile_kwargs
    mode, options = kw.get("mode"), kw.get("options")
    if kw.get("disable", False):
        return gm.forward
    if kw.get("backend", "inductor") == "inductor":
        if PLANE_PASSES:
            _plane_passes.functional_copies(gm)
            _plane_passes.unroll_plane_broadcasts(gm)
            _plane_passes.push_selects(gm)
        _channels_last_plane_merges(gm, example_inputs)
    # mode and options together: torch.compile's own error
    if kw.get("backend", "inductor") == "inductor" and (mode is None or options is None):
        from torch import _inductor

        config = {**_inductor.list_mode_options(mode or "default", kw.get("dynamic")), **(options or {})}
        if not config.get("triton.cudagraphs", False):
            return _inductor.compile(gm, example_inputs, options=config)
    for t in lifted:
        # parameters and buffers keep their address across calls: CUDA graphs (mode="reduce-overhead")
        # then read them in place instead of copying each into a static buffer every call
        torch._dynamo.mark_static_address(t)
    # the bound forward, not the module: calls skip nn.Module.__call__ and its hooks (~20 µs
    # of host time per call measured for a small MLP on CPU)
    return torch.compile(gm.forward, **compile_kwargs)


def _channels_last_plane_merges(gm, example_inputs) -> int:
    """Keep Inductor's channels-last convolutions free of layout copies: returns the hints inserted.

    The convolution rule folds the planes into the batch, ``P.reshape(T * N, C, H, W)`` of planes
    ``(T, N, C, H, W)``. When Inductor lays 2-d convolutions out channels-last (its layout optimisation,
    on by default for convolutional graphs), a pointwise result (the next BatchNorm's affine, a ReLU)
    read through such a view would be realised in the view's contiguous layout and then copied to
    channels-last for the convolution: one more write and read of every activation, and, on a GPU, a
    transposing copy kernel per convolution (the plain model has neither). So before each such view
    the planes get Inductor's stride-order hint (``prims.inductor_force_stride_order``, a no-op on a
    tensor already so laid out): the pointwise kernel then writes channels-last per plane, and the
    view hands the convolution a channels-last tensor without a copy. Graphs with inputs that require
    grad get no hints: the prim has no autograd formula, so their backward would raise.
    """
    convs = [n for n in gm.graph.nodes if n.target is aten.convolution.default]
    # (Inductor differentiates the graph when grad is on and an input requires grad: this call's mode)
    training = torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                               for t in example_inputs)
    if not convs or training:  # the prim has no autograd formula: a training graph could not backward
        return 0
    from torch._inductor.graph import GraphLowering  # also registers Inductor's prims

    force = getattr(torch.ops.prims, "inductor_force_stride_order", None)
    if force is None:  # a torch without the prim: Inductor copies, as before
        return 0
    if not GraphLowering.decide_layout_opt(gm, is_inference=True):
        return 0
    hinted = 0
    for conv in convs:
        merge = conv.args[0]
        if merge.op != "call_function" or merge.target not in (aten.view.default, aten.reshape.default,
                                                                aten._unsafe_view.default):
            continue
        src, dst = merge.args[0].meta.get("val"), merge.meta.get("val")
        if not (isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor) and src.dim() == 5
                and dst.dim() == 4 and src.shape[0] * src.shape[1] == dst.shape[0]
                and src.shape[2:] == dst.shape[1:]):
            continue
        T, N, C, H, W = src.shape
        stride = [N * H * W * C, H * W * C, 1, W * C, C]  # channels-last within each plane
        with gm.graph.inserting_before(merge):
            hint = gm.graph.call_function(force.default, (merge.args[0], stride))
        hint.meta["val"] = merge.args[0].meta["val"]
        merge.replace_input_with(merge.args[0], hint)
        hinted += 1
    if hinted:
        gm.recompile()
    return hinted


# -- the recompile warning ----------------------------------------------------------------------------

_KEY_PARTS = ("the input signature", "grad mode", "a torchlc mode", "autocast or the default dtype",
              "module or closure state")
_MODE_NAMES = ("torchlc.strict", "torchlc.layouts.force", "torchlc.smoothing")


def _what_changed(fn, old, new) -> str:
    """Names the parts of two cache keys that differ (only computed for the warning)."""
    if old is None:
        return "nothing cached (the entries were evicted)"
    parts = []
    for name, a, b in zip(_KEY_PARTS, old, new):
        if a == b:
            continue
        if name == "a torchlc mode":
            name = ", ".join(f"{m} ({x!r} -> {y!r})" for m, x, y in zip(_MODE_NAMES, a, b) if x != y)
        elif name == "module or closure state":
            st = _read_state(fn, labels=True)
            diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
            if len(a) == len(b) == len(st.items) and diff:
                name = "module or closure state: " + "; ".join(dict.fromkeys(st.label(i, a[i]) for i in diff[:3]))
        elif name == "grad mode":
            name = f"grad mode ({a} -> {b})"
        parts.append(name)
    return "; ".join(parts) or "a tensor read while tracing was modified in place"


# -- the wrapper --------------------------------------------------------------------------------------

_COMPILE_ARGUMENTS = {"backend", "mode", "options", "fullgraph", "dynamic", "disable"}


def compile(fn=None, *, cache_size: int | None = None, **compile_kwargs):
    """``torch.compile`` ``fn`` (LC tensors in and out) so that it can be trained through.

    Takes ``torch.compile``'s arguments (``backend``, ``mode``, ``options``, ``fullgraph``, ``dynamic``,
    ``disable``) and ``cache_size`` (graphs kept, least recently used evicted first; default
    :data:`CACHE_SIZE`, 64, or env ``TORCHLC_COMPILE_CACHE_SIZE``). ``fn`` is traced once per input
    signature (supports, shapes, strides, dtypes, devices, requires_grad), grad mode, autocast, torchlc
    mode (forced layout, smoothing) and module/closure state (training flags, parameter and buffer
    identity, closure scalars; see the module docstring); with Inductor and no CUDA graphs the trace is
    compiled by Inductor directly, without Dynamo's per-call guards, after exact rewrites that let it
    compute both planes of an element in one thread (:mod:`torchlc._plane_passes`; env
    ``TORCHLC_COMPILE_PLANE_PASSES=0`` turns them off). Inside ``torchlc.strict()`` calls
    run eagerly (DomainError where eager raises it). After :data:`RECOMPILE_LIMIT` traces it warns once.
    The wrapper's ``cache_info()`` gives ``(entries, traces, cache_size)``; ``cache_clear()`` empties it.

    Example:
        >>> import torch, torchlc
        >>> lin = torch.nn.Linear(3, 2)
        >>> f = torchlc.compile(lambda x: torch.tanh(lin(x)), backend="aot_eager")
        >>> y = f(torch.randn(4, 3).nonstd())
        >>> torchlc.coeff(y, 1).sum().backward()     # gradients reach lin's parameters
        >>> lin.weight.grad is not None
        True
    """
    if fn is None:
        return functools.partial(compile, cache_size=cache_size, **compile_kwargs)
    unknown = set(compile_kwargs) - _COMPILE_ARGUMENTS
    if unknown:
        raise TypeError(
            f"torchlc.compile: unexpected arguments {sorted(unknown)}; it takes torch.compile's "
            f"{sorted(_COMPILE_ARGUMENTS)} and cache_size"
        )
    size = CACHE_SIZE if cache_size is None else int(cache_size)
    if size < 1:
        raise ValueError(f"torchlc.compile: cache_size must be at least 1, got {cache_size}")
    cache: OrderedDict = OrderedDict()
    counts = {"traces": 0, "warned": False}

    def lookup(key, state):
        """The entry of ``key`` if its version guards hold (else it is dropped: "in place")."""
        entry = cache.get(key)
        if entry is None:
            return None, None
        if entry.guard:
            tensors = state.tensors
            if [tensors[i]._version for i in entry.guard] != entry.versions:
                cache.pop(key, None)
                return None, "in place"
        try:
            cache.move_to_end(key)
        except KeyError:  # evicted meanwhile by another thread's call: the entry still serves this one
            pass
        return entry, None

    def insert(key, entry, why):
        previous = next(reversed(cache), None) if cache else None
        cache[key] = entry
        while len(cache) > size:
            cache.popitem(last=False)
        counts["traces"] += 1
        if counts["traces"] > RECOMPILE_LIMIT and not counts["warned"]:
            counts["warned"] = True
            if why == "in place":
                changed = "a tensor read while tracing was modified in place"
            else:
                changed = _what_changed(fn, previous, key)
            name = getattr(fn, "__qualname__", None) or type(fn).__name__
            warnings.warn(
                f"torchlc.compile: {name} has been traced {counts['traces']} times, more than the "
                f"recompile limit {RECOMPILE_LIMIT} (torchlc._compile.RECOMPILE_LIMIT, env "
                f"TORCHLC_COMPILE_RECOMPILE_LIMIT); last change: {changed}. Every new input "
                f"signature, mode or module/closure state traces and compiles again; the "
                f"{size} most recent graphs are kept (cache_size=).",
                RuntimeWarning,
                stacklevel=3,
            )

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        modes = _context.snapshot()
        if modes[0]:
            # strict mode checks the field's domain on the host at every checked op: run eagerly,
            # so DomainError is raised where (and as) eager raises it
            return fn(*args, **kwargs)
        grad = torch.is_grad_enabled()
        state = _read_state(fn)
        glob = (modes, _global_state(), tuple(state.items))
        if not kwargs and len(args) == 1 and type(args[0]) is LCTensor:
            # the usual call f(x.nonstd(v)): a flat key, no pytree (host time is what small models
            # pay here: this path is ~10 µs shorter on CPU)
            x = args[0]
            p = x._planes_view()
            key = ((x.lc_support, x.lc_order, x.lc_exact, p.shape, p.stride(), p.dtype, p.device,
                    p.requires_grad), grad, *glob)
            leaves = [p]
            entry, why = lookup(key, state)
            if entry is None:
                entry = _trace(fn, list(args), 1, [0], leaves, grad, compile_kwargs, state.tensors)
                insert(key, entry, why)
        else:
            flat, spec = _flatten_inputs(args, kwargs)
            key = ((spec, tuple(_leaf_key(a) for a in flat)), grad, *glob)
            tensor_pos = [i for i, a in enumerate(flat) if isinstance(a, torch.Tensor)]
            leaves = [flat[i]._planes_view() if isinstance(flat[i], LCTensor) else flat[i] for i in tensor_pos]
            entry, why = lookup(key, state)
            if entry is None:
                entry = _trace(fn, flat, spec, tensor_pos, leaves, grad, compile_kwargs, state.tensors)
                insert(key, entry, why)
        out_meta = entry.meta
        if out_meta["checked"]:
            # a speculation may fail: keep what the graph mutates, to rerun eagerly from it
            saved = [(t, t.detach().clone()) for t in
                     [*(leaves[i] for i in entry.mut_leaves), *(entry.state[i] for i in entry.mut_state)]]
        if entry.mut_leaves:
            note_plane_write()  # the graph writes into its inputs' planes (see standard_part_fact)
        outs = entry.fn(*leaves, *entry.lifted)
        if out_meta["checked"]:
            *outs, viol = outs
            if bool(viol):  # one host sync per call, only when something was speculated
                with torch.no_grad():
                    for t, s in saved:
                        t.copy_(s)
                return fn(*args, **kwargs)
        lc_out = out_meta["lc"]
        if out_meta["spec"] is None:  # one tensor
            return wrap(outs[0], *lc_out[0]) if lc_out else outs[0]
        outs = [wrap(o, *lc_out[j]) if j in lc_out else o for j, o in enumerate(outs)]
        return tree_unflatten(outs, out_meta["spec"])

    def cache_info():
        """(entries, traces, cache_size) of this compiled function."""
        return (len(cache), counts["traces"], size)

    def cache_clear():
        cache.clear()
        counts["traces"] = 0
        counts["warned"] = False

    wrapper.cache_info = cache_info
    wrapper.cache_clear = cache_clear
    wrapper._torchlc_cache = cache  # (also marks the wrapper: state walks do not enter it)
    return wrapper
