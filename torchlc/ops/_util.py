"""Small helpers shared by the rule families."""

from __future__ import annotations

import torch

from .._tensor import LCTensor, Series, series, wrap


def is_monomial(x) -> bool:
    """Statically known to hold at most one term per element."""
    if isinstance(x, LCTensor):
        return x._layout == "boxed" or len(x._support) == 1
    return True


def out(s: Series, *, monomial: bool = False) -> LCTensor:
    return wrap(s.planes, s.support, s.order, s.exact, monomial=monomial, zero=s.zero)


def operand(x):
    """Series for tensors; Python numbers pass through (cheaper scalar kernels)."""
    if isinstance(x, torch.Tensor):
        return series(x)
    return x


def real_out(t: torch.Tensor, like: Series) -> LCTensor:
    """A real-valued (single ε⁰ plane) LCTensor result of a discontinuous op."""
    from .. import _support as S

    return wrap(t.unsqueeze(0), (S.ZERO,), like.order, None)
