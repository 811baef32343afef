"""The Inductor-fused CPU path for large first-order tensors gives the torch formulas' numbers."""

import pytest
import torch

import torchlc
from torchlc.kernels import cpu as C


def _edge_planes(n, dtype, seed):
    """Planes with zeros of both signs, integers, ±inf, NaN, tiny and huge values in both planes."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g, dtype=dtype)
    b = torch.randn(n, generator=g, dtype=dtype)
    a[::7] = 0.0
    a[1::13] = -0.0
    a[::5] = torch.round(a[::5])
    b[::11] = 0.0
    b[3::17] = -0.0
    fi = torch.finfo(dtype)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, fi.max, fi.tiny, -fi.max],
                           dtype=dtype)
    a[: special.numel()] = special
    b[4 : 4 + special.numel()] = special
    a[100:110] *= fi.max / 4
    b[105:115] *= fi.tiny
    return a, b


def _relu_in_place(x):
    y = x.clone()
    y.relu_()
    return y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_cpu_kernels_equal_torch_formulas(dtype, monkeypatch):
    n = C.MIN_NUMEL
    x = torchlc.from_terms(dict(enumerate(_edge_planes(n, dtype, 0))))
    fns = {
        "abs": torch.abs, "relu": torch.relu, "floor": torch.floor, "relu_": _relu_in_place,
    }
    monkeypatch.setattr(C, "_enabled", True)  # the suite turns fusion off elsewhere (tests/conftest.py)
    assert C.usable(torchlc.coeffs(x))
    monkeypatch.setattr(C, "_enabled", False)
    ref = {k: torchlc.coeffs(f(x)) for k, f in fns.items()}
    monkeypatch.setattr(C, "_enabled", True)
    C._compiled.clear()
    got = {k: torchlc.coeffs(f(x)) for k, f in fns.items()}
    assert C._enabled, "fusion fell back (no C++ toolchain?)"
    assert {k for k, _ in C._compiled} == set(C.FORMULAS)  # each took the fused loop
    for k in fns:
        r, o = ref[k], got[k]
        assert r.dtype == o.dtype and r.shape == o.shape, k
        # bit for bit, the sign of zeros and NaNs included
        assert torch.equal(r.view(torch.int64 if dtype == torch.float64 else torch.int32),
                           o.view(torch.int64 if dtype == torch.float64 else torch.int32)) or \
            torch.equal(torch.isnan(r), torch.isnan(o)) and torch.equal(
                torch.where(torch.isnan(r), 0, r).view(torch.int64 if dtype == torch.float64 else torch.int32),
                torch.where(torch.isnan(o), 0, o).view(torch.int64 if dtype == torch.float64 else torch.int32)), k


def test_fused_cpu_path_declines_what_it_cannot_take(monkeypatch):
    monkeypatch.setattr(C, "_enabled", True)
    P = torch.randn(2, C.MIN_NUMEL)
    assert C.usable(P) and C.usable(P, P.clone())
    assert not C.usable(P[:, :-1])  # too small
    assert not C.usable(P.t().contiguous().t())  # not contiguous
    assert not C.usable(P.half())
    assert not C.usable(P, P.double())
    assert not C.usable(P, torch.randn(2, C.MIN_NUMEL + 1))
    assert not C.usable(P.requires_grad_())
    with torch.no_grad():
        assert C.usable(P)


POOLS = [
    # (input shape, max_pool args: kernel, stride, padding, dilation, ceil_mode; NaN in the input)
    ((2, 64, 16, 16), (3, 2, 1), False),  # a ResNet stem
    ((2, 64, 16, 16), (3, 2, 1), True),
    ((3, 8, 9, 8), ((3, 2), (2, 1), (1, 0), (1, 2), True), True),
    ((2, 16, 6, 6, 6), (3, 2, 1), True),  # 3-d
    ((16, 9, 9), (2, 2, 1, 1, True), False),  # unbatched
]


@pytest.mark.parametrize("shape,args,nan", POOLS)
def test_fused_cpu_max_pool_equals_torch_formulas(shape, args, nan, monkeypatch):
    """Max pooling's window formula compiled (batch and channels one dynamic dim) against eager: values
    and indices bit for bit, on ties (small integers) with ±inf; with NaN in either plane the eager
    formula runs, and the result is the same as with fusion off."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(len(shape))
    x = torch.randint(-2, 3, shape, generator=g).float()
    v = torch.randint(-2, 3, shape, generator=g).float()
    x.view(-1)[::29] = float("inf")
    if nan:
        x.view(-1)[::37] = float("nan")
        v.view(-1)[5::41] = float("nan")
    f = F.max_pool3d if len(shape) == 5 else F.max_pool2d
    monkeypatch.setattr(C, "_enabled", False)
    with torch.no_grad():
        want_v, want_i = f(x.nonstd(v), *args, return_indices=True)
    monkeypatch.setattr(C, "_enabled", True)
    C._dynamo.clear()
    with torch.no_grad():
        got_v, got_i = f(x.nonstd(v), *args, return_indices=True)
    # planes with NaN take the eager formula (see ops.pool.max_pool_with_indices)
    assert C._enabled and bool(C._dynamo) != nan, "the compiled window formula was (not) taken"
    bits = lambda t: torch.where(torch.isnan(t), float("nan"), t).view(torch.int32)  # noqa: E731
    assert torch.equal(bits(torchlc.coeffs(got_v)), bits(torchlc.coeffs(want_v)))
    assert torch.equal(got_i, want_i)
