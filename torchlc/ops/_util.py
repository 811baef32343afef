"""Small helpers shared by the rule families."""

from __future__ import annotations

import torch

from .. import _algebra as A
from .._algebra import Series
from .._dispatch import check_as_torch as check_as_torch  # torch's own errors for refused arguments
from .._dispatch import check_on_meta as check_on_meta  # torch's meta checks, once per signature
from .._dispatch import run_decomposition as decomposed  # noqa: F401  (the rules' general path)
from .._jet import upcast as upcast  # the rules' half-precision computation dtype
from .._tensor import LCTensor, real, series, wrap


def first_order(x):
    """Series of ``x`` when it is a first-order LCTensor (planes ε⁰, ε¹ and truncation order 1: the
    case of ``x.nonstd(v)`` and of everything computed from it), else None. Rules with a jet formula
    for this case use it instead of their general decomposition."""
    if isinstance(x, LCTensor) and x.lc_support == A.FIRST_ORDER and x.lc_order == 1:
        return series(x)
    return None


def is_lc(x) -> bool:
    return isinstance(x, LCTensor)


def fold_batch(fn, s: Series, batched_ndim: int) -> Series:
    """Run a per-plane *linear* (or selecting) op ``fn`` once on all planes: the plane dimension is
    folded into the batch dimension (an unbatched input gets the planes as its batch)."""
    p = s.planes
    T = p.shape[0]
    if p.dim() - 1 == batched_ndim:
        N = p.shape[1]
        r = fn(p.reshape(T * N, *p.shape[2:]))
        r = r.reshape(T, N, *r.shape[1:])
    else:
        r = fn(p)
    return Series(r, s.support, s.order, s.exact)


def is_monomial(x) -> bool:
    """Statically known to hold at most one term per element."""
    if isinstance(x, LCTensor):
        return x.lc_layout.monomial_only or len(x.lc_support) == 1
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
    return real(t, like.order)
