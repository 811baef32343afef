"""Smoothed derivatives of discontinuous ops for training (semantics §6): the implementation of
``torchlc.smoothing``.

Inside ``with torchlc.smoothing(width=h, kernel="gaussian"):`` every discontinuous primitive keeps its
exact forward value, and its derivative becomes regular part + Σ_k J_k · K_h(z − z_k), where z_k are
the jump points of the primitive near its argument z, J_k the exact jumps there and K_h(u) = K(u/h)/h
a kernel of unit mass (every primitive here is piecewise constant: the regular part is zero). The
same density serves

* **forward mode** (LC arithmetic, :mod:`.forward`): on an LCTensor x = a + d the result is
  f(a) + Σ_{m≥1} F_h^{(m)}(a)/m! · d^m: the ε⁰ plane is the exact value at the standard point, the
  ε¹ plane (at order 1) the smoothed directional derivative;
* **reverse mode** (plain-tensor autograd, :mod:`.functions`): ``torch.autograd.Function`` s with the
  exact forward and backward ``grad · g(x)``; forward-mode AD (``torch.func.jvp``) uses the same g.

Outside every block, gradients are the exact ones: zero through jumps, with the Dirac masses visible
to :func:`torchlc.ngrad` as ε⁻¹ terms.

Modules, each one idea, imports pointing down the list:

* :mod:`.kernels` — the kernels and the jump structure of each primitive (plain tensors only);
* :mod:`.forward` — the LC forward rule (what ``torchlc.ops.discontinuous`` calls while smoothed);
* :mod:`.functions` — the autograd Functions and :func:`apply` (used by :mod:`torchlc.nn`);
* :mod:`.handlers` — the soft companions of bool results and the torch-function handler table;
* :mod:`.mode` — the torch function mode and its per-thread, refcounted installation;
* :mod:`.config` — the ``smoothing`` class: blocks, decorator, and the methods the rules call.

State: none here. The active configuration is the innermost entry of ``_context.SMOOTHING`` (a
context-local stack: thread, asyncio task, generator-safe); the rules of ``torchlc.ops`` read it with
``_context.smoothing()`` and call its ``lc_rule`` method, so the rules layer never imports this
package (which sits above it).

Why the public name is the class. ``torchlc.smoothing`` is :class:`~.config.smoothing` itself, and
its helpers (``soft``, ``exact``, ``current``, ``apply``, ``jump_density``, ``Kernel``, ``KERNELS``)
are documented class attributes. The implementation lives in this private package, so no module
named ``torchlc.smoothing`` exists to be shadowed: ``torchlc.smoothing`` is one object whatever was
imported first, ``isinstance(cfg, torchlc.smoothing)`` holds, and tools (help, type checkers, docs)
see an ordinary class. A callable module would keep ``import torchlc.smoothing`` working, but through
a module-type swap that those tools do not understand; the price of the class is that the name is
imported as ``from torchlc import smoothing`` (not ``from torchlc.smoothing import ...``).
"""

from __future__ import annotations

from .config import smoothing
from .functions import apply
from .handlers import exact, soft
from .kernels import KERNELS, Kernel, jump_density

__all__ = ["smoothing", "Kernel", "KERNELS", "jump_density", "apply", "soft", "exact"]
