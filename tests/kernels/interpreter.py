"""Run test code under the Triton interpreter in a subprocess (``TRITON_INTERPRET=1`` must be set
before triton is imported, so it cannot be switched on inside this process).

Triton's interpreter before 3.7 converts one-element arrays to Python ints with ``int(array)``, which
NumPy 2.5 refuses; kernels with loops over runtime bounds then fail inside the interpreter itself
(``for kh in range(KH)``). That is the environment, not the kernel: such a run is skipped with the
versions named, and the compiled kernels are checked on CUDA by ``tests/test_gpu.py``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: the message of NumPy ≥ 2.5 for ``int()`` of a non-0-d array, raised from Triton's interpreter
_NUMPY_INCOMPATIBLE = "only 0-dimensional arrays can be converted to Python scalars"


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``python *args`` with ``TRITON_INTERPRET=1``; skips when the interpreter cannot run this NumPy."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode and _NUMPY_INCOMPATIBLE in r.stdout + r.stderr and "triton/runtime/interpreter.py" in r.stdout + r.stderr:
        import numpy
        import triton

        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run loops with runtime bounds under "
                    f"NumPy {numpy.__version__} (int() of a one-element array); tests/test_gpu.py checks "
                    "the compiled kernels on CUDA")
    return r
