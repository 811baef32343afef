"""Discontinuous ops (semantics §4–§5): exact decisions by the field's order, and ngrad at the kinks
from both sides (ε⁻¹ = the jump seen from that side, ε⁰ = the one-sided slope). All values are
dyadic, so every comparison is exact."""

from fractions import Fraction as F

import pytest
import torch
import torch.nn.functional as Fn

import torchlc

f64 = torch.float64
M1 = F(-1)


def t(*vals):
    return torch.tensor(vals, dtype=f64)


def s(v):
    return torch.tensor(v, dtype=f64)


def planes(y):
    return {q: c.tolist() for q, c in torchlc.terms(y).items()}


def nz(y):
    """{exponent: value} of the nonzero terms of a 0-d LCTensor."""
    return {q: c.item() for q, c in torchlc.terms(y).items() if c.item() != 0}


def ng(f, x0, side, order=0):
    y = torchlc.ngrad(f, s(x0), side=side, order=order)
    assert isinstance(y, torchlc.LCTensor)
    assert torchlc.exact_through(y) >= order
    return nz(y)


H = s(0.25)

# (name, f, x0, forward, backward, central) — hand-derived from D₊f = (f(x+ε) − f(x))/ε
KINKS = [
    ("abs@0", torch.abs, 0.0, {0: 1.0}, {0: -1.0}, {}),
    ("abs@-3", torch.abs, -3.0, {0: -1.0}, {0: -1.0}, {0: -1.0}),
    ("sign@0", torch.sign, 0.0, {M1: 1.0}, {M1: 1.0}, {M1: 1.0}),
    ("sgn@0", torch.sgn, 0.0, {M1: 1.0}, {M1: 1.0}, {M1: 1.0}),
    ("sign@2", torch.sign, 2.0, {}, {}, {}),
    ("heaviside@0", lambda x: torch.heaviside(x, H), 0.0, {M1: 0.75}, {M1: 0.25}, {M1: 0.5}),
    ("relu@0", torch.relu, 0.0, {0: 1.0}, {}, {0: 0.5}),
    ("F.relu@0", Fn.relu, 0.0, {0: 1.0}, {}, {0: 0.5}),
    ("hardtanh@1", Fn.hardtanh, 1.0, {}, {0: 1.0}, {0: 0.5}),
    ("hardtanh@-1", Fn.hardtanh, -1.0, {0: 1.0}, {}, {0: 0.5}),
    ("clamp@0", lambda x: torch.clamp(x, 0.0, 1.0), 0.0, {0: 1.0}, {}, {0: 0.5}),
    ("clamp@1", lambda x: torch.clamp(x, 0.0, 1.0), 1.0, {}, {0: 1.0}, {0: 0.5}),
    ("clamp_min@2", lambda x: torch.clamp_min(x, 2.0), 2.0, {0: 1.0}, {}, {0: 0.5}),
    ("clamp_max@2", lambda x: torch.clamp_max(x, 2.0), 2.0, {}, {0: 1.0}, {0: 0.5}),
    ("maximum@1", lambda x: torch.maximum(x, s(1.0)), 1.0, {0: 1.0}, {}, {0: 0.5}),
    ("minimum@1", lambda x: torch.minimum(x, s(1.0)), 1.0, {}, {0: 1.0}, {0: 0.5}),
    ("max(x,2-x)@1", lambda x: torch.maximum(x, 2 - x), 1.0, {0: 1.0}, {0: -1.0}, {}),
    ("where-jump@0", lambda x: torch.where(x > 0, x * x + 1, -x), 0.0, {M1: 1.0}, {0: -1.0},
     {M1: 0.5, 0: -0.5}),
    ("floor@1", torch.floor, 1.0, {}, {M1: 1.0}, {M1: 0.5}),
    ("floor@-1", torch.floor, -1.0, {}, {M1: 1.0}, {M1: 0.5}),
    ("floor@1.5", torch.floor, 1.5, {}, {}, {}),
    ("ceil@1", torch.ceil, 1.0, {M1: 1.0}, {}, {M1: 0.5}),
    ("round@0.5", torch.round, 0.5, {M1: 1.0}, {}, {M1: 0.5}),
    ("round@1.5", torch.round, 1.5, {}, {M1: 1.0}, {M1: 0.5}),
    ("round@-0.5", torch.round, -0.5, {}, {M1: 1.0}, {M1: 0.5}),
    ("round@2", torch.round, 2.0, {}, {}, {}),
    ("trunc@0", torch.trunc, 0.0, {}, {}, {}),
    ("trunc@1", torch.trunc, 1.0, {}, {M1: 1.0}, {M1: 0.5}),
    ("trunc@-1", torch.trunc, -1.0, {M1: 1.0}, {}, {M1: 0.5}),
    ("frac@1", torch.frac, 1.0, {0: 1.0}, {M1: -1.0, 0: 1.0}, {M1: -0.5, 0: 1.0}),
    ("frac@-1", torch.frac, -1.0, {M1: -1.0, 0: 1.0}, {0: 1.0}, {M1: -0.5, 0: 1.0}),
    ("frac@0", torch.frac, 0.0, {0: 1.0}, {0: 1.0}, {0: 1.0}),
    ("fmod@2", lambda x: torch.fmod(x, 1.0), 2.0, {0: 1.0}, {M1: -1.0, 0: 1.0}, {M1: -0.5, 0: 1.0}),
    ("fmod@-2", lambda x: torch.fmod(x, 1.0), -2.0, {M1: -1.0, 0: 1.0}, {0: 1.0}, {M1: -0.5, 0: 1.0}),
    ("fmod(.,0.5)@1.5", lambda x: torch.fmod(x, 0.5), 1.5, {0: 1.0}, {M1: -0.5, 0: 1.0},
     {M1: -0.25, 0: 1.0}),
    ("remainder@2", lambda x: torch.remainder(x, 1.0), 2.0, {0: 1.0}, {M1: -1.0, 0: 1.0},
     {M1: -0.5, 0: 1.0}),
    ("remainder@-2", lambda x: torch.remainder(x, 1.0), -2.0, {0: 1.0}, {M1: -1.0, 0: 1.0},
     {M1: -0.5, 0: 1.0}),
    ("remainder@0.25", lambda x: torch.remainder(x, 0.5), 0.25, {0: 1.0}, {0: 1.0}, {0: 1.0}),
    ("gt@0", lambda x: (x > 0).to(f64), 0.0, {M1: 1.0}, {}, {M1: 0.5}),
    ("ge@0", lambda x: (x >= 0).to(f64), 0.0, {}, {M1: 1.0}, {M1: 0.5}),
    ("lt@0", lambda x: (x < 0).to(f64), 0.0, {}, {M1: -1.0}, {M1: -0.5}),
    ("le@0", lambda x: (x <= 0).to(f64), 0.0, {M1: -1.0}, {}, {M1: -0.5}),
    ("eq@0", lambda x: (x == 0).to(f64), 0.0, {M1: -1.0}, {M1: 1.0}, {}),
    ("ne@0", lambda x: (x != 0).to(f64), 0.0, {M1: 1.0}, {M1: -1.0}, {}),
    ("round(-1)@15", lambda x: torch.round(x, decimals=-1), 15.0, {}, {M1: 10.0}, {M1: 5.0}),
    ("round(-1)@25", lambda x: torch.round(x, decimals=-1), 25.0, {M1: 10.0}, {}, {M1: 5.0}),
    ("div_floor@2", lambda x: torch.div(x, 2.0, rounding_mode="floor"), 2.0, {}, {M1: 1.0}, {M1: 0.5}),
]


