"""Hard (discontinuous) layers whose training derivative is chosen by :mod:`torchlc.smoothing`.

Each module computes its exact hard forward value (at train and at test time). Its derivative is

* the smoothed one (semantics §6) of its own ``smoothing=`` option when given — a
  :class:`torchlc.smoothing`, or a number (a Gaussian of that width);
* otherwise that of the innermost active ``with torchlc.smoothing(...)`` context;
* otherwise the exact one: zero through the jumps (LC inputs show the Dirac masses as ε⁻¹ terms).

``smoothing=False`` forces the exact derivative even inside a context.

Example:
    >>> import torch, torchlc
    >>> from torchlc.nn import Heaviside
    >>> step = Heaviside(smoothing=0.5)
    >>> x = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    >>> y = step(x); y
    tensor([0., 0., 1.], grad_fn=<_HeavisideBackward>)
    >>> y.sum().backward(); x.grad                      # φ(x/σ)/σ, σ = 0.5
    tensor([0.1080, 0.7979, 0.4839])
"""

from __future__ import annotations

import torch
from torch import nn

from . import _context
from ._smoothing import smoothing as _smoothing

__all__ = ["Heaviside", "Sign", "Round", "HardArgmaxOneHot"]


def _resolve(opt):
    if opt is False:
        return None
    if opt is None:
        return _context.smoothing()
    if isinstance(opt, _smoothing):
        return opt
    if isinstance(opt, (int, float)):
        return _smoothing(float(opt))
    raise TypeError(f"smoothing= must be None, False, a number or torchlc.smoothing(...), not {opt!r}")


class _Hard(nn.Module):
    def __init__(self, smoothing=None):
        super().__init__()
        if isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool):
            smoothing = _smoothing(float(smoothing))
        self.smoothing = smoothing

    def extra_repr(self):
        return "" if self.smoothing is None else f"smoothing={self.smoothing!r}"


class Heaviside(_Hard):
    """H(x) = 1 for x > 0, 0 for x < 0, ``value`` at 0 (jump 1 at 0)."""

    def __init__(self, value: float = 0.0, smoothing=None):
        super().__init__(smoothing)
        self.value = float(value)
        self._values = None

    def forward(self, x):
        v = self._values
        if v is None or v.dtype != x.dtype or v.device != x.device:
            v = self._values = torch.tensor(self.value, dtype=x.dtype, device=x.device)
        return _smoothing.apply(_resolve(self.smoothing), "heaviside", x, v)


class Sign(_Hard):
    """sign(x) ∈ {−1, 0, 1} (jump 2 at 0)."""

    def forward(self, x):
        return _smoothing.apply(_resolve(self.smoothing), "sign", x)


class Round(_Hard):
    """torch.round(x, decimals) (half to even; jumps 10⁻ᵈ at every (n + ½)·10⁻ᵈ)."""

    def __init__(self, decimals: int = 0, smoothing=None):
        super().__init__(smoothing)
        self.decimals = int(decimals)

    def forward(self, x):
        return _smoothing.apply(_resolve(self.smoothing), "round", x, decimals=self.decimals)

    def extra_repr(self):
        s = super().extra_repr()
        return f"decimals={self.decimals}" + (", " + s if s else "")


class HardArgmaxOneHot(_Hard):
    """one_hot(argmax(z, -1)) as floats (ties: first index, like torch.argmax).

    Smoothed derivative: each boundary between the winner i* and another class j is a unit step in
    z_{i*} − z_j, so d onehot = Σ_j K_h(z_{i*} − z_j)·(e_{i*} − e_j)·(dz_{i*} − dz_j). It is exact (the
    smoothed jump) for the runner-up boundary; for the others it is the jump the one-hot would make
    if j were the runner-up. It conserves Σ_i onehot_i = 1."""

    def forward(self, z):
        # an LC input without smoothing is exact: the decision uses the field's order (ties: ε-terms)
        return _smoothing.apply(_resolve(self.smoothing), "argmax_onehot", z)
