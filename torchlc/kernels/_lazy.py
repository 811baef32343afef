"""Triton, imported only when a kernel is first needed.

``import torchlc`` never imports Triton (it costs ~0.1 s and, on a CPU-only machine, is never
needed). The eligibility checks of the kernels (device, dtype, contiguity) read :data:`HAVE_TRITON`,
which asks the import system whether the package exists without importing it; the ``@triton.jit``
kernels live in the private modules ``torchlc.kernels._triton_*``, which :func:`kernels` imports the
first time a rule is about to launch one (a CUDA tensor, or a CPU tensor under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util


def _find_triton() -> bool:
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # a broken or half-imported package
        return False


HAVE_TRITON = _find_triton()
"""Whether a ``triton`` package is installed (found without importing it)."""


@functools.cache
def triton_ready() -> bool:
    """Whether Triton imports: called (and Triton imported) only once a kernel is about to run, so
    that an installed but broken Triton turns the fused paths off instead of failing the op."""
    if not HAVE_TRITON:
        return False
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def kernels(name: str):
    """The module ``torchlc.kernels.<name>`` of ``@triton.jit`` kernels (imports Triton)."""
    return importlib.import_module(f"{__package__}.{name}")


def cdiv(n: int, d: int) -> int:
    """``triton.cdiv`` without importing Triton."""
    return (n + d - 1) // d


def next_power_of_2(n: int) -> int:
    """``triton.next_power_of_2`` for n ≥ 1 without importing Triton."""
    return 1 << (n - 1).bit_length()
