"""Every worked value of shared/design/semantics.md, asserted through the public torchlc API.

All values here are exact (dyadic) in float64, so equality is exact: no tolerances.
"""

from fractions import Fraction as F

import pytest
import torch

import torchlc

f64 = torch.float64


def t(*vals):
    return torch.tensor(vals, dtype=f64)


def s(v=0.0):
    return torch.tensor(v, dtype=f64)


def nz(y):
    """{exponent: python value} of the nonzero terms of a 0-d LCTensor (or plain tensor)."""
    out = {}
    for q, c in torchlc.terms(y).items():
        v = c.item()
        if v != 0:
            out[F(q)] = v
    return out


def nz_through(y, q_max):
    return {q: v for q, v in nz(y).items() if q <= q_max}


# ----------------------------------------------------------------------------- §1 exponents
def test_cube_root_exponent_is_exact():
    x = torchlc.eps(F(1, 3), dtype=f64)
    y = x ** 3
    assert nz(y) == {F(1): 1.0}
    assert torchlc.support(y) == (F(1),) or F(1) in torchlc.support(y)
    for q in torchlc.support(y):
        assert isinstance(q, F)
    assert F(15, 16) not in torchlc.support(y)


def test_support_is_static_union_and_sum():
    x = torchlc.from_terms({0: t(1.0, 2.0), F(1, 2): t(0.0, 1.0)}, dtype=f64)
    y = torchlc.from_terms({F(1, 3): t(1.0, 0.0)}, order=1, dtype=f64)
    assert set(torchlc.support(x + y)) == {F(0), F(1, 3), F(1, 2)}
    prod_support = set(torchlc.support(x * y))
    assert prod_support <= {F(1, 3), F(5, 6)} | {F(0), F(1, 2)}
    assert F(1, 3) in prod_support and F(5, 6) in prod_support
    # a term is absent iff its coefficient is exactly 0: the product's ε^{5/6} coefficient is 0 / 0
    assert torchlc.coeff(x * y, F(5, 6)).tolist() == [0.0, 0.0]
    assert torchlc.coeff(x * y, F(1, 3)).tolist() == [1.0, 0.0]


def test_tiny_coefficients_are_not_dropped():
    x = torchlc.from_terms({0: s(1.0), 1: s(1e-300)}, dtype=f64)
    assert nz(x * 2) == {F(0): 2.0, F(1): 2e-300}


# ----------------------------------------------------------------------------- §2 truncation
def test_absolute_cutoff_default_order_one():
    x = s(1.0).nonstd()
    assert torchlc.order(x) == 1
    assert nz(x * x) == {F(0): 1.0, F(1): 2.0}          # ε² dropped
    assert torchlc.exact_through(x * x) == 1
    x2 = s(1.0).nonstd(order=2)
    assert nz(x2 * x2) == {F(0): 1.0, F(1): 2.0, F(2): 1.0}
    assert torchlc.exact_through(x2 * x2) == 2


def test_eps_default_order():
    assert torchlc.order(torchlc.eps()) == 1
    assert torchlc.order(torchlc.eps(3)) == 3
    assert torchlc.order(torchlc.eps(-1)) == 1
    assert torchlc.order(torchlc.from_terms({F(5, 2): 1.0})) == F(5, 2)


def test_finite_arithmetic_is_exact_through_order():
    x = t(0.5, 2.0, -3.0).nonstd(order=2)
    y = (x * x - x / (x + 4)) * torch.sin(x)
    assert torchlc.exact_through(y) == 2


def test_multiplying_by_infinite_lowers_exact_through():
    y = s(1.0).nonstd() ** 2                   # 1 + 2ε, the ε² term was dropped
    z = y * torchlc.eps(-1, dtype=f64)         # λ = -1 lowers it by 1
    assert torchlc.exact_through(z) == 0
    assert torchlc.coeff(z, -1).item() == 1.0
    assert torchlc.coeff(z, 0).item() == 2.0
    with pytest.raises(torchlc.TruncationError, match="2"):
        torchlc.coeff(z, 1)                    # needs order 2
    w = y * torchlc.eps(-2, dtype=f64)
    assert torchlc.exact_through(w) == -1
    d = y / torchlc.eps(dtype=f64)             # dividing by ε lowers it by 1
    assert torchlc.exact_through(d) == 0
    assert nz_through(d, 0) == {F(-1): 1.0, F(0): 2.0}


