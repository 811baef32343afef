"""Self-tests of the exact reference (tests/reference.py): the semantics page's worked values and
hand-derived series. No torch, no torchlc: if these fail, the oracle is wrong, not the library."""

import math
from fractions import Fraction as F

import pytest
import reference as R
from reference import LC

eps = LC.eps


def T(x: LC):
    return {q: c for q, c in x.terms.items()}


def close(x: LC, expected: dict, tol=1e-12):
    assert set(x.terms) == {F(q) for q, c in expected.items() if c != 0}, (x, expected)
    for q, c in expected.items():
        if c != 0:
            assert math.isclose(float(x.terms[F(q)]), c, rel_tol=tol, abs_tol=tol), (q, x, expected)


# ----------------------------------------------------------------------------- arithmetic (§3)
def test_reciprocal_leading_term_is_lowest_exponent():
    x = LC.real(2, order=3) + eps(-1, order=3)
    assert T(R.recip(x)) == {F(1): 1, F(2): -2, F(3): 4}
    assert R.recip(x).exact_through == 3
    # at order 1 only the ε term survives
    assert T(R.recip(LC.real(2) + eps(-1))) == {F(1): 1}


def test_sqrt_series():
    x = LC.real(4, order=2) + eps(1, order=2)
    assert T(R.sqrt(x)) == {F(0): 2, F(1): F(1, 4), F(2): F(-1, 64)}


def test_cube_root_cubed_is_exact():
    x = R.pow_(eps(F(1, 3)), 3)
    assert T(x) == {F(1): 1}
    assert x.exact_through == 1
    assert T(R.pow_(R.pow_(eps(1), F(1, 3)), 3)) == {F(1): 1}


def test_cauchy_product_and_truncation():
    x = LC.nonstd(1, order=2)
    assert T(x * x) == {F(0): 1, F(1): 2, F(2): 1}
    y = LC.nonstd(1, order=1)
    sq = y * y
    assert T(sq) == {F(0): 1, F(1): 2}
    assert sq.exact_through == 1 and sq.exact == 1   # ε² was dropped
    # equal exponents are summed, exact zero terms disappear
    z = LC.from_terms({0: 1, F(1, 2): 3}) - LC.from_terms({F(1, 2): 3})
    assert T(z) == {F(0): 1}


def test_infinite_multiplier_lowers_exact_through():
    y = LC.nonstd(1) * LC.nonstd(1)           # 1 + 2ε, ε² unknown
    z = y * eps(-1)
    assert T(z) == {F(-1): 1, F(0): 2}
    assert z.exact_through == 0
    with pytest.raises(R.RefTruncationError):
        z.coeff(1)
    w = y * eps(-2)
    assert w.exact_through == -1
    # dividing by ε lowers it by 1
    assert (y / eps(1)).exact_through == 0


def test_reciprocal_of_truncated_infinitesimal():
    # x = ε(1 + ε) known through ε only: 1/x = ε⁻¹ − 1 + ..., exact through −1
    y = LC.nonstd(0) * LC.nonstd(1)            # ε + ε² -> ε (exact through 1)
    r = R.recip(y)
    assert r.exact_through == -1
    assert T(r) == {F(-1): 1}


def test_rational_power_negative_base():
    x = LC.real(-8, order=2) + eps(1, order=2)
    r = R.pow_(x, F(1, 3))
    # (-8 + ε)^{1/3} = -2 (1 - ε/8)^{1/3} = -2 + ε/12 + ε²/288
    assert T(r) == {F(0): -2, F(1): F(1, 12), F(2): F(1, 288)}
    assert R.pow_(LC.real(-4) + eps(1), F(1, 2)).nan
    assert R.sqrt(-eps(1)).nan
    assert T(R.sqrt(eps(1))) == {F(1, 2): 1}


