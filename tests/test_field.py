"""Field properties of LCTensor arithmetic (hypothesis, through the public API).

x·(1/x) = 1, (√x)² = x for x > 0, sign(xy) = sign(x)·sign(y), and the total order agrees with
subtraction: x < y iff sign(y − x) > 0 (and x == y iff y − x is exactly 0).

Inputs are exact (dyadic coefficients, rational exponents) so every decision is exact. Coefficients of
x·(1/x) and (√x)² involve 1/a and √a for non-dyadic a, whose float rounding is not semantics: those
are compared with a tight float64 tolerance, and exactly where the leading coefficient is a power of 4
(then every float step is exact).
"""

from fractions import Fraction as F

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchlc

f64 = torch.float64
N = 5
ORDER = 2
EXPS = [F(-1), F(0), F(1, 3), F(1, 2), F(1)]          # λ ≤ 1 so that λ(x)+λ(y) ≤ ORDER
COEFS = [0.0, 0.0, 0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 0.25, 1.5, -0.75, 4.0]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def lc_planes(draw, nonzero=False, positive=False):
    sup = draw(st.lists(st.sampled_from(EXPS), min_size=1, max_size=3, unique=True))
    sup.sort()
    planes = {q: [draw(st.sampled_from(COEFS)) for _ in range(N)] for q in sup}
    for i in range(N):
        lead = next((q for q in sup if planes[q][i] != 0), None)
        if lead is None and (nonzero or positive):
            planes[sup[0]][i] = 1.0
        elif positive and planes[lead][i] < 0:
            for q in sup:
                planes[q][i] = -planes[q][i]
    return planes


def build(planes):
    return torchlc.from_terms({q: torch.tensor(v, dtype=f64) for q, v in planes.items()},
                              order=ORDER, dtype=f64)


def lead_info(planes, i):
    for q in sorted(planes):
        if planes[q][i] != 0:
            return q, planes[q][i]
    return None, 0.0


def sign_of(planes, i):
    return (lead_info(planes, i)[1] > 0) - (lead_info(planes, i)[1] < 0)


def check_equals_through_exact(y, expected_planes, exact_mask, what, scale=1.0):
    """coefficients of y at every exponent ≤ exact_through(y) equal the expected ones.

    ``scale`` bounds the magnitude of the products summed into a coefficient (rounding is relative
    to it, not to the result, which may be 0)."""
    et = torchlc.exact_through(y)
    got = torchlc.terms(y)
    qs = {q for q in set(got) | set(expected_planes) if q <= et}
    for q in sorted(qs):
        g = got[q] if q in got else torch.zeros(N, dtype=f64)
        e = torch.tensor(expected_planes.get(q, [0.0] * N), dtype=f64)
        assert torch.equal(g[exact_mask], e[exact_mask]), (what, q, g, e)
        # rounding of 1/a, √a is not semantics: tight tolerance on the other elements
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-13 * scale, msg=lambda m, q=q: f"{what} ε^{q}: {m}")


def pow4(a):
    a = abs(a)
    if a == 0:
        return False
    f = F(a)
    while f > 1:
        f /= 4
    while f < 1:
        f *= 4
    return f == 1


@SETTINGS
@given(lc_planes(nonzero=True))
def test_x_times_reciprocal_is_one(p):
    x = build(p)
    y = x * (1 / x)
    exact_mask = torch.tensor([pow4(lead_info(p, i)[1]) for i in range(N)])
    r = 1 / x
    scale = max(1.0, sum(c.abs().max().item() for c in torchlc.terms(r).values())) * max(
        1.0, sum(abs(c) for v in p.values() for c in v))
    check_equals_through_exact(y, {F(0): [1.0] * N}, exact_mask, "x*(1/x)", scale)
    assert torchlc.exact_through(y) >= 0 or min(q for q in p) < 0
    # all leading exponents 0: finite arithmetic, nothing lost
    if all(lead_info(p, i)[0] == 0 for i in range(N)) and min(p) >= 0:
        assert torchlc.exact_through(y) == ORDER
    z = torch.reciprocal(x) * x
    check_equals_through_exact(z, {F(0): [1.0] * N}, exact_mask, "reciprocal(x)*x", scale)


