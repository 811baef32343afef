"""torchlc: exact non-standard derivatives of any PyTorch program in the Levi-Civita field.

``model(x.nonstd())`` runs a model on x + ε and returns exact one-sided derivatives; jumps of step,
sign, round, floor, comparisons and branches appear as ε⁻¹ coefficients (Dirac masses).

Example:
    >>> import torch, torchlc
    >>> torchlc.ngrad(torch.round, torch.tensor(0.5))
    LCTensor(1.0ε⁻¹, order=0)
"""

from __future__ import annotations

import torch

from . import _autograd, datasets, layouts, nn, ops  # noqa: F401  (they install rules and hooks)
from ._compile import compile
from ._graphs import set_cuda_graphs
from ._smoothing import smoothing
from ._tensor import LCTensor
from .api import (
    coeff,
    coeffs,
    eps,
    exact_through,
    from_csr,
    from_terms,
    is_lc,
    layout,
    leading,
    ngrad,
    njacfwd,
    njvp,
    nonstd,
    order,
    standard_part,
    support,
    terms,
    to_csr,
)
from .errors import DomainError, TermBudgetError, TruncationError, is_strict, strict
from .ops import register_linear_op

__version__ = "0.1.0"

__all__ = [
    "LCTensor", "nonstd", "eps", "from_terms", "terms", "coeff", "coeffs", "support", "exact_through",
    "order", "standard_part", "leading", "layout", "from_csr", "to_csr", "ngrad", "njvp", "njacfwd", "is_lc", "DomainError",
    "TruncationError", "TermBudgetError", "strict", "is_strict", "layouts", "compile", "register_linear_op", "smoothing", "nn", "datasets",
    "set_cuda_graphs",
]


def _tensor_nonstd(self, v=None, *, order=1):
    return nonstd(self, v, order=order)


_tensor_nonstd.__doc__ = nonstd.__doc__
torch.Tensor.nonstd = _tensor_nonstd