def test_ngrad_picks_working_order():
    # quotient exact through the requested order, Taylor terms f', f''/2, f'''/6
    f = lambda x: x * x * x
    for order in (0, 1, 2):
        q = torchlc.ngrad(f, s(2.0), order=order)
        assert torchlc.exact_through(q) >= order
        expect = {F(0): 12.0, F(1): 6.0, F(2): 1.0}
        assert {k: torchlc.coeff(q, k).item() for k in range(order + 1)} == {
            F(k): expect[F(k)] for k in range(order + 1)}


def test_ngrad_raises_order_after_infinite_intermediate():
    # f(x) = (x² − 9)·ε⁻¹ at 3: f(3+ε) − f(3) = (6ε + ε²)ε⁻¹ = 6 + ε, and the quotient is 6ε⁻¹ + 1.
    # The infinite intermediate and the division by ε each eat one order: the working order must be
    # raised to 3 to make the ε¹ coefficient (0) exact.
    def f(x):
        return (x * x - 9) * torchlc.eps(-1, dtype=f64)
    q = torchlc.ngrad(f, s(3.0), order=1)
    assert torchlc.exact_through(q) >= 1
    assert [torchlc.coeff(q, k).item() for k in (-1, 0, 1)] == [6.0, 1.0, 0.0]


# ----------------------------------------------------------------------------- §3 arithmetic
def test_reciprocal_leading_term_is_lowest_exponent():
    x = torchlc.from_terms({0: 2.0, -1: 1.0}, order=3, dtype=f64)
    y = 1 / x
    assert nz(y) == {F(1): 1.0, F(2): -2.0, F(3): 4.0}
    assert nz(torch.reciprocal(x)) == nz(y)
    x1 = torchlc.from_terms({0: 2.0, -1: 1.0}, dtype=f64)
    assert nz(1 / x1) == {F(1): 1.0}


def test_power_series():
    x = torchlc.from_terms({0: 4.0, 1: 1.0}, order=2, dtype=f64)
    assert nz(torch.sqrt(x)) == {F(0): 2.0, F(1): 0.25, F(2): -1 / 64}
    assert nz(x ** 0.5) == nz(torch.sqrt(x))
    assert nz(torch.rsqrt(x)) == {F(0): 0.5, F(1): -1 / 16, F(2): 3 / 256}


def test_power_of_negative_base():
    x = torchlc.from_terms({0: -8.0, 1: 1.0}, order=2, dtype=f64)
    y = x ** F(1, 3)
    torch.testing.assert_close(                    # -2 + ε/12 + ε²/288; a^r is a float pow
        torch.stack([torchlc.coeff(y, q) for q in (0, 1, 2)]), t(-2.0, 1 / 12, 1 / 288),
        rtol=1e-14, atol=1e-15)
    # even denominator of a negative leading coefficient: NaN
    z = torch.sqrt(torchlc.from_terms({0: -4.0, 1: 1.0}, dtype=f64))
    assert torch.isnan(torchlc.standard_part(z)).all() or any(
        torch.isnan(c).all() for c in torchlc.terms(z).values())
    assert nz(torch.sqrt(torchlc.eps(dtype=f64))) == {F(1, 2): 1.0}


def _is_nan(y):
    return any(bool(torch.isnan(c).any()) for c in torchlc.terms(y).values())


