"""Storage layouts and the policy that picks one.

* ``planes`` (:mod:`.planes`): one coefficient tensor (T, *shape), plane dimension first; the compute
  layout every rule understands.
* ``boxed`` (:mod:`.boxed`): monomial tensors (each element a single term c·ε^q, exponents may differ
  per element) in one 64-bit word per element.
* ``csr`` (:mod:`.csr`): ragged or very wide supports, only the nonzero terms.

Policy (:func:`store`), decided from static metadata only: a monomial tensor whose support has two or
more exponents is boxed (float32/bfloat16/float16 coefficients; float64 never, since its coefficients
would not fit losslessly); a support wider than ``CSR_MIN_TERMS`` exponents goes to CSR; everything else
is planes. Tensors that require grad, vmap-batched tensors and tensors traced by torch.compile stay on
planes. A layout never changes a value: each one decodes to the same planes bit for bit.
"""

from __future__ import annotations

import contextlib
import threading

import torch

from .._tensor import LCTensor, _inner_is_plain
from . import boxed, csr, planes  # noqa: F401  (planes: the dimension helpers rules import)

__all__ = ["store", "decode", "force", "bytes_per_element", "CSR_MIN_TERMS", "LAYOUTS"]

LAYOUTS = ("planes", "boxed", "csr")
CSR_MIN_TERMS = 32
_state = threading.local()


@contextlib.contextmanager
def force(layout: str | None):
    """Store every result in ``layout`` where it can hold it (for testing layout independence).

    ``"boxed"`` applies to monomial tensors with boxable dtypes; ``"csr"`` to tensors that do not
    require grad. Example:

        >>> import torch, torchlc
        >>> with torchlc.layouts.force("csr"):
        ...     y = torch.tensor([1.0, 2.0]).nonstd() * 3
        >>> torchlc.layout(y)
        'csr'
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    old = getattr(_state, "forced", None)
    _state.forced = layout
    try:
        yield
    finally:
        _state.forced = old


def _plain(t: torch.Tensor) -> bool:
    return not t.requires_grad and _inner_is_plain(t) and t.device.type != "meta"


def choose(planes_t, support, monomial) -> str:
    forced = getattr(_state, "forced", None)
    if forced is None and not monomial and len(support) <= CSR_MIN_TERMS:
        return "planes"  # the common case, decided from static metadata alone
    T = len(support)
    if forced == "planes" or not _plain(planes_t):
        return "planes"
    if forced == "csr":
        return "csr"
    if monomial and boxed.can_box(planes_t.dtype, support) and (T >= 2 or forced == "boxed"):
        return "boxed"
    if T > CSR_MIN_TERMS:
        return "csr"
    return "planes"


def store(planes_t, support, order, exact, monomial):
    layout = choose(planes_t, support, monomial)
    if layout == "planes":
        return LCTensor("planes", (planes_t,), support, order, exact, planes_t.shape[1:], planes_t.dtype)
    shape, dtype = planes_t.shape[1:], planes_t.dtype
    if layout == "boxed":
        inner = (boxed.encode(planes_t, support),)
    else:
        inner = csr.encode(planes_t)
    return LCTensor(layout, inner, support, order, exact, shape, dtype)


def decode(x) -> torch.Tensor:
    """Planes (T, *shape) of an LCTensor stored in any layout."""
    if x._layout == "boxed":
        return boxed.decode(x._inner[0], x._support, x.dtype)
    if x._layout == "csr":
        return csr.decode(x._inner, len(x._support), tuple(x.shape), x.dtype)
    return x._inner[0]


def bytes_per_element(x) -> float:
    """Storage bytes per element of an LCTensor (inner tensors only)."""
    n = max(x.numel(), 1)
    return sum(t.numel() * t.element_size() for t in x._inner) / n
