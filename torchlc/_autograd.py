"""Custom ``torch.autograd.Function``s and autograd's entry points on LCTensors.

Autograd records on the coefficient planes ("inner" autograd). A custom Function is a node that
autograd's C++ core builds from the *wrapper* tensors it is given, so on LC arguments it would run its
forward without recording anything on the planes (their gradient silently lost) or, for reentrant
activation checkpointing, fail. Installed on import (:func:`install`):

* ``Function.apply`` with LCTensor arguments runs the Function as a node of the planes' graph: a
  Function made for it (same name, so ``grad_fn`` reads ``<CheckpointFunctionBackward>``) takes the
  arguments' planes as its inputs, calls the user's ``forward`` on the LCTensors themselves and returns
  the outputs' planes; its backward hands the user's ``backward`` the outputs' gradients as dual series
  (:func:`torchlc._tensor.cotangent`: Σ_p g_p ε^(-p)) and reads the inputs' plane gradients off what it
  returns (:func:`torchlc._tensor.plane_gradients`). A backward written in torch ops therefore computes
  the exact vector-Jacobian product of the LC computation. ``ctx`` is a stand-in with the same API
  (``save_for_backward``/``saved_tensors``, ``needs_input_grad``, ``mark_non_differentiable``,
  ``mark_dirty``, ``set_materialize_grads``, any attribute).
  Hooks registered on such a node (``lc.grad_fn.register_hook``/``register_prehook``, as Module full
  backward hooks do) see and return gradients per argument and output, dual series for LCTensors.
* ``torch.autograd.backward`` (and ``lc.backward(gradient)``) and ``torch.autograd.grad`` take LCTensor
  outputs, inputs and gradients: outputs and inputs stand for their planes, gradients are dual series.

Calls without an LCTensor argument cost one scan of the arguments and go to PyTorch unchanged; no
aten op pays anything. Under functorch transforms (vmap) and torch.compile PyTorch's own paths run,
and a Function whose arguments are all plain (one that builds LCTensors inside) is PyTorch's as well.
"""

from __future__ import annotations

import functools
import inspect
import weakref

import torch
from torch.autograd.function import BackwardCFunction, Function, _is_setup_context_defined

from . import _support as S
from ._tensor import LCTensor, cotangent, plane_gradients, wrap

__all__ = ["install"]


def _any_lc(xs) -> bool:
    for a in xs:
        if isinstance(a, LCTensor):
            return True
    return False


# -- Function.apply -------------------------------------------------------------------------------------
class _Ctx:
    """The ``ctx`` a user's forward/backward sees for LC arguments: FunctionCtx's API, kept in Python;
    tensors to save go through the real node's ``save_for_backward`` (planes of LCTensors)."""

    def __init__(self, node_ctx, needs_input_grad):
        self._lc_node = node_ctx  # set only while forward or backward runs (no reference cycle)
        self._lc_save_specs = ()
        self.needs_input_grad = needs_input_grad
        self._lc_save = None
        self._lc_non_diff = ()
        self._lc_dirty = ()
        self._lc_saved = None
        self.materialize_grads = True

    def save_for_backward(self, *tensors):
        self._lc_save = tensors

    def save_for_forward(self, *tensors):
        pass  # forward-mode AD (jvp) of a Function does not run on LCTensors

    def mark_non_differentiable(self, *tensors):
        self._lc_non_diff = tensors

    def mark_dirty(self, *tensors):
        self._lc_dirty = tensors

    def set_materialize_grads(self, value: bool):
        self.materialize_grads = value
        self._lc_node.set_materialize_grads(value)

    @property
    def saved_tensors(self):
        if self._lc_saved is None:
            self._lc_saved = _unflatten_saved(_NODE_SAVED.__get__(self._lc_node), self._lc_save_specs)
        return self._lc_saved

    saved_variables = saved_tensors


_NODE_SAVED = torch._C._FunctionBase.__dict__["saved_tensors"]  # the node's own: the flat planes


