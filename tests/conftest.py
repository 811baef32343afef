"""Suite-wide guards: a test may not leak global torch state into the next one."""

from __future__ import annotations

import os

import pytest
import torch

# The Inductor-fused CPU kernels (torchlc.kernels.cpu) compile once per process and function, seconds
# each; the suite checks them in tests/kernels/test_cpu_fusion.py and runs everything else on the
# torch formulas (the same numbers, bit for bit), so test processes never stall on a compile.
os.environ.setdefault("TORCHLC_CPU_FUSION", "0")


@pytest.fixture(autouse=True)
def _restore_default_dtype():
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