@pytest.mark.parametrize("name,f,x0,fw,bw,ce", KINKS, ids=[k[0] for k in KINKS])
def test_ngrad_at_kinks_all_sides(name, f, x0, fw, bw, ce):
    def norm(d):
        return {F(q): v for q, v in d.items()}

    assert ng(f, x0, "forward") == norm(fw)
    assert ng(f, x0, "backward") == norm(bw)
    assert ng(f, x0, "central") == norm(ce)


def test_round_with_positive_decimals_jump_is_torch_step():
    # round(x, 2) = round(100x)/100: 0.125·100 = 12.5 is a tie (half to even → 12)
    f = lambda x: torch.round(x, decimals=2)  # noqa: E731
    x0 = s(0.125)
    jump = (s(13.0) / 100 - s(12.0) / 100).item()
    assert ng(f, 0.125, "forward") == {M1: jump}
    assert ng(f, 0.125, "backward") == {}
    assert torch.equal(torchlc.standard_part(f(x0.nonstd())), s(13.0) / 100)
    assert torch.equal(torchlc.standard_part(f(x0.nonstd(-1.0))), s(12.0) / 100)
    assert torch.equal(torchlc.standard_part(f(torchlc.from_terms({0: x0}, dtype=f64))), torch.round(x0, decimals=2))


