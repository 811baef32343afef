"""Dense exponent planes: ``coeffs`` of shape (T, *shape), plane t holding the coefficient of
ε^support[t]. This is the compute layout: a GEMM runs on ``coeffs.reshape(T*M, K)``, views shift
dimensions by one, and vmap's batch dimension lands at position 1. Its codec is the identity.
"""

from __future__ import annotations

from ._base import Layout, register

__all__ = ["PLANES"]


class Planes(Layout):
    name = "planes"
    inner_names = ("_t0",)
    element_dims_offset = 1

    def encode(self, planes, support):
        return (planes,)

    def decode(self, inner, support, shape, dtype):
        return inner[0]

    def strides(self, inner):
        return inner[0].stride()[1:]

    def fits(self, planes, support, monomial, forced):
        return True  # every value, every tensor: the fallback of the policy


PLANES = register(Planes())
