"""Fills with an LC value, masked_select with a broadcast mask and in-place transposes of square
tensors, against torch.func.jvp (float64)."""

import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64


def _check(f, xs, vs):
    y = f(*(x.nonstd(v) for x, v in zip(xs, vs)))
    p, t = jvp(f, tuple(xs), tuple(vs))
    assert_close(torchlc.coeff(y, 0), p)
    assert_close(torchlc.coeff(y, 1), t)


def _rand(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=torch.Generator().manual_seed(seed))


def test_fills_with_an_lc_value_are_linear_in_both():
    x, vx, c, vc = _rand(3, 4), _rand(3, 4, seed=1), _rand((), seed=2), _rand((), seed=3)
    mask = _rand(3, 4, seed=4) > 0
    idx = torch.tensor([0, 2])
    _check(lambda x, c: torch.masked_fill(x, mask, c), (x, c), (vx, vc))
    _check(lambda x, c: torch.index_fill(x, 1, idx, c), (x, c), (vx, vc))
    _check(lambda x, c: torch.fill(x, c), (x, c), (vx, vc))
    # a plain tensor filled with an LC value becomes LC; supports are united
    y = torch.masked_fill(x, mask, torchlc.from_terms({"1/2": torch.tensor(2.0, dtype=f64)}))
    assert [str(q) for q in torchlc.support(y)] == ["0", "1/2"]
    assert torch.equal(torchlc.coeff(y, "1/2"), mask.to(f64) * 2)


def test_masked_select_broadcasts_the_input_to_the_mask():
    x, v = _rand(4), _rand(4, seed=1)
    mask = _rand(3, 4, seed=2) > 0
    _check(lambda x: torch.masked_select(x, mask), (x,), (v,))
    _check(lambda x: torch.masked_select(x.reshape(4, 1), mask.reshape(3, 1, 4)), (x,), (v,))


def test_in_place_transpose_of_a_square_tensor_restrides():
    x = torch.arange(4.0, dtype=f64).reshape(2, 2).nonstd(10 * torch.arange(4.0, dtype=f64).reshape(2, 2))
    y = x.clone()
    y.transpose_(0, 1)
    assert y.stride() == (1, 2)
    assert torch.equal(torchlc.coeff(y, 1), 10 * torch.arange(4.0, dtype=f64).reshape(2, 2).t())
    assert torch.equal(torchlc.coeff(x, 0), torch.arange(4.0, dtype=f64).reshape(2, 2))  # x untouched
