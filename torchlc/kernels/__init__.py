"""Fused Triton kernels for hot first-order rules (two planes: ε⁰ and ε¹).

A rule asks :func:`usable` whether its planes can take the fused path (CUDA, or the CPU under
``TRITON_INTERPRET=1`` for tests; two contiguous planes; no autograd recording) and otherwise runs
its plain-torch formula. Both paths compute the same numbers.
"""

from .elementwise import ANALYTIC2, abs2, analytic2, floor2, heaviside2, mul2, relu2, usable

__all__ = ["ANALYTIC2", "abs2", "analytic2", "floor2", "heaviside2", "mul2", "relu2", "usable"]
