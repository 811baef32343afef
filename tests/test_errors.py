"""Every error path of the public contract (semantics §2–§4, docs/api.md)."""

import math
from fractions import Fraction as F

import pytest
import torch

import torchlc

f64 = torch.float64


def s(v=0.0):
    return torch.tensor(v, dtype=f64)


def has_nan(y):
    return any(bool(torch.isnan(c).any()) for c in torchlc.terms(y).values())


def all_nan_elements(y):
    """Per element: does any coefficient plane hold NaN there."""
    planes = list(torchlc.terms(y).values())
    out = torch.zeros(y.shape, dtype=torch.bool)
    for c in planes:
        out |= torch.isnan(c)
    return out


INF = lambda: torchlc.eps(-1, dtype=f64)                               # noqa: E731
NEG = lambda: torchlc.from_terms({0: -1.0, 1: 1.0}, dtype=f64)         # noqa: E731
TINY = lambda: torchlc.eps(1, dtype=f64)                               # noqa: E731

# (name, thunk) of results outside the field
OUTSIDE = [
    ("exp(inf)", lambda: torch.exp(INF())),
    ("expm1(inf)", lambda: torch.expm1(INF())),
    ("sin(inf)", lambda: torch.sin(INF())),
    ("cos(inf)", lambda: torch.cos(INF())),
    ("tanh(inf)", lambda: torch.tanh(INF())),
    ("sigmoid(inf)", lambda: torch.sigmoid(INF())),
    ("erf(inf)", lambda: torch.erf(INF())),
    ("log(inf+1)", lambda: torch.log(INF() + 1)),
    ("log(negative)", lambda: torch.log(NEG())),
    ("log(infinitesimal)", lambda: torch.log(TINY())),
    ("log(-infinitesimal)", lambda: torch.log(-TINY())),
    ("log1p(-1+eps)", lambda: torch.log1p(torchlc.from_terms({0: -1.0, 1: 1.0}, dtype=f64))),
    ("sqrt(negative)", lambda: torch.sqrt(NEG())),
    ("sqrt(-eps)", lambda: torch.sqrt(-TINY())),
    ("pow(negative, 1/2)", lambda: NEG() ** 0.5),
    ("pow(negative, 3/4)", lambda: NEG() ** F(3, 4)),
    ("floor(inf)", lambda: torch.floor(INF())),
    ("ceil(inf)", lambda: torch.ceil(-INF())),
    ("round(inf)", lambda: torch.round(INF())),
    ("trunc(inf)", lambda: torch.trunc(INF())),
]


@pytest.mark.parametrize("name,thunk", OUTSIDE, ids=[n for n, _ in OUTSIDE])
def test_outside_field_is_nan_by_default(name, thunk):
    y = thunk()
    assert isinstance(y, torchlc.LCTensor)
    assert has_nan(y), f"{name}: expected NaN coefficients, got {y!r}"


@pytest.mark.parametrize("name,thunk", OUTSIDE, ids=[n for n, _ in OUTSIDE])
def test_outside_field_raises_in_strict(name, thunk):
    with torchlc.strict():
        with pytest.raises(torchlc.DomainError):
            thunk()
    # leaving the context restores the default
    assert has_nan(thunk())


def test_nan_is_per_element():
    x = torchlc.from_terms({-1: torch.tensor([1.0, 0.0], dtype=f64),
                            0: torch.tensor([0.0, 2.0], dtype=f64)}, dtype=f64)
    y = torch.exp(x)
    assert all_nan_elements(y).tolist() == [True, False]
    assert torchlc.coeff(y, 0)[1].item() == math.exp(2.0)


def test_inside_field_does_not_raise_in_strict():
    with torchlc.strict():
        x = s(0.5).nonstd()
        torch.exp(x), torch.log(x), torch.sqrt(x), torch.floor(x), torch.sin(torchlc.eps(dtype=f64))
        torchlc.from_terms({0: -8.0, 1: 1.0}, dtype=f64) ** F(1, 3)    # odd denominator


def test_domain_error_is_exported():
    assert issubclass(torchlc.DomainError, Exception)
    assert issubclass(torchlc.TruncationError, Exception)


# ----------------------------------------------------------------------------- truncation
def test_coeff_above_exact_through_names_the_order():
    y = torchlc.eps(-1, dtype=f64) * (s(1.0).nonstd() ** 2)    # ε⁻¹(1+ε)², ε² lost: exact through 0
    assert torchlc.exact_through(y) == 0
    with pytest.raises(torchlc.TruncationError) as ei:
        torchlc.coeff(y, 1)
    msg = str(ei.value)
    assert "2" in msg and "order" in msg.lower(), msg
    y2 = torchlc.eps(-2, dtype=f64) * (s(1.0).nonstd() ** 2)   # exact through -1
    with pytest.raises(torchlc.TruncationError) as ei:
        torchlc.coeff(y2, 1)
    assert "3" in str(ei.value), str(ei.value)
    with pytest.raises(torchlc.TruncationError):
        torchlc.coeff(y2, 0)