def test_round_decimals_off_tie_matches_torch():
    a = t(0.126, -3.14159, 2.675, 1234.5678)
    for d in (1, 2, 3):
        y = torch.round(a.nonstd(), decimals=d)
        assert torch.equal(torchlc.standard_part(y), torch.round(a, decimals=d))


def test_ngrad_higher_order_one_sided():
    # f = x³ for x > 0, x² otherwise: D₊f(0) = ε², D₋f(0) = −ε
    f = lambda x: torch.where(x > 0, x ** 3, x ** 2)  # noqa: E731
    assert ng(f, 0.0, "forward", order=2) == {F(2): 1.0}
    assert ng(f, 0.0, "backward", order=2) == {F(1): -1.0}
    # jump + slope + curvature: f = x² + 3 for x ≥ 1, x otherwise, at 1
    g = lambda x: torch.where(x >= 1, x * x + 3, x)  # noqa: E731
    assert ng(g, 1.0, "forward", order=1) == {F(1): 1.0, F(0): 2.0}
    assert ng(g, 1.0, "backward", order=1) == {M1: 3.0, F(0): 1.0}
    # |x| at 0 to order 2 is exactly ±1
    assert ng(torch.abs, 0.0, "forward", order=2) == {F(0): 1.0}
    assert ng(torch.abs, 0.0, "backward", order=2) == {F(0): -1.0}


def test_sqrt_abs_is_not_a_dirac():
    y = torchlc.ngrad(lambda x: torch.sqrt(torch.abs(x)), s(0.0))
    assert nz(y) == {F(-1, 2): 1.0}


# ------------------------------------------------------------------------------ direct decisions
def test_comparisons_return_plain_bool_tensors():
    x = t(1.0, 2.0, -2.0, 0.5).nonstd()
    for r in (x < 1.0, x <= x, x > t(1.0, 2.0, 0.0, 1.0), x >= 0, x == x, x != 0.5,
              torch.lt(x, x), torch.ge(t(1.0, 2.0, -2.0, 0.5), x)):
        assert type(r) is torch.Tensor and r.dtype == torch.bool
    assert (x < 1.0).tolist() == [False, False, True, True]
    assert (x > t(1.0, 2.0, -2.0, 0.5)).tolist() == [True] * 4
    assert (t(1.0, 2.0, -2.0, 0.5) < x).tolist() == [True] * 4
    assert (x == x).tolist() == [True] * 4
    assert (x == t(1.0, 2.0, -2.0, 0.5)).tolist() == [False] * 4
    assert (x != x.clone()).tolist() == [False] * 4
    y = t(1.0, 2.0, -2.0, 0.5).nonstd(t(1.0, 2.0, 0.5, 1.0))
    assert (x < y).tolist() == [False, True, False, False]
    assert (x <= y).tolist() == [True, True, False, True]
    assert (x > y).tolist() == [False, False, True, False]


def test_comparison_infinite_vs_finite():
    big = torchlc.from_terms({-1: t(1.0, -1.0, 0.0), 0: t(-1e300, 1e300, 5.0)}, dtype=f64)
    assert (big > 1e308).tolist() == [True, False, False]
    assert (big < -1e308).tolist() == [False, True, False]


def test_sign_abs_relu_direct():
    z = torchlc.from_terms({-1: t(0.0, -1.0, 0.0, 0.0), 0: t(0.0, 5.0, 0.0, -0.0),
                            1: t(0.0, 0.0, -2.0, 0.0)}, dtype=f64)
    assert planes(torch.sign(z)) == {F(0): [0.0, -1.0, -1.0, 0.0]}
    assert planes(torch.abs(z)) == {F(-1): [0.0, 1.0, 0.0, 0.0], F(0): [0.0, -5.0, 0.0, 0.0],
                                    F(1): [0.0, 0.0, 2.0, 0.0]}
    r = torch.relu(z)
    assert nz(r[1]) == {} and nz(r[2]) == {}
    assert torch.signbit(z).tolist() == [False, True, True, False]


