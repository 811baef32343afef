"""One-pass kernels for the first-order selection rules.

``relu`` of x = a + bε keeps x when its leading coefficient is positive: ``a > 0 or (a == 0 and
b > 0)``; ``abs`` multiplies both planes by the sign of the leading coefficient. The torch formulas
take 6 (relu) and 4 (abs) kernels with boolean temporaries; these read each plane once and write it
once. The ``@triton.jit`` bodies are in :mod:`torchlc.kernels._triton_elementwise`, imported (with
Triton) by the first launch.
"""

from __future__ import annotations

import os

import torch

from .._context import grad_free as _grad_free
from ._lazy import HAVE_TRITON, cdiv, kernels, triton_ready
from .launch import launch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK = 1024


_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def usable(*planes: torch.Tensor) -> bool:
    """Whether the fused first-order path applies to these planes (each of shape (2, *shape)). Cheap:
    Triton itself is imported only once planes on an eligible device get here."""
    if not HAVE_TRITON:
        return False
    for p in planes:
        if p.shape[0] != 2 or not (p.is_cuda or (INTERPRET and p.device.type == "cpu")):
            return False
        if not p.is_contiguous() or p.dtype not in _DTYPES:
            return False
    return _grad_free(*planes) and triton_ready()


def _kernels():
    """The jitted kernels (:mod:`torchlc.kernels._triton_elementwise`; imports Triton)."""
    return kernels("_triton_elementwise")


def __getattr__(name: str):
    # the kernels by name (``elementwise._relu2_kernel``), loaded on first access
    if name.startswith("_") and name.endswith("_kernel"):
        return getattr(_kernels(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ANALYTIC2 = {"sin": 0, "cos": 1, "exp": 2, "sigmoid": 3, "silu": 4, "gelu": 5}


def analytic2(name: str, planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order ``name`` (a key of ANALYTIC2) on planes (2, *shape) over support (0, 1)."""
    return _launch("_analytic2_kernel", torch.empty_like(planes), planes, FN=ANALYTIC2[name])


def _launch(kernel: str, out, *inputs, row=None, **constexprs):
    """One program per BLOCK elements: kernel(*inputs, out, n[, row], **constexprs), the kernel named."""
    n = inputs[0][0].numel()
    if n:
        extra = () if row is None else (row,)
        launch(getattr(_kernels(), kernel), (cdiv(n, BLOCK),), *inputs, out, n, *extra, **constexprs, BLOCK=BLOCK)
    return out


def relu2(planes: torch.Tensor, bias0: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Fused first-order relu on planes (2, *shape); with ``bias0`` (the last dim's length, same dtype,
    contiguous), relu of the planes with bias0 added to the ε⁰ plane (a linear layer's bias). ``out``
    may be ``planes`` itself (relu_): each element is read before it is written."""
    tl = _kernels().tl
    op = tl.float64 if bias0 is not None and planes.dtype == torch.float64 else tl.float32
    out = torch.empty_like(planes) if out is None else out
    return _launch("_relu2_kernel", out, planes, planes if bias0 is None else bias0,
                   row=planes.shape[-1], HAS_BIAS=bias0 is not None, OP=op)


def abs2(planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order abs on planes (2, *shape)."""
    return _launch("_abs2_kernel", torch.empty_like(planes), planes)


def mul2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fused first-order product of planes x, y (2, *shape) (same shape, contiguous)."""
    return _launch("_mul2_kernel", torch.empty_like(x), x, y, OP=op_math(x.dtype))


def powint2(x: torch.Tensor, n: int) -> torch.Tensor:
    """Fused first-order x**n for n = 3 or 4 on planes x (2, *shape), contiguous: the product path's
    ``mul2(mul2(x, x), x)`` or ``mul2(s, s)`` with s = ``mul2(x, x)``, in one pass."""
    if n not in (3, 4):
        raise ValueError(f"powint2 takes n = 3 or 4, not {n}")
    return _launch("_powint2_kernel", torch.empty_like(x), x, N=n, OP=op_math(x.dtype))


def op_math(dtype):
    """The Triton type a kernel computes ``dtype`` values in: float64 for float64, else float32 (as
    PyTorch's op math and accumulation types)."""
    tl = _kernels().tl
    return tl.float64 if dtype == torch.float64 else tl.float32


def floor2(planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order floor: the real result (*shape)."""
    return _launch("_floor2_kernel", torch.empty_like(planes[0]), planes)


def heaviside2(planes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Fused first-order heaviside with plain ``values`` of the element shape: real result."""
    v = values.to(planes.dtype).expand(planes.shape[1:]).contiguous()
    return _launch("_heaviside2_kernel", torch.empty_like(planes[0]), planes, v)