def _unflatten_saved(flat, specs) -> tuple:
    """The tensors saved, LCTensors rebuilt from their planes (the inverse of _flatten_saved)."""
    out, i = [], 0
    for spec in specs:
        if spec is None:
            out.append(flat[i])
            i += 1
        elif spec == "none":
            out.append(None)
        else:
            layout, n, support, order, exact, shape, dtype = spec
            out.append(LCTensor(layout, flat[i:i + n], support, order, exact, shape, dtype))
            i += n
    return tuple(out)


def _flatten_saved(tensors):
    flat, specs = [], []
    for t in tensors:
        if isinstance(t, LCTensor):
            flat.extend(t._inner)
            specs.append((t._layout, len(t._inner), t._support, t._order, t._exact, t.shape, t.dtype))
        elif t is None:
            specs.append("none")
        else:
            flat.append(t)
            specs.append(None)
    return flat, specs


class _OnPlanes(Function):
    """A user Function run on LC arguments as a node of the planes' graph (subclassed per user class,
    with its name). Inputs: (user class, user args, result box, *flat) where flat holds each user
    argument, an LCTensor replaced by its planes."""

    @staticmethod
    def forward(ctx, user, args, box, *flat):
        uctx = _Ctx(ctx, tuple(ctx.needs_input_grad[3:]))
        if _is_setup_context_defined(user.setup_context):
            out = user.forward(*args)
            user.setup_context(uctx, args, out)
        else:
            out = user.forward(uctx, *args)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        flat_out, metas = [], []
        for o in outs:
            if isinstance(o, LCTensor):
                flat_out.append(o._planes_view())
                metas.append((o._support, o._order, o._exact))
            else:
                flat_out.append(o)
                metas.append(None)
        planes_of = {id(o): p for o, p in zip(outs, flat_out) if isinstance(o, LCTensor)}
        for a, p in zip(args, flat):
            if isinstance(a, LCTensor):
                planes_of.setdefault(id(a), p)

        def planes(ts):
            return [planes_of.get(id(t), t) if isinstance(t, LCTensor) else t for t in ts]

        if uctx._lc_save is not None:
            saved, uctx._lc_save_specs = _flatten_saved(uctx._lc_save)
            ctx.save_for_backward(*saved)
        if uctx._lc_non_diff:
            ctx.mark_non_differentiable(*planes(uctx._lc_non_diff))
        if uctx._lc_dirty:
            ctx.mark_dirty(*planes(uctx._lc_dirty))
        ctx.lc_user, ctx.lc_ctx, ctx.lc_out = user, uctx, metas
        # per argument: (support, order) of an LCTensor, True for a plain tensor, False otherwise
        ctx.lc_in = [((a._support, a._order) if isinstance(a, LCTensor) else isinstance(a, torch.Tensor))
                     for a in args]
        box["single"], box["metas"] = single, metas
        box["dirty"] = {id(planes_of.get(id(t))): t for t in uctx._lc_dirty if isinstance(t, LCTensor)}
        uctx._lc_node = None
        return tuple(flat_out)

    @staticmethod
    def backward(ctx, *flat_grads):
        user, uctx = ctx.lc_user, ctx.lc_ctx
        fn = user.vjp if user.vjp is not Function.vjp else user.backward
        uctx._lc_node = ctx
        try:
            res = fn(uctx, *_user_grads(flat_grads, ctx.lc_out))
        finally:
            uctx._lc_node, uctx._lc_saved = None, None
        if not isinstance(res, tuple):
            res = (res,)
        n = len(ctx.lc_in)
        if len(res) < n or any(r is not None for r in res[n:]):
            raise RuntimeError(f"function {user.__name__}Backward returned an incorrect number of gradients "
                               f"(expected {n}, got {len(res)})")
        # LC arguments: the ε^(-q) coefficients; plain tensor arguments: the ε⁰ coefficient
        return (None, None, None) + _node_grads(res[:n], ctx.lc_in)


