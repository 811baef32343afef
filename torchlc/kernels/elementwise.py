"""One-pass kernels for the first-order selection rules.

``relu`` of x = a + bε keeps x when its leading coefficient is positive: ``a > 0 or (a == 0 and
b > 0)``; ``abs`` multiplies both planes by the sign of the leading coefficient. The torch formulas
take 5 (relu) and 4 (abs) kernels with boolean temporaries; these read each plane once and write it
once.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - triton is an optional extra
    HAVE_TRITON = False

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK = 1024


def usable(planes: torch.Tensor) -> bool:
    """Whether the fused first-order path applies to these planes."""
    from .._algebra import _grad_free

    return (
        HAVE_TRITON
        and planes.shape[0] == 2
        and (planes.is_cuda or (INTERPRET and planes.device.type == "cpu"))
        and planes.is_contiguous()
        and planes.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
        and _grad_free(planes)
    )


if HAVE_TRITON:

    @triton.jit
    def _relu2_kernel(p_ptr, o_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        a = tl.load(p_ptr + offs, mask=m)
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


def _launch(kernel, planes):
    out = torch.empty_like(planes)
    n = planes[0].numel()
    if n:
        kernel[(triton.cdiv(n, BLOCK),)](planes, out, n, BLOCK=BLOCK)
    return out


def relu2(planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order relu on planes (2, *shape)."""
    return _launch(_relu2_kernel, planes)


def abs2(planes: torch.Tensor) -> torch.Tensor:
    """Fused first-order abs on planes (2, *shape)."""
    return _launch(_abs2_kernel, planes)
