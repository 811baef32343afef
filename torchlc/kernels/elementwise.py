"""One-pass kernels for the first-order selection rules.

``relu`` of x = a + bε keeps x when its leading coefficient is positive: ``a > 0 or (a == 0 and
b > 0)``; ``abs`` multiplies both planes by the sign of the leading coefficient. The torch formulas
take 6 (relu) and 4 (abs) kernels with boolean temporaries; these read each plane once and write it
once.
"""

from __future__ import annotations

import os

import torch

from .._context import grad_free as _grad_free
from .launch import launch

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - triton is an optional extra
    HAVE_TRITON = False

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK = 1024


_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def usable(*planes: torch.Tensor) -> bool:
    """Whether the fused first-order path applies to these planes (each of shape (2, *shape))."""
    if not HAVE_TRITON:
        return False
    for p in planes:
        if p.shape[0] != 2 or not (p.is_cuda or (INTERPRET and p.device.type == "cpu")):
            return False
        if not p.is_contiguous() or p.dtype not in _DTYPES:
            return False
    return _grad_free(*planes)


if HAVE_TRITON:

    @triton.jit
    def _relu2_kernel(p_ptr, bias_ptr, o_ptr, n, row, HAS_BIAS: tl.constexpr, OP: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(p_ptr + offs, mask=m)
        if HAS_BIAS:  # a + bias computed in OP (float32 for half types, like torch), rounded to the dtype
            a = (a.to(OP) + tl.load(bias_ptr + offs % row, mask=m).to(OP)).to(a.dtype)
        b = tl.load(p_ptr + n + offs, mask=m)
        nonpos = ((a < 0) | ((a == 0) & (b <= 0))) & (b == b)  # a NaN anywhere stays NaN
        zero = tl.zeros_like(a)
        tl.store(o_ptr + offs, tl.where(nonpos, zero, a), mask=m)
        tl.store(o_ptr + n + offs, tl.where(nonpos, zero, b), mask=m)

    @triton.jit
    def _abs2_kernel(p_ptr, o_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(p_ptr + offs, mask=m)
        b = tl.load(p_ptr + n + offs, mask=m)
        lead = tl.where(a != 0, a, b)
        s = (lead > 0).to(a.dtype) - (lead < 0).to(a.dtype)
        tl.store(o_ptr + offs, a * s, mask=m)
        tl.store(o_ptr + n + offs, b * s, mask=m)


    @triton.jit
    def _mul2_kernel(x_ptr, y_ptr, o_ptr, n, BLOCK: tl.constexpr):
        # (a0 + a1 ε)(b0 + b1 ε) = a0 b0 + (a0 b1 + a1 b0) ε + (dropped ε²)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a0 = tl.load(x_ptr + offs, mask=m)
        a1 = tl.load(x_ptr + n + offs, mask=m)
        b0 = tl.load(y_ptr + offs, mask=m)
        b1 = tl.load(y_ptr + n + offs, mask=m)
        tl.store(o_ptr + offs, a0 * b0, mask=m)
        tl.store(o_ptr + n + offs, a0 * b1 + a1 * b0, mask=m)

    @triton.jit
    def _floor2_kernel(p_ptr, o_ptr, n, BLOCK: tl.constexpr):
        # floor(a + dε) = floor(a) − [a integer and d < 0]
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(p_ptr + offs, mask=m)
        d = tl.load(p_ptr + n + offs, mask=m)
        fl = tl.floor(a)
        drop = (fl == a) & (d < 0)
        res = fl - drop.to(a.dtype)
        tl.store(o_ptr + offs, tl.where(d == d, res, d), mask=m)  # a NaN anywhere gives NaN

    @triton.jit
    def _heaviside2_kernel(p_ptr, v_ptr, o_ptr, n, BLOCK: tl.constexpr):
        # H(a + dε) by the sign of the leading coefficient; v where the element is exactly 0
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(p_ptr + offs, mask=m)
        d = tl.load(p_ptr + n + offs, mask=m)
        v = tl.load(v_ptr + offs, mask=m)
        lead = tl.where(a != 0, a, d)
        one = tl.full(a.shape, 1.0, a.dtype)
        zero = tl.zeros_like(a)
        undefined = (a != a) | (d != d)  # a NaN anywhere: 0, as torch.heaviside(nan)
        h = tl.where(lead > 0, one, tl.where((lead < 0) | undefined, zero, v))
        tl.store(o_ptr + offs, tl.where(undefined, zero, h), mask=m)


    @triton.jit
    def _analytic2_kernel(p_ptr, o_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
        # g(a + dε) = g(a) + g'(a)·d ε for g = sin (FN 0), cos (1), exp (2)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(p_ptr + offs, mask=m)
        d = tl.load(p_ptr + n + offs, mask=m)
        if FN == 0:
            g = tl.sin(a)
            dg = tl.cos(a)
        elif FN == 1:
            g = tl.cos(a)
            dg = -tl.sin(a)
        else:
            g = tl.exp(a)
            dg = g
        tl.store(o_ptr + offs, g, mask=m)
        tl.store(o_ptr + n + offs, dg * d, mask=m)


ANALYTIC2 = {"sin": 0, "cos": 1, "exp": 2}


def analytic2(name: str, planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order sin/cos/exp on planes (2, *shape) over support (0, 1)."""
    return _launch(_analytic2_kernel, torch.empty_like(planes), planes, FN=ANALYTIC2[name])


def _launch(kernel, out, *inputs, row=None, **constexprs):
    """One program per BLOCK elements: kernel(*inputs, out, n[, row], **constexprs)."""
    n = inputs[0][0].numel()
    if n:
        extra = () if row is None else (row,)
        launch(kernel, (triton.cdiv(n, BLOCK),), *inputs, out, n, *extra, **constexprs, BLOCK=BLOCK)
    return out


def relu2(planes: torch.Tensor, bias0: torch.Tensor | None = None) -> torch.Tensor:
    """Fused first-order relu on planes (2, *shape); with ``bias0`` (the last dim's length, same dtype,
    contiguous), relu of the planes with bias0 added to the ε⁰ plane (a linear layer's bias)."""
    op = tl.float64 if bias0 is not None and planes.dtype == torch.float64 else tl.float32
    return _launch(_relu2_kernel, torch.empty_like(planes), planes, planes if bias0 is None else bias0,
                   row=planes.shape[-1], HAS_BIAS=bias0 is not None, OP=op)


def abs2(planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order abs on planes (2, *shape)."""
    return _launch(_abs2_kernel, torch.empty_like(planes), planes)


def mul2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fused first-order product of planes x, y (2, *shape) (same shape, contiguous)."""
    return _launch(_mul2_kernel, torch.empty_like(x), x, y)


def floor2(planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order floor: the real result (*shape)."""
    return _launch(_floor2_kernel, torch.empty_like(planes[0]), planes)


def heaviside2(planes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Fused first-order heaviside with plain ``values`` of the element shape: real result."""
    v = values.to(planes.dtype).expand(planes.shape[1:]).contiguous()
    return _launch(_heaviside2_kernel, torch.empty_like(planes[0]), planes, v)