def test_heaviside_values_tensor_and_zero():
    x = t(0.0, 1.0, -1.0, 0.0).nonstd(t(0.0, -1.0, 1.0, 1.0))
    y = torch.heaviside(x, t(0.25))
    assert planes(y) == {F(0): [0.25, 1.0, 0.0, 1.0]}


def test_maximum_minimum_clamp_with_lc_bounds():
    a = t(1.0, 2.0, -2.0, 0.5)
    x = a.nonstd()
    lo = s(1.0).nonstd(s(2.0))
    assert planes(torch.clamp(x, min=lo)) == {F(0): [1.0, 2.0, 1.0, 1.0], F(1): [2.0, 1.0, 2.0, 2.0]}
    assert planes(torch.clamp(x, max=torch.ones(4, dtype=f64))) == {F(0): [1.0, 1.0, -2.0, 0.5],
                                                                   F(1): [0.0, 0.0, 1.0, 1.0]}
    assert planes(torch.maximum(x, x - torchlc.eps(dtype=f64))) == planes(x)
    assert planes(torch.minimum(x, lo)) == {F(0): [1.0, 1.0, -2.0, 0.5], F(1): [1.0, 2.0, 1.0, 1.0]}
    assert planes(torch.fmax(x, lo)) == planes(torch.maximum(x, lo))


def test_where_with_scalars_and_lc():
    a = t(1.0, 2.0, -2.0, 0.5)
    x = a.nonstd()
    assert planes(torch.where(a > 0, x, 0.0)) == {F(0): [1.0, 2.0, 0.0, 0.5], F(1): [1.0, 1.0, 0.0, 1.0]}
    assert planes(torch.where(a > 0, 1.0, x)) == {F(0): [1.0, 1.0, -2.0, 1.0], F(1): [0.0, 0.0, 1.0, 0.0]}
    inv = 1 / (x - 1)   # infinite at a = 1
    w = torch.where(a == 1, x, inv)
    assert set(torchlc.support(w)) >= {F(-1), F(0), F(1)}
    assert nz(w[0]) == {F(0): 1.0, F(1): 1.0}


def test_integer_valued_ops_are_real():
    x = t(1.0, -1.0, 0.5, 2.5, -0.5).nonstd(t(-1.0, 1.0, 1.0, -1.0, 0.0))
    # 1−ε, −1+ε, 0.5+ε, 2.5−ε, −0.5 (exact)
    assert planes(torch.floor(x)) == {F(0): [0.0, -1.0, 0.0, 2.0, -1.0]}
    assert planes(torch.ceil(x)) == {F(0): [1.0, -0.0, 1.0, 3.0, -0.0]}
    assert planes(torch.round(x)) == {F(0): [1.0, -1.0, 1.0, 2.0, -0.0]}
    assert planes(torch.trunc(x)) == {F(0): [0.0, 0.0, 0.0, 2.0, -0.0]}
    assert planes(torch.fix(x)) == planes(torch.trunc(x))
    fr = torch.frac(x)
    assert planes(fr) == {F(0): [1.0, -1.0, 0.5, 0.5, -0.5], F(1): [-1.0, 1.0, 1.0, -1.0, 0.0]}


def test_fmod_remainder_at_exact_multiples_pm_eps():
    a = t(1.0, 2.0, -2.0, 0.5)
    e = torchlc.eps(dtype=f64)
    assert planes(torch.fmod(a + e, 1.0)) == {F(0): [0.0, 0.0, -1.0, 0.5], F(1): [1.0] * 4}
    assert planes(torch.fmod(a - e, 1.0)) == {F(0): [1.0, 1.0, 0.0, 0.5], F(1): [-1.0] * 4}
    assert planes(torch.remainder(a + e, 1.0)) == {F(0): [0.0, 0.0, 0.0, 0.5], F(1): [1.0] * 4}
    assert planes(torch.remainder(a - e, 1.0)) == {F(0): [1.0, 1.0, 1.0, 0.5], F(1): [-1.0] * 4}
    assert planes(torch.fmod(a + e, s(0.5))) == {F(0): [0.0, 0.0, -0.5, 0.0], F(1): [1.0] * 4}
    assert planes(torch.fmod(3 * a + e, 2.0)) == {F(0): [1.0, 0.0, -2.0, 1.5], F(1): [1.0] * 4}
    # an LC divisor: 3 / (1.5 + ε) is just below 2, so the quotient truncates to 1
    y = s(1.5).nonstd()
    assert nz(torch.fmod(s(3.0), y)) == {F(0): 1.5, F(1): -1.0}
    assert nz(torch.remainder(s(3.0), y)) == {F(0): 1.5, F(1): -1.0}
    # the ε⁰ plane off the multiples equals torch's own fmod/remainder bit for bit
    b = t(0.7, -5.3, 1e10 + 0.1)
    assert torch.equal(torchlc.coeff(torch.fmod(b.nonstd(), 0.3), 0), torch.fmod(b, 0.3))
    assert torch.equal(torchlc.coeff(torch.remainder(b.nonstd(), 0.3), 0), torch.remainder(b, 0.3))