def test_integer_powers():
    x = LC.nonstd(2, order=3)
    assert T(R.pow_(x, 3)) == {F(0): 8, F(1): 12, F(2): 6, F(3): 1}
    assert T(R.pow_(x, -1)) == T(R.recip(x))
    assert T(R.pow_(x, 0)) == {F(0): 1}


# ----------------------------------------------------------------------------- analytic (§3)
def test_analytic_series():
    x = LC.nonstd(0, order=3)
    close(R.exp(x), {0: 1, 1: 1, 2: 0.5, 3: 1 / 6})
    close(R.sin(x), {1: 1, 3: -1 / 6})
    close(R.cos(x), {0: 1, 2: -0.5})
    close(R.tanh(x), {1: 1, 3: -1 / 3})
    close(R.sigmoid(x), {0: 0.5, 1: 0.25, 3: -1 / 48})
    close(R.log(LC.nonstd(1, order=3)), {1: 1, 2: -0.5, 3: 1 / 3})
    a = 0.7
    y = LC.nonstd(F(7, 10), order=2)
    close(R.sin(y), {0: math.sin(a), 1: math.cos(a), 2: -math.sin(a) / 2})
    t = math.tanh(a)
    close(R.tanh(y), {0: t, 1: 1 - t * t, 2: -t * (1 - t * t)})
    close(R.log(y), {0: math.log(a), 1: 1 / a, 2: -1 / (2 * a * a)})


def test_analytic_exact_argument_and_domain():
    assert T(R.exp(LC.real(0))) == {F(0): 1.0}
    assert R.exp(eps(-1)).nan
    assert R.sin(LC.real(1) + eps(-1)).nan
    assert R.log(eps(1)).nan          # infinitesimal
    assert R.log(LC.real(-1) + eps(1)).nan
    assert R.log(LC.from_terms({})).nan
    close(R.exp(LC.from_terms({0: 0, F(1, 2): 1})), {0: 1, F(1, 2): 1, 1: 0.5})


def test_strict_mode_raises():
    R.STRICT = True
    try:
        with pytest.raises(R.RefDomainError):
            R.exp(eps(-1))
    finally:
        R.STRICT = False


# ----------------------------------------------------------------------------- order (§4)
def test_semantics_worked_values():
    e = eps(1)
    assert T(R.floor(LC.real(1) - e)) == {}
    assert T(R.round_(LC.real(F(1, 2)) + e)) == {F(0): 1}
    assert T(R.round_(LC.real(F(1, 2)) - e)) == {}
    assert T(R.abs_(-e)) == {F(1): 1}
    assert R.gt(e, 0)


def test_order_and_signs():
    assert R.lt(LC.real(1) - eps(1), LC.real(1))
    assert R.gt(eps(-1), LC.real(10 ** 9))
    assert R.lt(eps(2, order=2), eps(1))
    assert R.eq(LC.nonstd(1) - eps(1), 1)
    assert R.sign(-eps(F(1, 3))).terms == {F(0): -1}
    assert R.sign(LC.from_terms({})).terms == {}
    assert T(R.relu(-eps(1))) == {}
    assert T(R.maximum(eps(1), eps(2, order=2))) == {F(1): 1}
    assert T(R.clamp(LC.nonstd(2), 0, 1)) == {F(0): 1}


@pytest.mark.parametrize("a,s,fl,ce,ro,tr", [
    (F(1), +1, 1, 2, 1, 1), (F(1), -1, 0, 1, 1, 0), (F(1), 0, 1, 1, 1, 1),
    (F(-1), +1, -1, 0, -1, 0), (F(-1), -1, -2, -1, -1, -1),
    (F(1, 2), +1, 0, 1, 1, 0), (F(1, 2), -1, 0, 1, 0, 0), (F(1, 2), 0, 0, 1, 0, 0),
    (F(3, 2), 0, 1, 2, 2, 1), (F(3, 2), -1, 1, 2, 1, 1), (F(-1, 2), 0, -1, 0, 0, 0),
    (F(-1, 2), 1, -1, 0, 0, 0), (F(-1, 2), -1, -1, 0, -1, 0), (F(5, 4), 1, 1, 2, 1, 1),
])
def test_integer_part_ops(a, s, fl, ce, ro, tr):
    x = LC.real(a) + s * eps(1)
    val = lambda y: y.terms.get(F(0), 0)
    assert (val(R.floor(x)), val(R.ceil(x)), val(R.round_(x)), val(R.trunc(x))) == (fl, ce, ro, tr)
    assert T(R.frac(x)) == T(x - R.trunc(x))


