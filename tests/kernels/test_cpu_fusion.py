"""The Inductor-fused CPU path for large first-order tensors gives the torch formulas' numbers."""

import pytest
import torch

import torchlc
from torchlc.kernels import cpu as C


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_cpu_kernels_equal_torch_formulas(dtype, monkeypatch):
    n = C.MIN_NUMEL
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, generator=g, dtype=dtype)
    b = torch.randn(n, generator=g, dtype=dtype)
    a[::7] = 0.0
    a[::5] = torch.round(a[::5])
    b[::11] = 0.0
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0], dtype=dtype)
    a[: special.numel()] = special
    b[4 : 4 + special.numel()] = special
    x = torchlc.from_terms({0: a, 1: b})
    fns = (torch.abs, torch.relu, torch.floor)
    monkeypatch.setattr(C, "_enabled", True)  # the suite turns fusion off elsewhere (tests/conftest.py)
    assert C.usable(torchlc.coeffs(x))
    monkeypatch.setattr(C, "_enabled", False)
    ref = [torchlc.coeffs(f(x)) for f in fns]
    monkeypatch.setattr(C, "_enabled", True)
    got = [torchlc.coeffs(f(x)) for f in fns]
    assert C._enabled, "fusion fell back (no C++ toolchain?)"
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r, rtol=0, atol=0, equal_nan=True)
