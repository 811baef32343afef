"""``*_like`` and ``new_*`` factories: real-valued LCTensors (only the ε⁰ term nonzero; the support may
include the source's exponents so later in-place LC writes fit) with the source's order, dtype and
device; integer/bool dtypes give plain tensors."""

from fractions import Fraction as F

import pytest
import torch

import torchlc

f64 = torch.float64
X = torch.tensor([1.0, 2.0], dtype=f64).nonstd(order=2)


def only_real_terms(y):
    """Every plane other than ε⁰ is exactly zero."""
    return all(bool((c == 0).all()) for q, c in torchlc.terms(y).items() if q != 0)


def real_lc(y, want):
    assert isinstance(y, torchlc.LCTensor)
    assert F(0) in torchlc.support(y) and only_real_terms(y)
    assert torchlc.order(y) == 2
    assert torchlc.exact_through(y) == 2
    assert y.dtype == want.dtype and y.device == want.device
    assert torch.equal(torchlc.coeff(y, 0), want)


@pytest.mark.parametrize(
    "name,make,want",
    [
        ("zeros_like", lambda: torch.zeros_like(X), torch.zeros(2, dtype=f64)),
        ("ones_like", lambda: torch.ones_like(X), torch.ones(2, dtype=f64)),
        ("full_like", lambda: torch.full_like(X, 3.5), torch.full((2,), 3.5, dtype=f64)),
        ("zeros_like_f32", lambda: torch.zeros_like(X, dtype=torch.float32), torch.zeros(2)),
        ("new_zeros", lambda: X.new_zeros((2, 2)), torch.zeros(2, 2, dtype=f64)),
        ("new_ones", lambda: X.new_ones(3), torch.ones(3, dtype=f64)),
        ("new_full", lambda: X.new_full((2,), 7.0), torch.full((2,), 7.0, dtype=f64)),
        ("new_zeros_f32", lambda: X.new_zeros(2, dtype=torch.float32), torch.zeros(2)),
    ],
)
def test_deterministic_factories(name, make, want):
    real_lc(make(), want)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: torch.empty_like(X), (2,)),
        (lambda: X.new_empty((1, 3)), (1, 3)),
        (lambda: torch.rand_like(X), (2,)),
        (lambda: torch.randn_like(X), (2,)),
    ],
)
def test_random_and_empty_factories_are_real_lc(make, shape):
    y = make()
    assert isinstance(y, torchlc.LCTensor)
    assert y.shape == shape and y.dtype == f64
    assert only_real_terms(y) and torchlc.order(y) == 2


def test_rand_like_is_in_unit_interval():
    torch.manual_seed(0)
    y = torch.rand_like(torch.zeros(1000, dtype=f64).nonstd())
    c = torchlc.coeff(y, 0)
    assert bool(((c >= 0) & (c < 1)).all())


def test_non_float_dtypes_give_plain_tensors():
    for y in (torch.zeros_like(X, dtype=torch.int64), X.new_zeros(2, dtype=torch.bool),
              torch.ones_like(X, dtype=torch.int32), X.new_full((2,), 3, dtype=torch.int64)):
        assert type(y) is torch.Tensor


def test_new_tensor_is_plain_data():
    y = X.new_tensor([1.0, 2.0])
    assert not isinstance(y, torchlc.LCTensor) or only_real_terms(y)
    assert torch.equal(torchlc.coeff(y, 0) if isinstance(y, torchlc.LCTensor) else y,
                       torch.tensor([1.0, 2.0], dtype=f64))


def test_factory_then_lc_arithmetic():
    h = torch.zeros_like(X) + X * X
    assert torchlc.order(h) == 2
    assert {q: c.tolist() for q, c in torchlc.terms(h).items()} == {F(0): [1.0, 4.0], F(1): [2.0, 4.0],
                                                                   F(2): [1.0, 1.0]}
    o = X.new_ones(2) / X     # 1/(a + ε) at order 2
    assert torchlc.coeff(o, 2).tolist() == [1.0, 0.125]


def test_factories_of_boxed_source():
    b = torchlc.from_terms({1: torch.tensor([1.0, 0.0]), 2: torch.tensor([0.0, 1.0])})
    assert torchlc.layout(b) == "boxed"
    y = torch.ones_like(b)
    assert y.dtype == torch.float32 and torch.equal(torchlc.coeff(y, 0), torch.ones(2))
    assert only_real_terms(y)


def test_zero_inplace():
    z = X.clone()
    assert z.zero_() is z
    assert only_real_terms(z)
    assert torch.equal(torchlc.coeff(z, 0), torch.zeros(2, dtype=f64))


@pytest.mark.parametrize("case", ["setitem", "iadd"])
def test_new_zeros_then_lc_updates(case):
    h = X.new_zeros(2)
    if case == "setitem":
        h[0] = X[1]
        assert torchlc.coeff(h, 0).tolist() == [2.0, 0.0]
        assert torchlc.coeff(h, 1).tolist() == [1.0, 0.0]
    else:
        h += X
        assert torchlc.coeff(h, 1).tolist() == [1.0, 1.0]