def test_analytic_at_exact_point_and_outside_field():
    assert nz(torch.exp(torchlc.from_terms({0: 0.0}, dtype=f64))) in ({F(0): 1.0},)
    sn = torch.sin(s(0.0).nonstd(order=3))
    assert set(nz(sn)) == {F(1), F(3)}
    # -1/6 is not dyadic: how the float is formed (1/3! or -(1/2)(1/3)) may differ by an ulp
    torch.testing.assert_close(torchlc.coeff(sn, 3), s(-1 / 6), rtol=1e-15, atol=0)
    assert nz(torch.exp(s(0.0).nonstd(order=2))) == {F(0): 1.0, F(1): 1.0, F(2): 0.5}
    assert nz(torch.log(s(1.0).nonstd(order=2))) == {F(1): 1.0, F(2): -0.5}
    inf = torchlc.eps(-1, dtype=f64)
    for g in (torch.exp, torch.sin, torch.tanh, torch.log):
        assert _is_nan(g(inf)), g
    assert _is_nan(torch.log(torchlc.eps(dtype=f64)))                         # infinitesimal
    assert _is_nan(torch.log(torchlc.from_terms({0: -1.0, 1: 1.0}, dtype=f64)))  # negative
    with torchlc.strict():
        with pytest.raises(torchlc.DomainError):
            torch.exp(inf)
        with pytest.raises(torchlc.DomainError):
            torch.log(torchlc.eps(dtype=f64))


# ----------------------------------------------------------------------------- §4 order
def test_worked_values_section4():
    e = torchlc.eps(dtype=f64)
    assert nz(torch.floor(1 - e)) == {}
    assert nz(torch.round(0.5 + e)) == {F(0): 1.0}
    assert nz(torch.round(0.5 - e)) == {}
    assert nz(torch.abs(-e)) == {F(1): 1.0}
    r = e > 0
    assert type(r) is torch.Tensor and r.dtype == torch.bool and bool(r)


def test_order_is_exact_no_tolerance():
    e = torchlc.eps(dtype=f64)
    assert bool(1 - e < 1) and bool(1 + e > 1) and not bool(1 - e >= 1)
    assert bool(torchlc.eps(-1, dtype=f64) > 1e300)
    assert bool(torchlc.eps(2, dtype=f64) < e)
    assert bool(s(1.0).nonstd() - e == 1)
    x = t(1.0, 1.0, 1.0).nonstd(t(-1.0, 0.0, 1.0))
    assert (x > 1).tolist() == [False, False, True]
    assert (x >= 1).tolist() == [False, True, True]
    assert (x == 1).tolist() == [False, True, False]
    assert (x != 1).tolist() == [True, False, True]
    assert (x < 1).tolist() == [True, False, False]
    assert (x <= 1).tolist() == [True, True, False]


def test_sign_abs():
    x = t(0.0, 0.0, 0.0, -2.0).nonstd(t(1.0, -1.0, 0.0, 5.0))
    sg = torch.sign(x)
    assert set(torchlc.support(sg)) <= {F(0)} or all(
        torchlc.coeff(sg, q).abs().sum() == 0 for q in torchlc.support(sg) if q != 0)
    assert torchlc.coeff(sg, 0).tolist() == [1.0, -1.0, 0.0, -1.0]
    a = torch.abs(x)
    assert torchlc.coeff(a, 0).tolist() == [0.0, 0.0, 0.0, 2.0]
    assert torchlc.coeff(a, 1).tolist() == [1.0, 1.0, 0.0, -5.0]


def test_relu_max_min_clamp_where_follow_the_order():
    e = torchlc.eps(dtype=f64)
    x = t(0.0, 0.0, 1.0).nonstd(t(1.0, -1.0, 0.0))
    r = torch.relu(x)
    assert torchlc.coeff(r, 0).tolist() == [0.0, 0.0, 1.0]
    assert torchlc.coeff(r, 1).tolist() == [1.0, 0.0, 0.0]
    m = torch.maximum(x, torch.zeros(3, dtype=f64))
    assert torchlc.coeff(m, 1).tolist() == [1.0, 0.0, 0.0]
    m = torch.minimum(x, e * 0.5)
    assert torchlc.coeff(m, 1).tolist() == [0.5, -1.0, 0.5]
    c = torch.clamp(x, min=0.0, max=1.0)
    assert torchlc.coeff(c, 0).tolist() == [0.0, 0.0, 1.0]
    assert torchlc.coeff(c, 1).tolist() == [1.0, 0.0, 0.0]
    w = torch.where(x > 0, x, -x)
    assert torchlc.coeff(w, 1).tolist() == [1.0, 1.0, 0.0]
    y = t(3.0, 1.0, 2.0).nonstd(t(0.0, 1.0, -1.0))
    assert int(torch.argmax(t(1.0, 1.0, 1.0).nonstd(t(0.0, 1.0, 1.0)))) == 1  # ties: first index
    assert int(torch.argmin(y)) == 1
    assert int(torch.argmax(y)) == 0