# Hooks on the node (``lc.grad_fn.register_hook``, as Module full backward hooks use): they see and
# return what the user's Function does, gradients per user argument and output, dual series for
# LCTensors; the node itself moves planes.
def _user_grads(grads, kinds):
    return tuple(cotangent(g, k[0], k[1]) if isinstance(k, tuple) and g is not None else g
                 for g, k in zip(grads, kinds))


def _node_grads(res, kinds):
    """Gradients per argument or output (kinds: (support, ...) of an LCTensor, False for a non-tensor)
    as the node's: planes for LCTensors; the ε⁰ coefficient of an LC gradient of a plain tensor."""
    return tuple(
        None if r is None or k is False
        else plane_gradients(r, k[0]) if isinstance(k, tuple)
        else plane_gradients(r, (S.ZERO,))[0] if isinstance(r, LCTensor)
        else r
        for r, k in zip(res, kinds)
    )


def _register_hook(node, hook):
    kinds = [k for k in node.lc_in if k is not False]  # a node's grad_inputs: its tensor inputs only
    outs = node.lc_out  # (the hook keeps no reference to the node)

    def on_planes(grad_inputs, grad_outputs):
        res = hook(_user_grads(grad_inputs, kinds), _user_grads(grad_outputs, outs))
        return None if res is None else _node_grads(res, kinds)

    return BackwardCFunction.register_hook(node, on_planes)


def _register_prehook(node, hook):
    outs = node.lc_out

    def on_planes(grad_outputs):
        res = hook(_user_grads(grad_outputs, outs))
        return None if res is None else _node_grads(res, outs)

    return BackwardCFunction.register_prehook(node, on_planes)


_NODES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# What code outside the Function reads off its node (``lc.grad_fn``) is the user's ctx, as for a plain
# Function whose ctx *is* the node: the attributes its forward set (torch 2.11's non-reentrant
# checkpointing calls ``grad_fn.get_args(grad_fn.saved_tensors)`` on its input-saving Function) and the
# tensors it saved, LCTensors again rather than their planes.
def _node_saved_tensors(node):
    return _unflatten_saved(_NODE_SAVED.__get__(node), node.lc_ctx._lc_save_specs)


def _node_getattr(node, name):
    if name.startswith(("lc_", "_lc_", "__")):
        raise AttributeError(name)
    try:
        uctx = node.__dict__["lc_ctx"]
    except KeyError:
        raise AttributeError(name) from None
    return getattr(uctx, name)


def _node_class(user):
    node = _NODES.get(user)
    if node is None:
        node = type(user.__name__, (_OnPlanes,), {"__module__": user.__module__, "__qualname__": user.__qualname__})
        backward_cls = node._backward_cls
        backward_cls.register_hook = _register_hook
        backward_cls.register_prehook = _register_prehook
        backward_cls.saved_tensors = backward_cls.saved_variables = property(_node_saved_tensors)
        backward_cls.__getattr__ = _node_getattr
        _NODES[user] = node
    return node


def _bind(user, args, kwargs):
    """Keyword arguments bound to positions, as Function.apply does for setup_context Functions."""
    sig = inspect.signature(user.forward)
    if not _is_setup_context_defined(user.setup_context):
        params = list(sig.parameters.values())[1:]  # drop ctx
        sig = sig.replace(parameters=params)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    if bound.kwargs:
        raise TypeError(f"{user.__name__}.apply: keyword-only arguments are not supported on LCTensors")
    return tuple(bound.args)


def apply_on_planes(user, args, kwargs=None):
    """``user.apply(*args, **kwargs)`` with LCTensor arguments, run on their planes (see module doc)."""
    if kwargs:
        args = _bind(user, args, kwargs)
    flat = [a._planes_view() if isinstance(a, LCTensor) else a for a in args]
    box = {}
    res = _node_class(user).apply(user, args, box, *flat)
    outs = []
    for p, m in zip(res, box["metas"]):
        if m is None:
            outs.append(p)
        else:
            orig = box["dirty"].get(id(p))
            outs.append(orig if orig is not None else wrap(p, *m))
    return outs[0] if box["single"] else tuple(outs)