def test_coeff_above_order_raises():
    x = s(1.0).nonstd()               # order 1
    with pytest.raises(torchlc.TruncationError) as ei:
        torchlc.coeff(x, 2)
    assert "2" in str(ei.value)
    with pytest.raises(torchlc.TruncationError):
        torchlc.coeff(x, F(3, 2))
    # inside the exact range, a coefficient outside the support is zero, not an error
    assert torchlc.coeff(x, F(1, 2)).item() == 0.0
    assert torchlc.coeff(x, -5).item() == 0.0


def test_decision_needing_higher_order():
    # (x−1)² at x = 1+ε is ε², which order 1 truncates to 0 (exact only through ε¹): the sign of
    # this number is not known at order 1. The contract (api.md, TruncationError) says a decision that
    # needs a higher order raises; a silent False would be a wrong answer.
    x = s(1.0).nonstd()
    z = x * x - 2 * x + 1
    with pytest.raises(torchlc.TruncationError):
        bool(z > 0)
    # at order 2 it is decided
    x2 = s(1.0).nonstd(order=2)
    assert bool(x2 * x2 - 2 * x2 + 1 > 0)


def test_ngrad_recovers_from_a_truncated_decision():
    # the same decision inside ngrad: it raises its working order by itself
    q = torchlc.ngrad(lambda x: torch.relu((x - 1) * (x - 1)), s(1.0), order=1)
    assert torchlc.coeff(q, 0).item() == 0.0
    assert torchlc.coeff(q, 1).item() == 1.0


# ----------------------------------------------------------------------------- unsupported ops
def _lc_matrix():
    return torch.eye(3, dtype=f64).nonstd()


@pytest.mark.parametrize("name,call", [
    ("eig", lambda m: torch.linalg.eig(m)),
    ("histc", lambda m: torch.histc(m)),
])
def test_unsupported_op_names_the_op(name, call):
    with pytest.raises(NotImplementedError) as ei:
        call(_lc_matrix())
    assert name in str(ei.value).lower(), str(ei.value)


# ----------------------------------------------------------------------------- in-place into plain
@pytest.mark.parametrize("name,call", [
    ("add_", lambda p, lc: p.add_(lc)),
    ("mul_", lambda p, lc: p.mul_(lc)),
    ("copy_", lambda p, lc: p.copy_(lc)),
    ("index_add_", lambda p, lc: p.index_add_(0, torch.arange(3), lc)),
    ("setitem", lambda p, lc: p.__setitem__(slice(None), lc)),
])
def test_inplace_into_plain_tensor_suggests_new_zeros(name, call):
    lc = torch.ones(3, dtype=f64).nonstd()
    plain = torch.zeros(3, dtype=f64)
    with pytest.raises(TypeError) as ei:
        call(plain, lc)
    assert "new_zeros" in str(ei.value), str(ei.value)
    assert plain.tolist() == [0.0, 0.0, 0.0]     # nothing written


def test_out_of_place_with_plain_self_works():
    lc = torch.ones(3, dtype=f64).nonstd()
    y = torch.zeros(3, dtype=f64) + lc
    assert isinstance(y, torchlc.LCTensor)
    z = lc.new_zeros(3)
    z.add_(lc)
    assert torchlc.coeff(z, 1).tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- exact zeros
@pytest.mark.parametrize("name,f,x0,want", [
    # floor(0.5+ε) = 0 exactly, so 0·exp(x) = 0 exactly: sign is 0 at any order
    ("sign(floor(x)*exp(x))", lambda x: torch.sign(torch.floor(x) * torch.exp(x)), 0.5, 0.0),
    # relu of a negative number is an exact 0; trunc(0) = 0
    ("trunc(relu(tanh(x)))", lambda x: torch.trunc(torch.relu(torch.tanh(x))), -1.0, 0.0),
    # x·y·x with y exactly 0
    ("heaviside(round(x)*sin(x))", lambda x: torch.heaviside(torch.round(x) * torch.sin(x),
                                                             torch.tensor(0.5, dtype=f64)), 0.25, 0.5),
])
def test_decision_on_exact_zero_product(name, f, x0, want):
    """A decision on an element that is exactly 0 (a product with an exact-zero factor) must not ask
    for a higher order: no order would ever decide it."""
    for order in (1, 3):
        y = f(s(x0).nonstd(order=order))
        assert torchlc.coeff(y, 0).item() == want, name
    q = torchlc.ngrad(f, s(x0))
    assert torchlc.coeff(q, 0).item() == 0.0


def test_nan_is_not_swallowed():
    """maximum/minimum/clamp/trunc of a NaN element (outside the field) stay NaN, as in torch."""
    n = torch.log(torch.tensor([-0.5, 2.0], dtype=f64).nonstd())        # [NaN, log 2 + ε/2]
    half = torch.tensor(0.5, dtype=f64)
    for y in (torch.clamp(n, 0.5, 1.5), torch.maximum(n, half), torch.minimum(n, half),
              torch.clamp(n, min=0.0), torch.trunc(n), torch.floor(n)):
        assert all_nan_elements(y).tolist() == [True, False], repr(y)
