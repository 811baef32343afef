"""Reverse mode: the autograd Functions of smoothing on plain tensors, and :func:`apply`.

Each Function has the exact forward value and the smoothed derivative g(x) (of :mod:`.kernels`) as
backward ``grad · g(x)`` and as forward-mode rule (``torch.func.jvp``): one ordinary backward pass for
all parameters, as cheap as a straight-through estimator. The config object travels as an argument
(saved on ``ctx``), so a backward runs with the smoothing of its forward, whatever is active then.
"""

from __future__ import annotations

import torch

from .._tensor import LCTensor
from .forward import lc_apply, lc_argmax_soft

# the autograd Functions keep private names: they show in grad_fn reprs (``<_HeavisideBackward>``)
__all__ = ["apply", "wants_grad", "any_lc"]

_EXACT_OPS = {
    "heaviside": torch.heaviside,
    "sign": torch.sign,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "trunc": torch.trunc,
    "round": torch.round,
}


class _Jump(torch.autograd.Function):
    """Exact forward of a one-argument jump op; derivative g(x) (backward and forward-mode AD)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, name, cfg, decimals):
        with torch._C.DisableTorchFunction():
            if name == "round_decimals":
                return torch.round(x, decimals=decimals)
            return _EXACT_OPS[name](x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, name, cfg, decimals = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.meta = (name, cfg, decimals)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        name, cfg, decimals = ctx.meta
        return cfg.vjp(g, name, x, decimals), None, None, None

    @staticmethod
    def jvp(ctx, t, *_):
        (x,) = ctx.saved_tensors
        name, cfg, decimals = ctx.meta
        return t * cfg.density(name, x, decimals)


def _reduce_to(g, shape):
    if tuple(g.shape) == tuple(shape):
        return g
    return g.sum_to_size(shape) if len(shape) else g.sum()


class _Heaviside(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, values, cfg):
        with torch._C.DisableTorchFunction():
            return torch.heaviside(x, values)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, values, cfg = inputs
        ctx.save_for_backward(x, values)
        ctx.save_for_forward(x, values)
        ctx.cfg = cfg

    @staticmethod
    def backward(ctx, g):
        x, values = ctx.saved_tensors
        gx = ctx.cfg.vjp(g, "heaviside", x) if ctx.needs_input_grad[0] else None
        gv = None
        if ctx.needs_input_grad[1]:
            gv = _reduce_to(torch.where(x == 0, g, torch.zeros_like(g)), values.shape)
        return gx, gv, None

    @staticmethod
    def jvp(ctx, tx, tv, _):
        x, values = ctx.saved_tensors
        r = tx * ctx.cfg.density("heaviside", x) if tx is not None else torch.zeros_like(x)
        if tv is not None:
            r = r + torch.where(x == 0, tv, torch.zeros_like(tv))
        return r


class _ExactStep(torch.autograd.Function):
    """Exact heaviside with its exact (almost-everywhere) derivative: zero."""

    @staticmethod
    def forward(ctx, x, values):
        with torch._C.DisableTorchFunction():
            return torch.heaviside(x, values)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g), None


class _ZeroGrad(torch.autograd.Function):
    """``value`` (computed without a graph) as a function of x with the exact a.e. derivative 0."""

    @staticmethod
    def forward(ctx, value, x):
        return value.clone()

    @staticmethod
    def backward(ctx, g):
        return None, torch.zeros_like(g)


class _Compare(torch.autograd.Function):
    """Float 0/1 value of a comparison with derivative ±K_h(a − b) w.r.t. a (∓ w.r.t. b)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, b, op, cfg, dtype):
        with torch._C.DisableTorchFunction():
            return op(a, b).to(dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, op, cfg, dtype = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.meta = (op, cfg)

    @staticmethod
    def _g(ctx):
        a, b = ctx.saved_tensors
        op, cfg = ctx.meta
        sgn = 1.0 if op in (torch.gt, torch.ge) else -1.0
        return a, b, sgn * cfg.density("step", a - b)

    @staticmethod
    def backward(ctx, g):
        a, b, dens = _Compare._g(ctx)
        ga = _reduce_to(g * dens, a.shape) if ctx.needs_input_grad[0] else None
        gb = _reduce_to(-g * dens, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb, None, None, None

    @staticmethod
    def jvp(ctx, ta, tb, *_):
        a, b, dens = _Compare._g(ctx)
        t = torch.zeros_like(dens)
        if ta is not None:
            t = t + ta
        if tb is not None:
            t = t - tb
        return t * dens


class _ArgmaxOneHot(torch.autograd.Function):
    """one_hot(argmax(z)) along the last dim; derivative: each winner-vs-j boundary a unit step in
    z* − z_j, smoothed (d onehot = Σ_j K_h(z* − z_j)(e* − e_j)(dz* − dz_j))."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, cfg):
        with torch._C.DisableTorchFunction():
            idx = z.argmax(-1, keepdim=True)
            return torch.zeros_like(z).scatter_(-1, idx, 1.0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, cfg = inputs
        ctx.save_for_backward(z, output)
        ctx.save_for_forward(z, output)
        ctx.cfg = cfg

    @staticmethod
    def _w(ctx):
        z, oh = ctx.saved_tensors
        zstar = (z * oh).sum(-1, keepdim=True)
        w = ctx.cfg.density("step", zstar - z) * (1 - oh)
        return oh, w

    @staticmethod
    def backward(ctx, G):
        oh, w = _ArgmaxOneHot._w(ctx)
        gstar = (G * oh).sum(-1, keepdim=True)
        c = w * (gstar - G)  # per j ≠ *
        return -c + oh * c.sum(-1, keepdim=True), None

    @staticmethod
    def jvp(ctx, t, _):
        oh, w = _ArgmaxOneHot._w(ctx)
        tstar = (t * oh).sum(-1, keepdim=True)
        p = w * (tstar - t)
        return oh * p.sum(-1, keepdim=True) - p


def wants_grad(*ts) -> bool:
    """Whether a plain floating operand needs a derivative (autograd, functorch or forward AD)."""
    for t in ts:
        if isinstance(t, torch.Tensor) and not isinstance(t, LCTensor):
            if (t.requires_grad and torch.is_grad_enabled()) or torch._C._functorch.is_functorch_wrapped_tensor(t):
                return t.dtype.is_floating_point
    if torch.autograd.forward_ad._current_level >= 0:
        return any(isinstance(t, torch.Tensor) and t.dtype.is_floating_point and not isinstance(t, LCTensor)
                   for t in ts)
    return False


def any_lc(*ts) -> bool:
    return any(isinstance(t, LCTensor) for t in ts)


def _argmax_onehot(cfg, x):
    if isinstance(x, LCTensor):
        if cfg is None:  # exact: the decision uses the field's order (ties broken by ε-terms)
            idx = x.argmax(-1, keepdim=True)
            return torch.zeros(tuple(x.shape), dtype=x.dtype, device=x.device).scatter_(-1, idx, 1.0)
        return lc_argmax_soft(cfg, x)
    if cfg is None:
        with torch._C.DisableTorchFunction():
            oh = torch.zeros_like(x).scatter_(-1, x.argmax(-1, keepdim=True), 1.0)
        if x.requires_grad and torch.is_grad_enabled():
            return _ZeroGrad.apply(oh, x)  # the exact derivative: zero almost everywhere
        return oh
    return _ArgmaxOneHot.apply(x, cfg)


def apply(cfg, name, x, *rest, **kwargs):
    """Primitive ``name`` on a plain tensor or LCTensor under smoothing ``cfg`` (None: exact).

    ``name``: ``"heaviside"``, ``"sign"``, ``"floor"``, ``"ceil"``, ``"trunc"``, ``"round"`` or
    ``"argmax_onehot"`` (one_hot(argmax(x, -1)) as floats); ``rest``: heaviside's ``values``;
    kwargs: ``decimals`` of round. Used by :mod:`torchlc.nn` modules, whatever block is active."""
    if name == "argmax_onehot":
        return _argmax_onehot(cfg, x)
    if isinstance(x, LCTensor) or any_lc(*rest):
        if name == "round" and kwargs.get("decimals", 0):
            name = "round_decimals"
        elif name == "round":
            kwargs = {}
        return lc_apply(cfg, name, x, *rest, **kwargs)
    if name == "heaviside":
        values = rest[0] if rest else torch.zeros((), dtype=x.dtype, device=x.device)
        if not isinstance(values, torch.Tensor):
            values = torch.tensor(values, dtype=x.dtype, device=x.device)
        if cfg is None:
            if x.requires_grad and torch.is_grad_enabled():
                return _ExactStep.apply(x, values)
            with torch._C.DisableTorchFunction():
                return torch.heaviside(x, values)
        return _Heaviside.apply(x, values, cfg)
    decimals = kwargs.get("decimals", 0)
    if name == "round" and decimals:
        name = "round_decimals"
    if cfg is None:
        with torch._C.DisableTorchFunction():
            return torch.round(x, decimals=decimals) if name == "round_decimals" else _EXACT_OPS[name](x)
    return _Jump.apply(x, name, cfg, decimals)
