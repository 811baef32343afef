"""What smoothing does to plain-tensor torch functions: the handler table of the torch function mode,
and the soft companions of bool results.

Comparisons return bool tensors, which can carry neither ε-parts nor gradients. Under smoothing, a
comparison with a differentiable (requires-grad or LC) operand returns the exact bool tensor with a
*soft companion* attached: a float tensor whose value is exactly the 0/1 result and whose derivative
is the smoothed one (a plain tensor in the autograd graph, or an LCTensor with the ε-part). While a
block is active, ``mask.float()`` / ``.to(float dtype)`` / ``.type_as`` / ``mask * x`` return (a
product with) the companion, ``~mask``, ``mask & m2``, ``mask | m2`` combine companions
(1 − s, s·t, s + t − s·t), and ``torch.where(mask, a, b)`` is the exact selection plus (a − b)·δs
where δs is the companion's derivative part (its value is exactly zero). Anything else a bool mask
is used for (indexing, ``.any()``, counting) sees the plain exact bool tensor.

Every handler is ``handler(cfg, func, args, kwargs)`` and returns ``NotImplemented`` to let the plain
torch function run.
"""

from __future__ import annotations

import torch

from .._tensor import LCTensor
from .forward import delta, lc_argmax_soft, lc_compare_soft
from .functions import _ArgmaxOneHot, _Compare, _Heaviside, any_lc, apply, wants_grad

__all__ = ["HANDLERS", "soft", "exact"]

_SOFT = "_torchlc_soft"
_ARGMAX_OF = "_torchlc_argmax_of"


def soft(mask):
    """The soft companion of a bool tensor produced under smoothing (None if it has none)."""
    return getattr(mask, _SOFT, None)


def exact(mask):
    """Drop the soft companion of ``mask`` (which becomes the plain exact bool tensor); returns mask."""
    if soft(mask) is not None:
        delattr(mask, _SOFT)
    return mask


def _attach(mask, s):
    setattr(mask, _SOFT, s)
    return mask


_OPS = dict(gt=torch.gt, ge=torch.ge, lt=torch.lt, le=torch.le)
_CMP = {}
for _n, _op in _OPS.items():
    for _f in (getattr(torch, _n), getattr(torch.Tensor, _n), getattr(torch.Tensor, f"__{_n}__")):
        _CMP[_f] = (_n, _op)
for _alias, _n in (("greater", "gt"), ("greater_equal", "ge"), ("less", "lt"), ("less_equal", "le")):
    for _f in (getattr(torch, _alias), getattr(torch.Tensor, _alias)):
        _CMP[_f] = (_n, _OPS[_n])


def _compare(cfg, func, args, kwargs):
    if kwargs or len(args) != 2:
        return NotImplemented
    a, b = args
    name, op = _CMP[func]
    with torch._C.DisableTorchFunction():
        if any_lc(a, b):
            value = op(a, b)  # the LC rule answers at the standard point
            return _attach(value, lc_compare_soft(cfg, op, name, a, b, value))
        if not wants_grad(a, b):
            return NotImplemented
        dtype = torch.result_type(a, b)
        if not dtype.is_floating_point:
            return NotImplemented
        dev = (a if isinstance(a, torch.Tensor) else b).device
        ta = a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=dtype, device=dev)
        tb = b if isinstance(b, torch.Tensor) else torch.as_tensor(b, dtype=dtype, device=dev)
        value = op(a, b)
        s = _Compare.apply(ta.to(dtype) if not ta.dtype.is_floating_point else ta,
                           tb.to(dtype) if not tb.dtype.is_floating_point else tb, op, cfg, dtype)
        return _attach(value, s)


_FLOAT_METHODS = {torch.Tensor.float: torch.float32, torch.Tensor.double: torch.float64,
                  torch.Tensor.half: torch.float16, torch.Tensor.bfloat16: torch.bfloat16}


def _to_float(cfg, func, args, kwargs):
    m = args[0]
    s = soft(m)
    if s is None:
        return NotImplemented
    if func in _FLOAT_METHODS:
        dt = _FLOAT_METHODS[func]
    elif func is torch.Tensor.type_as:
        dt = args[1].dtype
    else:  # .to / .type
        dt = kwargs.get("dtype")
        for x in args[1:]:
            if isinstance(x, torch.dtype):
                dt = x
            elif isinstance(x, torch.Tensor):
                dt = x.dtype
            elif isinstance(x, str) and func is torch.Tensor.type:
                return NotImplemented
        if dt is None or not dt.is_floating_point:
            return NotImplemented
        if any(isinstance(x, (torch.device, str)) for x in args[1:]) or "device" in kwargs:
            return NotImplemented
    if not dt.is_floating_point:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        return s.to(dt)


def _mul(cfg, func, args, kwargs):
    if kwargs or len(args) != 2:
        return NotImplemented
    a, b = args
    sa, sb = soft(a), soft(b)
    if sa is None and sb is None:
        return NotImplemented
    if sa is not None and sb is not None:
        return _logic(cfg, torch.logical_and, args, kwargs)
    other, s = (b, sa) if sa is not None else (a, sb)
    if isinstance(other, bool) or (isinstance(other, torch.Tensor) and other.dtype == torch.bool):
        return NotImplemented
    with torch._C.DisableTorchFunction():
        return s * other


