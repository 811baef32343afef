"""Zero-size inputs (the coverage tool's zero-size samples): where the plain op runs, the LC op runs
and gives the same shapes and values (against torch.func.jvp, float64)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64


def _check(f, *xs):
    vs = tuple(torch.ones_like(x) for x in xs)
    y = f(*(x.nonstd(v) for x, v in zip(xs, vs)))
    p, t = jvp(f, xs, vs)
    ys, ps, ts = ((o,) if isinstance(o, torch.Tensor) else tuple(o) for o in (y, p, t))
    for y_, p_, t_ in zip(ys, ps, ts):
        assert tuple(y_.shape) == tuple(p_.shape)
        if not p_.dtype.is_floating_point:
            assert torch.equal(y_, p_)
            continue
        assert_close(torchlc.coeff(y_, 0), p_, equal_nan=True)
        assert_close(torchlc.coeff(y_, 1), t_, equal_nan=True)


EMPTY = torch.zeros(0, dtype=f64)


def test_median_of_no_elements_is_nan_and_an_empty_dim_raises():
    for f in (torch.median, torch.nanmedian):
        r = f(EMPTY.nonstd())
        assert r.shape == () and math.isnan(torchlc.coeff(r, 0))
        with pytest.raises(IndexError, match="non-zero size"):
            f(torch.zeros(2, 0, dtype=f64).nonstd(), 1)
        _check(lambda x, f=f: f(x, 1).values, torch.zeros(0, 3, dtype=f64))


def test_empty_product_is_one():
    _check(torch.prod, torch.zeros(0, 3, dtype=f64))
    _check(lambda x: torch.prod(x, 0), torch.zeros(0, 3, dtype=f64))
    _check(lambda x: torch.prod(x, 1), torch.zeros(0, 3, dtype=f64))
    assert torchlc.exact_through(torch.prod(torch.zeros(0, dtype=f64).nonstd())) == 1


@pytest.mark.parametrize("f", [
    lambda x: F.max_pool2d(x, 2, return_indices=True),
    lambda x: F.adaptive_max_pool2d(x, (2, 1), return_indices=True),
    lambda x: F.max_pool1d(x.flatten(2), 2),
    lambda x: F.group_norm(x, 2),
])
def test_pools_and_group_norm_on_an_empty_batch(f):
    _check(f, torch.zeros(0, 4, 4, 4, dtype=f64))


def test_factorizations_of_a_matrix_without_infinitesimal_terms():
    # a zero matrix has repeated (zero) singular values and a singular R: refused in general, but
    # with no ε terms A is exactly A0 and A0's factorization is exact
    Z = torch.zeros(4, 3, dtype=f64).nonstd(torch.zeros(4, 3, dtype=f64))
    Q, R = torch.linalg.qr(Z)
    U, S, Vh = torch.linalg.svd(Z, full_matrices=False)
    P = torch.linalg.pinv(Z)
    for y, ref in ((Q, torch.linalg.qr(torch.zeros(4, 3, dtype=f64))[0]), (S, torch.zeros(3, dtype=f64)),
                   (P, torch.zeros(3, 4, dtype=f64))):
        assert torch.equal(torchlc.coeff(y, 0), ref) and torchlc.coeff(y, 1).abs().sum() == 0
    assert torchlc.support(R) == torchlc.support(Z)  # the support never depends on the data
    with pytest.raises(NotImplementedError, match="singular"):
        torch.linalg.qr(torch.zeros(3, 3, dtype=f64).nonstd())  # with ε terms: undetermined


def test_norm_of_an_empty_tensor_is_exact_at_a_higher_order():
    # sqrt of an exact-looking 0 that is only known to order 1: readable once the order is raised
    x = torch.zeros(0, 3, dtype=f64)
    assert torchlc.coeff(torch.linalg.norm(x.nonstd(order=2)), 1).item() == 0.0