@pytest.mark.parametrize("a,v,fl,ce,ro,tr", [
    (1.0, 1, 1, 2, 1, 1), (1.0, -1, 0, 1, 1, 0), (1.0, 0, 1, 1, 1, 1),
    (-1.0, 1, -1, 0, -1, 0), (-1.0, -1, -2, -1, -1, -1),
    (0.0, 1, 0, 1, 0, 0), (0.0, -1, -1, 0, 0, 0),
    (0.5, 1, 0, 1, 1, 0), (0.5, -1, 0, 1, 0, 0), (0.5, 0, 0, 1, 0, 0),
    (1.5, 0, 1, 2, 2, 1), (1.5, -1, 1, 2, 1, 1), (1.5, 1, 1, 2, 2, 1),
    (-0.5, 0, -1, 0, 0, 0), (-0.5, 1, -1, 0, 0, 0), (-0.5, -1, -1, 0, -1, 0),
    (2.5, 1, 2, 3, 3, 2), (2.5, -1, 2, 3, 2, 2), (2.5, 0, 2, 3, 2, 2),
    (1.25, 1, 1, 2, 1, 1),
])
def test_integer_part_ops(a, v, fl, ce, ro, tr):
    x = s(a).nonstd(s(float(v)))
    for op, want in ((torch.floor, fl), (torch.ceil, ce), (torch.round, ro), (torch.trunc, tr)):
        y = op(x)
        assert nz(y) == ({F(0): float(want)} if want else {}), (op, a, v)
        # results are real: a single ε⁰ plane
        assert all(q == 0 for q in torchlc.support(y)) or all(
            torchlc.coeff(y, q).item() == 0 for q in torchlc.support(y) if q != 0)
    fr = torch.frac(x)
    assert nz(fr) == {q: c for q, c in {F(0): a - tr, F(1): float(v)}.items() if c != 0}


def test_integer_part_ops_with_infinitesimal_below_first_order():
    # round(0.5 + ε^{3/2}): the tie is decided by the ε^{3/2} term
    x = torchlc.from_terms({0: 0.5, F(3, 2): 1.0}, order=2, dtype=f64)
    assert nz(torch.round(x)) == {F(0): 1.0}
    assert nz(torch.round(x - 2 * torchlc.from_terms({F(3, 2): 1.0}, order=2, dtype=f64))) == {}


def test_floor_of_infinite_is_nan():
    assert _is_nan(torch.floor(torchlc.eps(-1, dtype=f64)))
    with torchlc.strict():
        with pytest.raises(torchlc.DomainError):
            torch.floor(torchlc.eps(-1, dtype=f64))


def test_heaviside_exact():
    x = t(0.0, 0.0, 0.0).nonstd(t(1.0, -1.0, 0.0))
    h = torch.heaviside(x, t(0.25, 0.25, 0.25))
    assert torchlc.coeff(h, 0).tolist() == [1.0, 0.0, 0.25]
    assert all(torchlc.coeff(h, q).abs().sum() == 0 for q in torchlc.support(h) if q != 0)


# ----------------------------------------------------------------------------- §5 ngrad
def H0(x):  # H(0) = 0
    return (x > 0).to(f64)


def H1(x):  # H(0) = 1
    return (x >= 0).to(f64)