_NOT = (torch.logical_not, torch.Tensor.logical_not, torch.Tensor.__invert__, torch.Tensor.bitwise_not,
        torch.bitwise_not)
_AND = (torch.logical_and, torch.Tensor.logical_and, torch.Tensor.__and__, torch.bitwise_and,
        torch.Tensor.bitwise_and, torch.mul, torch.Tensor.mul, torch.Tensor.__mul__)
_OR = (torch.logical_or, torch.Tensor.logical_or, torch.Tensor.__or__, torch.bitwise_or,
       torch.Tensor.bitwise_or)


def _logic(cfg, func, args, kwargs):
    if kwargs:
        return NotImplemented
    if func in _NOT:
        (m,) = args
        s = soft(m)
        if s is None:
            return NotImplemented
        with torch._C.DisableTorchFunction():
            return _attach(func(m), 1 - s)
    a, b = args
    sa, sb = soft(a), soft(b)
    if sa is None and sb is None:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        value = func(a, b)
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
            return value
        dt = (sa if sa is not None else sb).dtype
        ta = sa if sa is not None else torch.as_tensor(a).to(dt)
        tb = sb if sb is not None else torch.as_tensor(b).to(dt)
        s = ta * tb if func in _AND else ta + tb - ta * tb
        return _attach(value, s)


def _where(cfg, func, args, kwargs):
    if kwargs or len(args) != 3:
        return NotImplemented
    cond, a, b = args
    s = soft(cond)
    if s is None:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        sel = torch.where(cond, a, b)
        dl = delta(s)
        if dl is None:
            return sel
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(a, dtype=sel.dtype)
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(b, dtype=sel.dtype)
        diff = a - b
        if not isinstance(diff, LCTensor):
            diff = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
        return sel + diff * dl


def _unary(name):
    def handler(cfg, func, args, kwargs):
        if len(args) != 1 or (kwargs and set(kwargs) != {"decimals"}):
            return NotImplemented
        x = args[0]
        if isinstance(x, LCTensor) or not wants_grad(x):
            return NotImplemented
        return apply(cfg, name, x, **kwargs)

    return handler


def _heaviside(cfg, func, args, kwargs):
    if kwargs or len(args) != 2:
        return NotImplemented
    x, values = args
    if any_lc(x, values) or not wants_grad(x, values):
        return NotImplemented
    return _Heaviside.apply(x, values, cfg)


def _argmax(cfg, func, args, kwargs):
    """argmax along the last dim of a differentiable tensor: remember the logits for one_hot."""
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dim is None or keepdim or not (isinstance(x, LCTensor) or wants_grad(x)):
        return NotImplemented
    if dim != -1 and dim != x.dim() - 1:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        idx = func(*args, **kwargs)
    setattr(idx, _ARGMAX_OF, x)
    return idx


def _one_hot(cfg, func, args, kwargs):
    idx = args[0]
    z = getattr(idx, _ARGMAX_OF, None)
    if z is None:
        return NotImplemented
    n = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
    with torch._C.DisableTorchFunction():
        value = func(*args, **kwargs)
        if n not in (-1, z.shape[-1]):
            return value
        s = lc_argmax_soft(cfg, z) if isinstance(z, LCTensor) else _ArgmaxOneHot.apply(z, cfg)
    return _attach(value, s)


def _tensor_where(cfg, func, args, kwargs):  # x.where(cond, y) = torch.where(cond, x, y)
    if len(args) != 3:
        return NotImplemented
    return _where(cfg, torch.where, (args[1], args[0], args[2]), kwargs)


HANDLERS: dict = {}
for _f in _CMP:
    HANDLERS[_f] = _compare
for _f in (*_FLOAT_METHODS, torch.Tensor.to, torch.Tensor.type, torch.Tensor.type_as):
    HANDLERS[_f] = _to_float
for _f in (torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.multiply):
    HANDLERS[_f] = _mul
for _f in (*_NOT, *_AND[:5], *_OR):
    HANDLERS[_f] = _logic
HANDLERS[torch.where] = _where
HANDLERS[torch.Tensor.where] = _tensor_where
for _name in ("sign", "floor", "ceil", "trunc", "round"):
    for _f in (getattr(torch, _name), getattr(torch.Tensor, _name)):
        HANDLERS[_f] = _unary(_name)
HANDLERS[torch.sgn] = _unary("sign")
HANDLERS[torch.Tensor.sgn] = _unary("sign")
HANDLERS[torch.fix] = _unary("trunc")
HANDLERS[torch.Tensor.fix] = _unary("trunc")
HANDLERS[torch.heaviside] = _heaviside
HANDLERS[torch.Tensor.heaviside] = _heaviside
HANDLERS[torch.argmax] = _argmax
HANDLERS[torch.Tensor.argmax] = _argmax
HANDLERS[torch.nn.functional.one_hot] = _one_hot
