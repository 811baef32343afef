"""The :class:`Layout` protocol and the registry of storage layouts.

A layout is one way to store the coefficients of an LCTensor: which inner tensors it holds, how it
encodes the planes form ``(T, *shape)`` into them and decodes them back, which strides the wrapper
reports, and whether data-movement ops (views, indexing, joins) may run on its storage directly. The
tensor class and the rules only ever talk to this protocol; adding a layout is one module defining a
:class:`Layout` subclass and calling :func:`register`.
"""

from __future__ import annotations

import torch

__all__ = ["Layout", "register", "get", "names"]

_REGISTRY: dict[str, Layout] = {}

# Set once a tensor of a layout with storage-native rules (CSR) has been built: until then dispatch
# skips its per-layout rule table (one list read per op on the dense path).
NATIVE_SEEN = [False]


class Layout:
    """A storage layout. Subclasses set the class attributes and implement the codec.

    Attributes:
        name: the public name (``torchlc.layout(x)`` returns it).
        inner_names: names of the inner tensors, as ``__tensor_flatten__`` reports them.
        element_dims_offset: for a layout whose storage is one tensor holding the elements in its
            trailing dimensions, the number of leading non-element dimensions (planes: 1, boxed: 0):
            data-movement ops then run on the storage directly and the result keeps this layout.
            ``None`` when they cannot (the tensor is decoded to planes first).
        monomial_only: every element holds at most one term.
    """

    name: str = ""
    inner_names: tuple = ()
    element_dims_offset: int | None = None
    monomial_only = False  # holds at most one term per element (rules may use monomial fast paths)

    # -- codec -----------------------------------------------------------------------------------
    def encode(self, planes: torch.Tensor, support: tuple):
        """Inner tensors for planes (T, *shape) over ``support``, or None when this layout cannot
        hold these values after all (the tensor is then stored on planes)."""
        raise NotImplementedError

    def decode(self, inner: tuple, support: tuple, shape, dtype) -> torch.Tensor:
        """Planes (T, *shape) of ``dtype``, bit for bit those that were encoded."""
        raise NotImplementedError

    def support(self, inner: tuple) -> tuple:
        """The support of a tensor built without one (a *lazy* support, computed from the storage
        when first asked for). Only layouts that build such tensors (CSR) implement it."""
        raise NotImplementedError(f"torchlc: the {self.name!r} layout keeps a static support")

    def strides(self, inner: tuple):
        """Strides the wrapper reports (so torch's view-vs-copy decisions match the storage), or None
        for contiguous strides."""
        return None

    # -- policy ----------------------------------------------------------------------------------
    def fits(self, planes: torch.Tensor, support: tuple, monomial: bool, forced: bool) -> bool:
        """Whether results like these should be stored here (``forced``: the user forced this layout
        with :func:`torchlc.layouts.force`; it must still be able to hold the value)."""
        return forced

    def nbytes(self, inner: tuple) -> int:
        return sum(t.numel() * t.element_size() for t in inner)

    def __repr__(self):
        return f"<torchlc layout {self.name!r}>"

    def __reduce__(self):  # layouts pickle by name
        return get, (self.name,)


def register(layout: Layout) -> Layout:
    """Add a layout to the registry; a second layout of the same name raises."""
    if not layout.name:
        raise ValueError("a torchlc layout needs a name")
    if layout.name in _REGISTRY:
        raise ValueError(f"torchlc: a layout named {layout.name!r} is already registered")
    _REGISTRY[layout.name] = layout
    return layout


def get(name: str) -> Layout:
    """The registered layout called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; choose one of {names()}") from None


def names() -> tuple:
    return tuple(_REGISTRY)


def registered() -> tuple:
    return tuple(_REGISTRY.values())
