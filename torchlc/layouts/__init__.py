"""Storage layouts and the policy that picks one.

* ``planes`` (:mod:`.planes`): one coefficient tensor (T, *shape), plane dimension first; the compute
  layout every rule understands.
* ``boxed`` (:mod:`.boxed`): monomial tensors (each element a single term c·ε^q, exponents may differ
  per element) in one 64-bit word per element.
* ``csr`` (:mod:`.csr`): ragged or very wide supports, only the nonzero terms.

Each is a :class:`Layout` object (name, inner tensors, strides, encode/decode) in a registry
(:func:`get`, :func:`names`); :mod:`torchlc._tensor` and the rules only use that protocol, so a new
layout is one module plus its :func:`register` call.

Policy (:func:`choose`), decided from static metadata only: a monomial tensor whose support has two or
more exponents is boxed (float32/bfloat16/float16 coefficients; float64 never, since its coefficients
would not fit losslessly); a support wider than ``CSR_MIN_TERMS`` exponents goes to CSR; everything else
is planes. Tensors that require grad, vmap-batched tensors and tensors traced by torch.compile stay on
planes. A layout never changes a value: each one decodes to the same planes bit for bit.
"""

from __future__ import annotations

import contextlib

import torch

from .. import _context
from . import boxed, csr, planes
from ._base import NATIVE_SEEN, Layout, get, names, register, registered
from .boxed import BOXED
from .csr import CSR_LAYOUT, CSR_MIN_TERMS
from .planes import PLANES

__all__ = [
    "Layout", "register", "get", "names", "choose", "force", "bytes_per_element", "CSR_MIN_TERMS",
    "LAYOUTS", "PLANES", "BOXED", "CSR_LAYOUT", "boxed", "csr", "planes", "NATIVE_SEEN",
]

LAYOUTS = names()


@contextlib.contextmanager
def force(layout: str | None):
    """Store every result in ``layout`` where it can hold it (for testing layout independence).

    ``"boxed"`` applies to monomial tensors with boxable dtypes; ``"csr"`` to tensors that do not
    require grad; a value the forced layout cannot hold is stored by the usual policy. The forced layout is context-local (this thread, task or context only). Example:

        >>> import torch, torchlc
        >>> with torchlc.layouts.force("csr"):
        ...     y = torch.tensor([1.0, 2.0]).nonstd() * 3
        >>> torchlc.layout(y)
        'csr'
    """
    if layout is not None:
        get(layout)  # unknown names raise, listing the registered ones
    with _context.LAYOUT.entered(layout):
        yield


def _storable(t: torch.Tensor) -> bool:
    """Whether t may leave the planes layout: no autograd, not traced or batched, real memory."""
    return not t.requires_grad and _context.inner_is_plain(t) and t.device.type != "meta"


def choose(planes_t, support, monomial) -> Layout:
    """The layout to store planes (T, *shape) over ``support`` in."""
    forced = _context.forced_layout()
    if forced is None and not monomial and len(support) <= CSR_MIN_TERMS:
        return PLANES  # the common case, decided from static metadata alone
    if forced == "planes" or not _storable(planes_t):
        return PLANES
    if forced is not None:
        lay = get(forced)
        if lay.fits(planes_t, support, monomial, True):
            return lay
        # it cannot hold this value (boxed: not a monomial): the usual policy decides
    for lay in registered():  # in registration order: boxed, csr, then any registered later
        if lay is not PLANES and lay.fits(planes_t, support, monomial, False):
            return lay
    return PLANES


def bytes_per_element(x) -> float:
    """Storage bytes per element of an LCTensor (inner tensors only)."""
    return x.storage_nbytes() / max(x.numel(), 1)
