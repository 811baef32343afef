"""Decisions on NaN inputs as PyTorch makes them (semantics §4: selections follow torch).

Every selection/comparison/rounding op on inputs full of ties and NaN, with an ε¹ plane of zeros (so
the field's order is torch's order): LC's ε⁰ plane and integer outputs must equal torch's bit for bit,
NaN where torch has NaN. Where torch leaves the order of tied elements unspecified (topk, mode), only
the values are compared; torch.mode is left out (on NaN input it returns values that are not modes).
One deliberate difference: sign(NaN) is NaN (torch.sign gives 0; a NaN
element has no sign in the field)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torchlc

NAN = float("nan")


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inputs(seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (4, 7), generator=g).double()
    x.view(-1)[torch.randperm(28, generator=g)[:7]] = NAN
    x[0, 2] = float("inf")
    x[3] = NAN  # a row of NaN only
    y = torch.randint(-2, 3, (4, 7), generator=g).double()
    y.view(-1)[torch.randperm(28, generator=g)[:5]] = NAN
    return x.to(device), y.to(device)


def _lift(t):
    return t.nonstd(torch.zeros_like(t))


def _bounds(like):
    return torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64, device=like.device)

# name -> (f(x, y), which outputs to compare: None = all, else indices of the outputs)
OPS = {
    "amax": (lambda x, y: x.amax(1), None),
    "amin": (lambda x, y: x.amin(1), None),
    "max": (lambda x, y: x.max(), None),
    "min": (lambda x, y: x.min(), None),
    "max.dim": (lambda x, y: x.max(1), None),
    "min.dim": (lambda x, y: x.min(1), None),
    "argmax": (lambda x, y: x.argmax(1), None),
    "argmin": (lambda x, y: x.argmin(1), None),
    "sort": (lambda x, y: x.sort(dim=1, stable=True), None),
    "sort descending": (lambda x, y: x.sort(dim=1, descending=True, stable=True), None),
    "argsort": (lambda x, y: x.argsort(dim=1, stable=True), None),
    "msort": (lambda x, y: x.msort(), (0,)),  # values: msort's index order is not stable
    "topk": (lambda x, y: x.topk(3, 1), (0,)),
    "topk smallest": (lambda x, y: x.topk(3, 1, largest=False), (0,)),
    "kthvalue": (lambda x, y: x.kthvalue(2, 1), (0,)),
    "median": (lambda x, y: x.median(1), None),
    "median (all)": (lambda x, y: x.median(), None),
    "nanmedian": (lambda x, y: x.nanmedian(1), (0,)),  # an all-NaN row's index is torch's choice
    "nanmedian (rows with a number)": (lambda x, y: x[:3].nanmedian(1), None),
    "cummax": (lambda x, y: x.cummax(1), None),
    "cummin": (lambda x, y: x.cummin(1), None),
    "maximum": (lambda x, y: torch.maximum(x, y), None),
    "minimum": (lambda x, y: torch.minimum(x, y), None),
    "fmax": (lambda x, y: torch.fmax(x, y), None),
    "fmin": (lambda x, y: torch.fmin(x, y), None),
    "clamp": (lambda x, y: x.clamp(-1, 1), None),
    "clamp (tensor bounds)": (lambda x, y: x.clamp(min=y), None),
    "where": (lambda x, y: torch.where(x > y, x, y), None),
    "relu": (lambda x, y: torch.relu(x), None),
    "relu6": (lambda x, y: F.relu6(x), None),
    "hardtanh": (lambda x, y: F.hardtanh(x), None),
    "hardshrink": (lambda x, y: F.hardshrink(x), None),
    "leaky_relu": (lambda x, y: F.leaky_relu(x), None),
    "abs": (lambda x, y: x.abs(), None),
    "floor": (lambda x, y: x.floor(), None),
    "ceil": (lambda x, y: x.ceil(), None),
    "round": (lambda x, y: x.round(), None),
    "trunc": (lambda x, y: x.trunc(), None),
    "frac": (lambda x, y: x.frac(), None),
    "comparisons": (lambda x, y: (x > y, x >= y, x < y, x <= y, x == y, x != y, x > 0), None),
    "isnan": (lambda x, y: torch.isnan(x), None),
    "nan_to_num": (lambda x, y: torch.nan_to_num(x), None),
    "nansum": (lambda x, y: x.nansum(1), None),
    "nanmean": (lambda x, y: x.nanmean(1), None),
    "searchsorted": (lambda x, y: (torch.searchsorted(_bounds(y), x), torch.searchsorted(_bounds(y), x, right=True)), None),
    "bucketize": (lambda x, y: torch.bucketize(x, _bounds(y)), None),
    "unique": (lambda x, y: torch.unique(x.nan_to_num(nan=7.0)), None),
    "max_pool1d": (lambda x, y: F.max_pool1d(x[None], 3, 2, 1, return_indices=True), None),
    "adaptive_max_pool1d": (lambda x, y: F.adaptive_max_pool1d(x[None], 3, return_indices=True), None),
}


# where torch's CUDA kernel picks another index among tied elements than its CPU kernel (LC gives the
# CPU's on every device): values only there
CUDA_INDEX_CHOICE = {"nanmedian (rows with a number)"}


def _flat(r):
    if isinstance(r, (tuple, list)):
        return [q for e in r for q in _flat(e)]
    return [torchlc.coeff(r, 0) if isinstance(r, torchlc.LCTensor) else r]


def _same(want, got):
    if want.dtype.is_floating_point:
        if got.dtype != want.dtype:
            return False
        bits = torch.int64 if want.dtype == torch.float64 else torch.int32
        fix = lambda t: torch.where(torch.isnan(t), NAN, t).view(bits)  # any NaN payload alike
        return want.shape == got.shape and torch.equal(fix(want), fix(got))
    return want.shape == got.shape and want.dtype == got.dtype and torch.equal(want, got)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", list(OPS))
def test_nan_decisions_as_torch(name, seed, device):
    f, which = OPS[name]
    if device == "cuda" and name in CUDA_INDEX_CHOICE:
        which = (0,)
    x, y = _inputs(seed, device)
    want = _flat(f(x, y))
    got = _flat(f(_lift(x), _lift(y)))
    assert len(want) == len(got)
    for i, (w, o) in enumerate(zip(want, got)):
        if which is None or i in which:
            assert _same(w, o), f"{name}, output {i}:\n torch {w}\n LC    {o}"


def test_sign_of_nan_is_nan():
    x = torch.tensor([NAN, -2.0, 0.0, 3.0], dtype=torch.float64)
    got = torchlc.coeff(torch.sign(_lift(x)), 0)
    assert torch.isnan(got[0]) and torch.equal(got[1:], torch.sign(x[1:]))
