"""Dense exponent planes: ``coeffs`` of shape (T, *shape), plane t holding the coefficient of
ε^support[t]. This is the compute layout: a GEMM runs on ``coeffs.reshape(T*M, K)``, views shift
dimensions by one, and vmap's batch dimension lands at position 1. Storage is the plain tensor, so
this module only holds the dimension helpers that rules share.
"""

from __future__ import annotations

import torch


def broadcast_planes(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """View planes (T, *s) as (T, 1, …, 1, *s) with ``ndim`` element dimensions, for broadcasting."""
    extra = ndim - (p.dim() - 1)
    if extra <= 0:
        return p
    return p.reshape(p.shape[0], *([1] * extra), *p.shape[1:])