@SETTINGS
@given(lc_planes(positive=True))
def test_sqrt_squared(p):
    x = build(p)
    r = torch.sqrt(x)
    y = r * r
    exact_mask = torch.tensor([pow4(lead_info(p, i)[1]) for i in range(N)])
    scale = max(1.0, sum(c.abs().max().item() for c in torchlc.terms(r).values())) ** 2
    check_equals_through_exact(y, p, exact_mask, "sqrt(x)^2", scale)
    assert bool((r > 0).all())
    y2 = r ** 2
    check_equals_through_exact(y2, p, exact_mask, "sqrt(x)**2", scale)


@SETTINGS
@given(lc_planes(), lc_planes())
def test_sign_is_multiplicative(px, py):
    x, y = build(px), build(py)
    sx, sy, sxy = torch.sign(x), torch.sign(y), torch.sign(x * y)
    want = [sign_of(px, i) * sign_of(py, i) for i in range(N)]
    assert torchlc.coeff(sxy, 0).tolist() == [float(w) for w in want]
    assert torchlc.coeff(sxy, 0).tolist() == (torchlc.coeff(sx, 0) * torchlc.coeff(sy, 0)).tolist()
    # |xy| = |x||y| on the exact part
    a = torch.abs(x * y) - torch.abs(x) * torch.abs(y)
    for q in torchlc.support(a):
        if q <= torchlc.exact_through(a):
            assert torchlc.coeff(a, q).abs().max().item() == 0.0


@st.composite
def lc_pair(draw):
    px = draw(lc_planes())
    mode = draw(st.sampled_from(["indep", "equal", "perturb"]))
    if mode == "indep":
        py = draw(lc_planes())
    else:
        py = {q: list(v) for q, v in px.items()}
        if mode == "perturb":   # differ only in a high-order term: the order must see it
            q = draw(st.sampled_from([F(1, 2), F(1), F(3, 2), F(2)]))
            py.setdefault(q, [0.0] * N)
            py[q] = [c + draw(st.sampled_from([0.0, 2.0 ** -40, -1.0, 1.0])) for c in py[q]]
    return px, py


@SETTINGS
@given(lc_pair())
def test_total_order_consistent_with_subtraction(pair):
    px, py = pair
    x, y = build(px), build(py)
    d = y - x
    sd = torchlc.coeff(torch.sign(d), 0)
    assert (x < y).tolist() == (sd > 0).tolist()
    assert (x > y).tolist() == (sd < 0).tolist()
    assert (x == y).tolist() == (sd == 0).tolist()
    assert (x != y).tolist() == (sd != 0).tolist()
    assert (x <= y).tolist() == (sd >= 0).tolist()
    assert (x >= y).tolist() == (sd <= 0).tolist()
    # exactly one of <, ==, > (trichotomy) and antisymmetry
    lt, eq, gt = (x < y).int(), (x == y).int(), (x > y).int()
    assert ((lt + eq + gt) == 1).all()
    assert (x < y).tolist() == (y > x).tolist()
    # the expected values from the definition: sign of the leading coefficient of y − x
    dp = {q: [0.0] * N for q in set(px) | set(py)}
    for q, v in px.items():
        dp[q] = [a - b for a, b in zip(dp[q], v)]
    for q, v in py.items():
        dp[q] = [a + b for a, b in zip(dp[q], v)]
    assert sd.tolist() == [float(sign_of(dp, i)) for i in range(N)]
    # max/min pick by the same order
    m = torch.maximum(x, y)
    for q in set(torchlc.support(m)):
        want = torch.where(x < y, torchlc.coeff(y, q), torchlc.coeff(x, q))
        assert torch.equal(torchlc.coeff(m, q), want)


@SETTINGS
@given(lc_planes(), lc_planes(), lc_planes())
def test_order_is_transitive_and_translation_invariant(px, py, pz):
    x, y, z = build(px), build(py), build(pz)
    chain = (x < y) & (y < z)
    assert bool(((~chain) | (x < z)).all())
    assert (x < y).tolist() == (x + z < y + z).tolist()