@pytest.mark.parametrize("f,x0,side,expect", [
    (H0, 0.0, "forward", {F(-1): 1.0}),
    (H0, 0.0, "backward", {}),
    (H0, 0.0, "central", {F(-1): 0.5}),
    (H1, 0.0, "forward", {}),
    (H1, 0.0, "backward", {F(-1): 1.0}),
    (H1, 0.0, "central", {F(-1): 0.5}),
    (lambda x: torch.heaviside(x, torch.zeros((), dtype=f64)), 0.0, "forward", {F(-1): 1.0}),
    (lambda x: torch.heaviside(x, torch.zeros((), dtype=f64)), 0.0, "backward", {}),
    (torch.sign, 0.0, "forward", {F(-1): 1.0}),
    (torch.sign, 0.0, "backward", {F(-1): 1.0}),
    (torch.round, 0.5, "forward", {F(-1): 1.0}),
    (torch.round, 0.5, "backward", {}),
    (torch.round, 1.5, "forward", {}),
    (torch.round, 1.5, "backward", {F(-1): 1.0}),
    (torch.abs, 0.0, "forward", {F(0): 1.0}),
    (torch.abs, 0.0, "backward", {F(0): -1.0}),
    (torch.floor, 1.0, "forward", {}),
    (torch.floor, 1.0, "backward", {F(-1): 1.0}),
    (torch.ceil, 1.0, "forward", {F(-1): 1.0}),
    (torch.relu, 0.0, "forward", {F(0): 1.0}),
    (torch.relu, 0.0, "backward", {}),
    (lambda x: torch.sqrt(torch.abs(x)), 0.0, "forward", {F(-1, 2): 1.0}),
    (lambda x: torch.sqrt(torch.abs(x)), 0.0, "backward", {F(-1, 2): -1.0}),
])
def test_ngrad_kinks(f, x0, side, expect):
    q = torchlc.ngrad(f, s(x0), side=side)
    assert torchlc.exact_through(q) >= 0
    assert nz_through(q, 0) == expect


def test_ngrad_jump_plus_slope_plus_curvature():
    # f = x² + H(x) at 0: D₊ = ε⁻¹ + 0 + ε (jump, slope f′₊ = 0, ½f″ = 1)
    f = lambda x: x * x + (x > 0).to(f64)
    q = torchlc.ngrad(f, s(0.0), order=1)
    assert nz_through(q, 1) == {F(-1): 1.0, F(1): 1.0}
    q = torchlc.ngrad(lambda x: x * x * x + 3 * x, s(1.0), side="backward", order=1)
    assert nz_through(q, 1) == {F(0): 6.0, F(1): -3.0}
    q = torchlc.ngrad(lambda x: x * x, s(1.0), side="central", order=1)
    assert nz_through(q, 1) == {F(0): 2.0}


def test_ngrad_decisions_use_exact_float_equality():
    x0 = s(2.08e-17)
    assert nz_through(torchlc.ngrad(H0, x0), 0) == {}
    assert nz_through(torchlc.ngrad(H0, x0, side="backward"), 0) == {}
    assert nz_through(torchlc.ngrad(torch.abs, x0, side="backward"), 0) == {F(0): 1.0}


def test_differentiability_criterion():
    # |x| at 0: D₊ and D₋ finite with different standard parts: not differentiable
    dp = torchlc.ngrad(torch.abs, s(0.0))
    dm = torchlc.ngrad(torch.abs, s(0.0), side="backward")
    assert torchlc.coeff(dp, 0).item() != torchlc.coeff(dm, 0).item()
    # x|x| at 0: both 0: differentiable
    f = lambda x: x * torch.abs(x)
    assert nz_through(torchlc.ngrad(f, s(0.0)), 0) == nz_through(
        torchlc.ngrad(f, s(0.0), side="backward"), 0) == {}


