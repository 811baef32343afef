"""The smoothing configuration: the public ``torchlc.smoothing`` class (context manager, decorator,
per-module option) and the object the rules call while a block is active.

A block is one entry on the context-local stack ``_context.SMOOTHING``: entering pushes it (and
installs this thread's torch function mode, :mod:`.mode`), exiting removes exactly that entry
wherever it sits, so blocks of generators, threads and asyncio tasks may exit in any order.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from .. import _context
from . import forward, handlers, kernels, mode
from .functions import apply

__all__ = ["smoothing"]

# the mode token of every open block, by its entry on _context.SMOOTHING (entries are unique objects)
_OPEN: dict = {}


class smoothing:  # noqa: N801  (lowercase: it is used like a function, ``with torchlc.smoothing(h):``)
    """Smoothed derivatives of discontinuous ops (semantics §6): a context manager, a decorator and a
    per-module option of :mod:`torchlc.nn`.

    Inside ``with torchlc.smoothing(width=h, kernel="gaussian"):`` every discontinuous primitive keeps
    its exact forward value, and its derivative — the ε-part of LC arithmetic and the backward of
    plain autograd alike — becomes Σ_k J_k · K_h(z − z_k): the exact jumps J_k at the jump points z_k
    near the argument z, times a unit-mass kernel K_h(u) = K(u/h)/h.

    Args:
        width: kernel width h > 0 in units of the jump variable (σ for ``"gaussian"``, the scale s of
            σ(z/s) for ``"logistic"``, the half-support for ``"triangle"``/``"uniform"``/
            ``"epanechnikov"``).
        kernel: a name in :attr:`KERNELS` or a :class:`Kernel`.

    Blocks nest (the innermost wins), are re-entrant and context-local: another thread, or an asyncio
    task created outside the block, is not smoothed, and blocks may exit in any order (each removes
    its own entry). One object entered by several blocks of one context that exit out of order (two
    generators sharing it) loses its innermost entry first: create one object per block there.
    Modules of :mod:`torchlc.nn` take a ``smoothing=`` argument that applies to them only.

    Helpers (class attributes, ``torchlc.smoothing.<name>``):

    * :attr:`Kernel` — the kernel type; :attr:`KERNELS` — the kernels by name;
    * :meth:`current` — the innermost active config of this context (None outside every block);
    * :meth:`soft` / :meth:`exact` — the soft companion of a bool mask produced under smoothing / the
      mask without it;
    * :meth:`apply` — ``apply(cfg, name, x, ...)``: one primitive under config ``cfg`` (None: exact);
    * :meth:`jump_density` — ``jump_density(name, z, width, kernel)``: the smoothed derivative g(z).

    Example:
        >>> import torch, torchlc
        >>> x = torch.tensor(0.0, requires_grad=True)
        >>> with torchlc.smoothing(0.5):
        ...     torch.heaviside(x, torch.tensor(0.0)).backward()
        >>> round(x.grad.item(), 4)                           # φ(0)/σ for σ = 0.5
        0.7979
        >>> with torchlc.smoothing(0.5):
        ...     y = torch.heaviside(torch.tensor(0.0).nonstd(), torch.tensor(0.0))
        >>> y                                                  # exact value H(0) = 0, smoothed ε-part
        LCTensor(0.797885ε, order=1)
    """

    #: The kernel type: a unit-mass K(u) with its derivatives, reach and peak.
    Kernel = kernels.Kernel
    #: The kernels by name (with the aliases ``"sigmoid"``, ``"ste"``, ``"normal"``).
    KERNELS = kernels.KERNELS
    current = staticmethod(_context.smoothing)
    soft = staticmethod(handlers.soft)
    exact = staticmethod(handlers.exact)
    apply = staticmethod(apply)
    jump_density = staticmethod(kernels.jump_density)

    __slots__ = ("width", "kernel")

    def __init__(self, width: float, kernel="gaussian"):
        width = float(width)
        if not width > 0 or not math.isfinite(width):
            raise ValueError(f"torchlc.smoothing: width must be a positive finite number, got {width}")
        self.width = width
        self.kernel = kernels.get_kernel(kernel)

    def __repr__(self):
        return f"torchlc.smoothing(width={self.width:g}, kernel={self.kernel.name!r})"

    def cache_key(self):
        """(width, kernel): equal for configs that compute the same numbers (torchlc.compile's key).
        A registered kernel is named; another one is the :class:`Kernel` itself (hashable)."""
        k = self.kernel
        return (self.width, k.name if kernels.KERNELS.get(k.name) is k else k)

    # -- blocks -----------------------------------------------------------------------------------------
    def __enter__(self):
        entry = _context.SMOOTHING.push(self)
        _OPEN[entry] = mode.activate()
        return self

    def __exit__(self, *exc):
        entry = _context.SMOOTHING.innermost(self)
        if entry is not None:  # None: exited in a context that did not enter it (nothing of ours here)
            _context.SMOOTHING.remove(entry)
            token = _OPEN.pop(entry, None)
            if token is not None:
                mode.deactivate(token)
        return False

    @contextlib.contextmanager
    def _block(self):
        """One block with its own entry (the decorator's: exact even when calls interleave)."""
        entry = _context.SMOOTHING.push(self)
        token = mode.activate()
        try:
            yield self
        finally:
            _context.SMOOTHING.remove(entry)
            mode.deactivate(token)

    def __call__(self, fn):
        """Use as a decorator: ``@torchlc.smoothing(0.5)`` smooths every call of ``fn``."""

        @functools.wraps(fn)
        def inner(*a, **k):
            with self._block():
                return fn(*a, **k)

        return inner

    # -- what the rules call ----------------------------------------------------------------------------
    def density(self, name, z, decimals=0):
        """Smoothed derivative g(z) of primitive ``name`` (plain tensor z)."""
        return kernels.jump_density(name, z, self.width, self.kernel, decimals)

    def vjp(self, g, name, z, decimals=0):
        """g · density(name, z): the backward of a jump op (a fused fast path for single jumps)."""
        J = kernels.SINGLE_JUMPS.get(name)
        if J is None or torch.is_grad_enabled() or self.kernel is not kernels.KERNELS["gaussian"]:
            return g * self.density(name, z, decimals)
        # Gaussian single jump: J·exp(−z²/2h²)/(h√2π)·g in five in-place kernels, one allocation
        h = self.width
        t = z.square()
        t.mul_(-0.5 / (h * h)).exp_().mul_(g).mul_(J / (h * kernels.SQRT2PI))
        return t

    def increment(self, name, x, decimals=0):
        """(inc, a, bad, s): the Series of the smoothed increment F_h(a + d) − F_h(a) of an LC argument
        x = a + d, its standard part, its infinite elements and its Series (see :func:`.forward.increment`)."""
        return forward.increment(self, name, x, decimals)

    def lc_rule(self, name, rule, func, args, kwargs):
        """The smoothed result of jump primitive ``name`` whose exact LC rule is ``rule``: what the
        rules of :mod:`torchlc.ops.discontinuous` call while this config is the innermost one."""
        return forward.lc_rule(self, name, rule, func, args, kwargs)
