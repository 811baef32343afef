"""Fused Triton kernels for hot first-order rules (two planes: ε⁰ and ε¹).

A rule asks :func:`usable` whether its planes can take the fused path (CUDA, or the CPU under
``TRITON_INTERPRET=1`` for tests; two contiguous planes; no autograd recording) and otherwise runs
its plain-torch formula. Both paths compute the same numbers.
"""

from . import cpu
from .elementwise import (
    ANALYTIC2,
    abs2,
    analytic2,
    floor2,
    heaviside2,
    mul2,
    powint2,
    relu2,
    usable,
)

__all__ = ["ANALYTIC2", "abs2", "analytic2", "floor2", "fused", "heaviside2", "mul2", "powint2", "relu2", "usable"]

_TRITON = {"abs": abs2, "relu": relu2, "floor": floor2}


def fused(name: str, planes):
    """The fused first-order rule ``name`` ("abs", "relu", "floor") on planes (2, *shape): Triton on
    CUDA, Inductor on large CPU tensors; None when neither applies (use the torch formulas)."""
    if usable(planes):
        return _TRITON[name](planes)
    if cpu.usable(planes):
        return cpu.run(name, planes)
    return None