_FUNCTION_APPLY = Function.__dict__["apply"].__func__


def _apply(cls, *args, **kwargs):
    if (_any_lc(args) or (kwargs and _any_lc(kwargs.values()))) and not (
        torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling()
    ):
        return apply_on_planes(cls, args, kwargs)
    return _FUNCTION_APPLY(cls, *args, **kwargs)


functools.update_wrapper(_apply, _FUNCTION_APPLY)


# -- torch.autograd.backward / grad -----------------------------------------------------------------------
_BACKWARD = torch.autograd.backward
_GRAD = torch.autograd.grad


def _as_tuple(x):
    if x is None:
        return None
    return (x,) if isinstance(x, torch.Tensor) else tuple(x)


def _planes(t):
    return t._planes_view() if isinstance(t, LCTensor) else t


def _out_grads(outputs, grads):
    """Outputs and their gradients with every LCTensor replaced by planes (gradients: dual series)."""
    if grads is None:
        grads = (None,) * len(outputs)
    new_o, new_g = [], []
    for o, g in zip(outputs, grads):
        if isinstance(o, LCTensor):
            if g is None:
                raise RuntimeError(
                    "torchlc: backward of an LCTensor needs its gradient (a dual series, e.g. "
                    "lc.grad of a checkpointed input); to differentiate a coefficient, take it first: "
                    "torchlc.coeff(y, q).sum().backward()"
                )
            g = plane_gradients(g, o._support)
        elif isinstance(g, LCTensor):  # a plain output's gradient given as a series: its ε⁰ term
            g = plane_gradients(g, (S.ZERO,))[0]
        new_o.append(_planes(o))
        new_g.append(g)
    return new_o, new_g


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
             inputs=None):
    if grad_variables is not None and grad_tensors is None:
        grad_tensors, grad_variables = grad_variables, None
    t, g, i = _as_tuple(tensors), _as_tuple(grad_tensors), inputs
    if t is not None and (_any_lc(t) or (g and _any_lc(g)) or (
            i is not None and not isinstance(i, dict) and _any_lc(_as_tuple(i)))):
        t, g = _out_grads(t, g)
        if i is not None:
            i = [_planes(x) for x in _as_tuple(i)]
        return _BACKWARD(t, g, retain_graph, create_graph, inputs=i)
    return _BACKWARD(tensors, grad_tensors, retain_graph, create_graph, grad_variables, inputs)


def grad(outputs, inputs, grad_outputs=None, *args, **kwargs):
    o, g = _as_tuple(outputs), _as_tuple(grad_outputs)
    ins = None if isinstance(inputs, dict) else _as_tuple(inputs)
    if ins is not None and (_any_lc(o) or _any_lc(ins) or (g and _any_lc(g))):
        o, g = _out_grads(o, g)
        res = _GRAD(o, [_planes(x) for x in ins], g, *args, **kwargs)
        return tuple(cotangent(r, x._support, x._order) if isinstance(x, LCTensor) and r is not None else r
                     for r, x in zip(res, ins))
    return _GRAD(outputs, inputs, grad_outputs, *args, **kwargs)


functools.update_wrapper(backward, _BACKWARD)
functools.update_wrapper(grad, _GRAD)

_INSTALLED = []


def install() -> None:
    """Route ``Function.apply``, ``torch.autograd.backward`` and ``torch.autograd.grad`` calls with
    LCTensor arguments as described above (idempotent)."""
    if _INSTALLED:
        return
    Function.apply = classmethod(_apply)
    torch.autograd.backward = backward
    torch.autograd.grad = grad
    _INSTALLED.append(True)


install()
