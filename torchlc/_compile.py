"""``torchlc.compile``: torch.compile for training code on LC tensors.

torch.compile of LC-in/LC-out functions works directly under ``torch.no_grad()``. With autograd on,
AOTAutograd would trace the *outer* (wrapper-level) joint graph, which is not the LC adjoint, and
Dynamo cannot build LCTensors inside a graph. So this wrapper keeps the compiled region's boundaries
plain: the function is traced once per input signature with ``make_fx`` on the coefficient planes
(LCTensors are rebuilt and taken apart in Python, outside Dynamo), the
tensors it closes over that require grad (parameters) are lifted to graph inputs, and the resulting
plain aten graph is compiled (by Inductor directly, or through ``torch.compile`` for other backends and
CUDA graphs; see ``_compile_graph``). Gradients flow exactly as in eager mode. The cache key is the
input signature (supports, shapes, strides, dtypes, devices, requires_grad), grad mode, autocast and
strict mode: everything the trace depends on.

Data-dependent decisions (which plane leads each element in a reciprocal or power, whether a
comparison on truncated inputs is decidable) are *speculated* from the inputs seen at trace time
and verified inside the graph: the compiled function returns one extra flag, checked once per call,
and on a mismatch the call runs eagerly, so results are always those of eager mode.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_flatten, tree_unflatten

from ._context import speculate
from ._tensor import LCTensor, wrap
from .errors import is_strict
from .ops import transformer as _transformer_rules

__all__ = ["compile"]

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


def _make_fx_options(leaves) -> dict:
    opaque = _transformer_rules.OPAQUE_ENCODER_DEVICES
    return _FAST_PATH_OPTIONS if any(t.device.type in opaque for t in leaves) else {}


def _meta(x: LCTensor):
    return (x.lc_support, x.lc_order, x.lc_exact)


def _leaf_key(a):
    if isinstance(a, LCTensor):
        p = a.lc_planes()
        return ("lc", _meta(a), p.shape, p.stride(), p.dtype, p.device, p.requires_grad)
    if isinstance(a, torch.Tensor):
        return ("t", a.shape, a.stride(), a.dtype, a.device, a.requires_grad)
    return ("c", a)


_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def _global_state():
    """What else a trace depends on: torchlc's strict mode and autocast (which casts inside the
    rules). Grad mode is keyed separately."""
    autocast = _any_autocast() and tuple(
        (d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cpu", "cuda")
    )
    return (is_strict(), autocast)


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


def _lift_grad_constants(gm):
    """Turn tensors the trace baked in as constants but that require grad into graph inputs."""
    lifted, names = [], set()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    anchor = placeholders[-1] if placeholders else None
    for node in list(gm.graph.nodes):
        if node.op != "get_attr":
            continue
        t = getattr(gm, node.target)
        if isinstance(t, torch.Tensor) and t.requires_grad:
            ctx = gm.graph.inserting_after(anchor) if anchor is not None else gm.graph.inserting_before(node)
            with ctx:
                ph = gm.graph.placeholder(f"lifted_{len(lifted)}")
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


def _trace(fn, flat, spec, tensor_pos, leaves, grad, compile_kwargs):
    """Trace ``fn`` on the planes of one input signature and compile the plain graph: returns
    (compiled function, lifted parameters, output metadata)."""
    out_meta = {}

    def inner(*tensors):
        rebuilt = list(flat)
        for i, t in zip(tensor_pos, tensors):
            a = flat[i]
            rebuilt[i] = wrap(t, *_meta(a)) if isinstance(a, LCTensor) else t
        a, k = _unflatten_inputs(rebuilt, spec)
        res = fn(*a, **k)
        out_flat, out_spec = tree_flatten(res)
        out_meta["spec"] = None if isinstance(res, torch.Tensor) else out_spec  # None: one tensor
        out_meta["lc"] = {j: _meta(o) for j, o in enumerate(out_flat) if isinstance(o, LCTensor)}
        outs = [o.lc_planes() if isinstance(o, LCTensor) else o for o in out_flat]
        # data-dependent decisions were taken from the example inputs: one flag says
        # whether these inputs would decide differently
        flags = [f.reshape(1) for f in spec_flags]
        out_meta["checked"] = bool(flags)
        if not flags:  # nothing speculated: no flag, so no host sync per call
            return outs
        return outs + [torch.cat(flags).any()]

    # with grad off nothing will differentiate the graph, so it is traced in inference mode: the
    # composites (scaled_dot_product_attention, linear, ...) then reach the LC rules whole and
    # trace to their jets (attention: two GEMMs per product) instead of to their decompositions
    trace_mode = torch.no_grad() if grad else torch.inference_mode()
    with speculate() as spec_flags, trace_mode:
        # tracing must not mutate the inputs
        gm = make_fx(inner, **_make_fx_options(leaves))(*[t.detach().clone() for t in leaves])
    lifted = _lift_grad_constants(gm)
    return _compile_graph(gm, [*leaves, *lifted], lifted, compile_kwargs), lifted, out_meta


def _compile_graph(gm, example_inputs, lifted, compile_kwargs):
    """The traced graph, compiled as ``torch.compile(**compile_kwargs)`` would compile it.

    Inductor without CUDA graphs compiles the graph directly (``torch._inductor.compile``), without
    Dynamo: the graph is already traced, and the wrapper's cache key (input signature, grad mode,
    autocast, strict mode) is its guard, so Dynamo's frame evaluation and guards would only add host
    time to each call (~50-100 µs measured for a 4-layer MLP on the dev VM's CPU). Other backends, and
    CUDA graphs, whose trees rely on Dynamo's record of which inputs are parameters, go through
    ``torch.compile``.
    """
    kw = compile_kwargs
    mode, options = kw.get("mode"), kw.get("options")
    if kw.get("disable", False):
        return gm.forward
    # mode and options together: torch.compile's own error
    if kw.get("backend", "inductor") == "inductor" and (mode is None or options is None):
        from torch import _inductor

        config = {**_inductor.list_mode_options(mode or "default", kw.get("dynamic")), **(options or {})}
        if not config.get("triton.cudagraphs", False):
            return _inductor.compile(gm, example_inputs, options=config)
    for t in lifted:
        # parameters keep their address across calls: CUDA graphs (mode="reduce-overhead")
        # then read them in place instead of copying each into a static buffer every call
        torch._dynamo.mark_static_address(t)
    # the bound forward, not the module: calls skip nn.Module.__call__ and its hooks (~20 µs
    # of host time per call measured for a small MLP on CPU)
    return torch.compile(gm.forward, **compile_kwargs)


_COMPILE_ARGUMENTS = {"backend", "mode", "options", "fullgraph", "dynamic", "disable"}


def compile(fn=None, **compile_kwargs):
    """``torch.compile`` ``fn`` (LC tensors in and out) so that it can be trained through.

    Takes ``torch.compile``'s arguments (``backend``, ``mode``, ``options``, ``fullgraph``, ``dynamic``,
    ``disable``). ``fn`` is traced once per input signature (supports, shapes, strides, dtypes,
    devices, requires_grad), grad mode, autocast state and strict mode; with Inductor and no CUDA
    graphs the trace is compiled by Inductor directly, without Dynamo's per-call guards.

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
        return functools.partial(compile, **compile_kwargs)
    unknown = set(compile_kwargs) - _COMPILE_ARGUMENTS
    if unknown:
        raise TypeError(
            f"torchlc.compile: unexpected arguments {sorted(unknown)}; it takes torch.compile's "
            f"{sorted(_COMPILE_ARGUMENTS)}"
        )
    cache = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        grad = torch.is_grad_enabled()
        if not kwargs and len(args) == 1 and type(args[0]) is LCTensor:
            # the usual call f(x.nonstd(v)): a flat key, no pytree (host time is what small models
            # pay here: this path is ~10 µs shorter on CPU)
            x = args[0]
            p = x.lc_planes()
            key = (grad, x.lc_support, x.lc_order, x.lc_exact, p.shape, p.stride(), p.dtype, p.device,
                   p.requires_grad, _global_state())
            entry = cache.get(key)
            leaves = [p]
            if entry is None:
                entry = cache[key] = _trace(fn, list(args), 1, [0], leaves, grad, compile_kwargs)
        else:
            flat, spec = _flatten_inputs(args, kwargs)
            key = (spec, grad, _global_state(), tuple(_leaf_key(a) for a in flat))
            entry = cache.get(key)
            tensor_pos = [i for i, a in enumerate(flat) if isinstance(a, torch.Tensor)]
            leaves = [flat[i].lc_planes() if isinstance(flat[i], LCTensor) else flat[i] for i in tensor_pos]
            if entry is None:
                entry = cache[key] = _trace(fn, flat, spec, tensor_pos, leaves, grad, compile_kwargs)
        cfn, lifted, out_meta = entry
        outs = cfn(*leaves, *lifted)
        if out_meta["checked"]:
            *outs, viol = outs
            if bool(viol):  # one host sync per call, only when something was speculated
                return fn(*args, **kwargs)
        lc_out = out_meta["lc"]
        if out_meta["spec"] is None:  # one tensor
            return wrap(outs[0], *lc_out[0]) if lc_out else outs[0]
        outs = [wrap(o, *lc_out[j]) if j in lc_out else o for j, o in enumerate(outs)]
        return tree_unflatten(outs, out_meta["spec"])

    return wrapper