def test_heaviside():
    assert T(R.heaviside(eps(1), F(1, 2))) == {F(0): 1}
    assert T(R.heaviside(-eps(1), F(1, 2))) == {}
    assert T(R.heaviside(LC.real(0), F(1, 2))) == {F(0): F(1, 2)}
    assert R.floor(eps(-1)).nan


def test_decision_needs_higher_order():
    y = LC.nonstd(1)
    z = y * y - 2 * y + 1          # (x-1)² = ε², truncated to 0 at order 1
    with pytest.raises(R.RefTruncationError):
        R.gt(z, 0)
    z2 = LC.nonstd(1, order=2)
    assert R.gt(z2 * z2 - 2 * z2 + 1, 0)


def test_fuzzy_decisions_are_flagged():
    x = LC.real(F(1, 3))
    z = R.exp(x) * R.exp(-x) - 1     # exact 0, float ~1e-16
    if z.terms:
        with pytest.raises(R.Fuzzy):
            R.sign(z)


# ----------------------------------------------------------------------------- ngrad (§5)
def test_ngrad_jumps_and_slopes():
    H0 = lambda x: R.heaviside(x, 0)     # x > 0
    H1 = lambda x: R.heaviside(x, 1)     # x >= 0
    assert T(R.ngrad(H0, 0)) == {F(-1): 1}
    assert T(R.ngrad(H0, 0, "backward")) == {}
    assert T(R.ngrad(H1, 0)) == {}
    assert T(R.ngrad(H1, 0, "backward")) == {F(-1): 1}
    assert T(R.ngrad(H0, 0, "central")) == {F(-1): F(1, 2)}
    assert T(R.ngrad(H1, 0, "central")) == {F(-1): F(1, 2)}
    assert T(R.ngrad(R.sign, 0)) == {F(-1): 1}
    assert T(R.ngrad(R.sign, 0, "backward")) == {F(-1): 1}
    assert T(R.ngrad(R.round_, F(1, 2))) == {F(-1): 1}
    assert T(R.ngrad(R.round_, F(1, 2), "backward")) == {}
    assert T(R.ngrad(R.round_, F(3, 2))) == {}
    assert T(R.ngrad(R.round_, F(3, 2), "backward")) == {F(-1): 1}
    assert T(R.ngrad(R.abs_, 0)) == {F(0): 1}
    assert T(R.ngrad(R.abs_, 0, "backward")) == {F(0): -1}
    assert T(R.ngrad(lambda x: R.sqrt(R.abs_(x)), 0)) == {F(-1, 2): 1}
    assert T(R.ngrad(R.floor, 1, "backward")) == {F(-1): 1}


def test_ngrad_taylor_terms_and_retry():
    # D+ f(x0) = f' + f''/2 ε + ... for smooth f
    q = R.ngrad(lambda x: x * x * x, 2, order=2)
    assert q.exact_through >= 2
    assert {k: v for k, v in T(q).items() if k <= 2} == {F(0): 12, F(1): 6, F(2): 1}
    # relu((x-1)²) at 1 needs order 2 for the decision; ngrad re-runs by itself
    q = R.ngrad(lambda x: R.relu((x - 1) * (x - 1)), 1, order=1)
    assert {k: v for k, v in T(q).items() if k <= 1} == {F(1): 1}