def test_decision_on_truncated_terms_raises():
    x = s(1.0).nonstd()
    z = (x * x - 2 * x + 1) / torchlc.eps(dtype=f64)  # (x−1)²/ε = ε, but the ε² term was dropped
    with pytest.raises(torchlc.TruncationError, match="order"):
        torch.sign(z)
    with pytest.raises(torchlc.TruncationError, match="order"):
        _ = z > 0


def test_floor_of_infinite_is_nan_and_strict_raises():
    z = 1 / torchlc.eps(dtype=f64) + 0.5
    assert torch.isnan(torchlc.coeff(torch.floor(z), 0))
    with torchlc.strict(), pytest.raises(torchlc.DomainError):
        torch.floor(z)


def test_isnan_isfinite():
    x = torchlc.from_terms({0: t(1.0, float("nan"), 2.0), 1: t(1.0, 0.0, float("inf"))}, dtype=f64)
    assert torch.isnan(x).tolist() == [False, True, False]
    assert torch.isinf(x).tolist() == [False, False, True]


def test_isfinite_sees_every_coefficient():
    x = torchlc.from_terms({0: t(1.0, float("nan"), 2.0), 1: t(1.0, 0.0, float("inf"))}, dtype=f64)
    assert torch.isfinite(x).tolist() == [True, False, False]


# ------------------------------------------------------------------------------ generic points vs jvp
GENERIC = t(-1.7, -0.3, 0.45, 1.3, 2.6)       # no kink of any op below sits on these points
GV = t(1.0, -2.0, 0.5, 3.0, -1.5)
B = t(0.2, 0.1, -0.5, 2.0, 1.0)


ORACLE = {"heaviside_times": lambda x: (x > 0).to(f64) * torch.exp(x)}


@pytest.mark.parametrize(
    "name,f",
    [
        ("abs", torch.abs),
        ("relu", torch.relu),
        ("hardtanh", Fn.hardtanh),
        ("clamp", lambda x: torch.clamp(x, -0.5, 1.0)),
        ("maximum", lambda x: torch.maximum(x, B)),
        ("minimum", lambda x: torch.minimum(x, B)),
        ("where", lambda x: torch.where(x > B, x * x, torch.sin(x))),
        ("max_pair", lambda x: torch.maximum(x * x, 2 - x)),
        ("sign_times", lambda x: torch.sign(x) * x * x),
        ("heaviside_times", lambda x: torch.heaviside(x, s(0.5)) * torch.exp(x)),
        ("floor_plus", lambda x: torch.floor(x) + x * x),
        ("ceil_plus", lambda x: torch.ceil(x) * x),
        ("round_plus", lambda x: torch.round(x) * x),
        ("trunc_plus", lambda x: torch.trunc(x) - x),
        ("frac", torch.frac),
        ("fmod", lambda x: torch.fmod(x, 0.7)),
        ("remainder", lambda x: torch.remainder(x, 0.7)),
        ("fmod_tensor", lambda x: torch.fmod(x * 3, B + 1)),
    ],
)
def test_piecewise_ops_at_generic_points_match_jvp(name, f):
    from torch.func import jvp
    from torch.testing import assert_close

    y = f(GENERIC.nonstd(GV))
    oracle = ORACLE.get(name, f)            # torch has no forward AD for heaviside
    val, tan = jvp(oracle, (GENERIC,), (GV,))
    assert torch.equal(torchlc.coeff(y, 0), val) or name in ("fmod_tensor",)
    assert_close(torchlc.coeff(y, 0), val, rtol=1e-14, atol=1e-14)
    assert_close(torchlc.coeff(y, 1), tan, rtol=1e-13, atol=1e-13)
    assert torch.equal(torchlc.coeff(y, -1), torch.zeros_like(GENERIC))