def test_ngrad_vector_direction_and_jacobian():
    x0 = t(0.0, 0.5, 1.0)
    f = lambda x: torch.round(x) + x * x
    q = torchlc.ngrad(f, x0, torch.ones(3, dtype=f64))      # per-element derivative
    assert torchlc.coeff(q, -1).tolist() == [0.0, 1.0, 0.0]
    assert torchlc.coeff(q, 0).tolist() == [0.0, 1.0, 2.0]
    g = lambda x: torch.stack([x[0] * x[1], torch.abs(x[0])])
    J = torchlc.njacfwd(g)(t(0.0, 3.0))
    assert tuple(J.shape) == (2, 2)
    assert torchlc.coeff(J, 0).tolist() == [[3.0, 0.0], [1.0, 0.0]]
    p, dq = torchlc.njvp(lambda x: x * x, (t(3.0),), (t(1.0),))
    assert torchlc.coeff(dq, 0).tolist() == [6.0]


# ----------------------------------------------------------------------------- §6 smoothing
@pytest.mark.skipif(not hasattr(torchlc, "smoothing"), reason="torchlc.smoothing not implemented yet")
def test_smoothed_heaviside_derivative_gaussian():
    with torchlc.smoothing(width=0.5, kernel="gaussian"):
        q = torchlc.ngrad(lambda x: torch.heaviside(x, torch.zeros((), dtype=f64)), s(0.0))
        # the forward value is the exact value at the standard point (what the model computes on
        # real data, H(0) = values = 0 here); the jump's Dirac mass becomes the kernel density
        y = torch.heaviside(s(0.0).nonstd(), s(0.0))
        assert torchlc.standard_part(y).item() == 0.0
        torch.testing.assert_close(torchlc.coeff(y, 1), s(0.7978845608028654), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torchlc.coeff(q, 0), s(0.7978845608028654), rtol=1e-6, atol=1e-6)


def test_power_with_non_dyadic_rational_exponent():
    # exponents are exact rationals (§1): ε^{1/3} is not ε^{0.333...}, and it is not NaN
    y = torchlc.eps(dtype=f64) ** F(1, 3)
    assert nz(y) == {F(1, 3): 1.0}
    x = torchlc.from_terms({F(3, 2): 3.0}, order=F(3, 2), dtype=f64)
    z = x ** F(1, 3)                                   # 3^{1/3} ε^{1/2}
    assert set(nz(z)) == {F(1, 2)}
    torch.testing.assert_close(torchlc.coeff(z, F(1, 2)), s(3.0 ** (1 / 3)), rtol=1e-15, atol=0)


def test_boxed_integer_power():
    # a monomial float32 tensor (boxed layout): powers truncate at the order like products do
    b = torchlc.from_terms({0: torch.tensor([1.0, 0.0]), 1: torch.tensor([0.0, 2.0])},
                           dtype=torch.float32)
    assert torchlc.layout(b) == "boxed"
    for k in (2, 3):
        y = b ** k
        assert torchlc.coeff(y, 0).tolist() == [1.0, 0.0], k      # (2ε)^k is above order 1
        assert torchlc.coeff(y, 1).tolist() == [0.0, 0.0], k
        assert all(torchlc.coeff(y, q).abs().sum() == 0 for q in torchlc.support(y) if q < 0)
    m = torchlc.from_terms({0: torch.tensor([1.0, 0.0]), 1: torch.tensor([0.0, -1.0])},
                           dtype=torch.float32)
    assert [torchlc.coeff(m ** 3, q).tolist() for q in (0, 1)] == [[1.0, 0.0], [0.0, 0.0]]
    assert torchlc.coeff(b ** -1, -1).tolist() == [0.0, 0.5]


def test_power_of_zero_element():
    # an element that is exactly 0 in a tensor with an ε-plane: √0 = 0, 0^(3/2) = 0 (torch.sqrt(0) = 0)
    z = torchlc.from_terms({0: t(0.0, 1.0), 1: t(0.0, 0.0)}, dtype=f64)
    for y in (torch.sqrt(z), z ** 0.5, z ** 1.5):
        assert not _is_nan(y), repr(y)
        assert torchlc.coeff(y, 0).tolist() == [0.0, 1.0]
