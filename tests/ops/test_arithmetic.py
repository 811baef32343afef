"""+ − × ÷, powers, roots, reciprocal, in-place variants and broadcasting (semantics §2–§3).

Dyadic values are compared exactly (torch.equal); non-dyadic smooth parts against torch.func.jvp in
float64 with tight tolerances.
"""

import math
from fractions import Fraction as F

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-13, atol=1e-13)


def t(*vals):
    return torch.tensor(vals, dtype=f64)


def planes(y):
    """{exponent: list} of every plane (support order)."""
    return {q: c.tolist() for q, c in torchlc.terms(y).items()}


def nz(y):
    """{exponent: list} of the planes that are not identically zero."""
    return {q: c.tolist() for q, c in torchlc.terms(y).items() if bool((c != 0).any())}


def check_jvp(f, a, v, y):
    val, tan = jvp(f, (a,), (v,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)


A = t(1.5, -2.0, 0.25)
X = A.nonstd()
M = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=f64)


# ------------------------------------------------------------------------------ + − × ÷ exact values
def test_add_sub_mul_div_exact_dyadic():
    y = t(0.5, 4.0, -1.0).nonstd(t(2.0, 0.0, -1.0))
    assert planes(X + y) == {F(0): [2.0, 2.0, -0.75], F(1): [3.0, 1.0, 0.0]}
    assert planes(X - y) == {F(0): [1.0, -6.0, 1.25], F(1): [-1.0, 1.0, 2.0]}
    # (a + ε)(b + cε) = ab + (ac + b)ε (+ cε² dropped at order 1)
    assert planes(X * y) == {F(0): [0.75, -8.0, -0.25], F(1): [3.5, 4.0, -1.25]}
    assert torchlc.exact_through(X * y) == 1
    # 1/(b + cε) = 1/b − c/b² ε
    assert planes(1 / y) == {F(0): [2.0, 0.25, -1.0], F(1): [-8.0, 0.0, 1.0]}
    assert planes(-X) == {F(0): [-1.5, 2.0, -0.25], F(1): [-1.0, -1.0, -1.0]}
    assert planes(+X) == planes(X)


def test_scalars_on_either_side():
    assert planes(X + 1) == {F(0): [2.5, -1.0, 1.25], F(1): [1.0, 1.0, 1.0]}
    assert planes(1 + X) == planes(X + 1)
    assert planes(3 - X) == {F(0): [1.5, 5.0, 2.75], F(1): [-1.0, -1.0, -1.0]}
    assert planes(X - 3) == {F(0): [-1.5, -5.0, -2.75], F(1): [1.0, 1.0, 1.0]}
    assert planes(2 * X) == {F(0): [3.0, -4.0, 0.5], F(1): [2.0, 2.0, 2.0]}
    assert planes(X / 4) == {F(0): [0.375, -0.5, 0.0625], F(1): [0.25, 0.25, 0.25]}
    assert planes(torch.sub(X, X, alpha=2)) == {F(0): [-1.5, 2.0, -0.25], F(1): [-1.0, -1.0, -1.0]}
    assert planes(torch.add(X, M[0], alpha=2)) == {F(0): [3.5, 2.0, 6.25], F(1): [1.0, 1.0, 1.0]}
    assert planes(torch.rsub(X, 3)) == planes(3 - X)
    assert planes(torch.true_divide(X, 2)) == planes(X / 2)
    assert planes(torch.square(X)) == planes(X * X)


def test_division_by_plain_tensor_rounds_like_torch():
    # the ε⁰ plane of a/b for plain b is exactly torch's a/b
    a = t(1.0, 2.0, 7.0)
    b = t(3.0, 7.0, 10.0)
    y = a.nonstd() / b
    assert torch.equal(torchlc.coeff(y, 0), a / b)
    assert torch.equal(torchlc.coeff(y, 1), 1 / b)


def test_division_by_python_number_rounds_like_torch():
    a = t(12346.0, 7.0, 0.3, 1.0)
    for b in (10, 3, 10.0, 0.1):
        assert torch.equal(torchlc.coeff(a.nonstd() / b, 0), a / b)


def test_div_rounding_modes():
    x = t(2.0, -2.0, 2.5).nonstd(t(-1.0, 1.0, 1.0))
    # floor((2 − ε)/2) = 0, floor((−2 + ε)/2) = −1, floor(1.25 + ε/2) = 1
    assert planes(torch.div(x, 2, rounding_mode="floor")) == {F(0): [0.0, -1.0, 1.0]}
    # trunc: 0, −0 → 0 (−1 + ε/2 is > −1, so trunc = 0), 1
    assert planes(torch.div(x, 2, rounding_mode="trunc")) == {F(0): [0.0, 0.0, 1.0]}


def test_cauchy_product_second_order_and_truncation():
    x = t(3.0).nonstd(order=2)
    y = x * x * x                              # (3 + ε)³ = 27 + 27ε + 9ε² (+ ε³ dropped)
    assert planes(y) == {F(0): [27.0], F(1): [27.0], F(2): [9.0]}
    assert torchlc.exact_through(y) == 2
    with pytest.raises(torchlc.TruncationError):
        torchlc.coeff(y, 3)


def test_reciprocal_of_infinite_and_lowest_exponent_leads():
    e = torchlc.eps(dtype=f64, order=2)
    y = 1 / (2 + 1 / e)          # ε − 2ε² + …
    assert nz(y) == {F(1): 1.0, F(2): -2.0}
    y = torch.reciprocal(e * 4)  # ε⁻¹/4
    assert nz(y) == {F(-1): 0.25}


def test_dividing_by_eps_lowers_exact_through():
    x = t(2.0).nonstd()
    y = x * x / torchlc.eps(dtype=f64)   # (4 + 4ε)/ε, the ε² term of x² was dropped
    assert nz(y) == {F(-1): [4.0], F(0): [4.0]}
    assert torchlc.exact_through(y) == 0
    with pytest.raises(torchlc.TruncationError, match="order"):
        torchlc.coeff(y, 1)


# ------------------------------------------------------------------------------ smooth parts vs jvp
@pytest.mark.parametrize(
    "name,f",
    [
        ("poly", lambda z: z * z * z - 2 * z + 1),
        ("div", lambda z: (z + 3) / (z * z + 1)),
        ("recip", torch.reciprocal),
        ("sqrt", lambda z: torch.sqrt(z * z + 1)),
        ("rsqrt", lambda z: torch.rsqrt(z * z + 0.5)),
        ("pow_int", lambda z: z ** 5),
        ("pow_neg", lambda z: z ** -3),
        ("pow_half", lambda z: (z * z) ** 0.5),
        ("pow_float", lambda z: (z * z + 1) ** 2.5),
        ("pow_neg_float", lambda z: (z * z + 1) ** -1.25),
        ("scalar_base", lambda z: 2.0 ** z),
        ("lc_exponent", lambda z: (z * z + 1) ** z),
    ],
)
def test_smooth_arithmetic_matches_jvp(name, f):
    a = t(1.5, -2.0, 0.25, 0.7)
    v = t(1.0, -0.5, 2.0, 3.0)
    check_jvp(f, a, v, f(a.nonstd(v)))


def test_second_order_division_matches_hand_derivation():
    # f(x) = 1/(1 + x²): f'' = (6x² − 2)/(1 + x²)³
    a = t(0.5, -1.5, 2.0)
    y = 1 / (1 + a.nonstd(order=2) ** 2)
    assert_close(torchlc.coeff(y, 2), (6 * a**2 - 2) / (1 + a**2) ** 3 / 2, **TOL)


def test_rational_powers_exact_exponents():
    e = torchlc.eps(dtype=f64, order=2)
    assert nz(e ** F(1, 3)) == {F(1, 3): 1.0}
    assert torchlc.support(e ** F(1, 3)) == (F(1, 3),)
    assert nz((e ** F(1, 3)) ** 3) == {F(1): 1.0}
    # sqrt(4 + ε) = 2 + ε/4 − ε²/64
    x = t(4.0).nonstd(order=2)
    assert planes(x ** 0.5) == {F(0): [2.0], F(1): [0.25], F(2): [-0.015625]}
    assert planes(torch.sqrt(x)) == planes(x ** 0.5)
    # rsqrt(4 + ε) = 1/2 − ε/16 + 3ε²/256
    assert planes(torch.rsqrt(x)) == {F(0): [0.5], F(1): [-0.0625], F(2): [0.01171875]}
    # (−8 + ε)^{1/3} = −2 + ε/12 + ...: odd denominator, negative base is fine
    y = t(-8.0).nonstd() ** F(1, 3)
    assert_close(torchlc.coeff(y, 0), t(-2.0), **TOL)
    assert_close(torchlc.coeff(y, 1), t(1 / 12), **TOL)
    # even denominator, negative base: NaN
    assert torch.isnan(torchlc.coeff(t(-4.0).nonstd() ** 0.5, 0)).all()


def test_sqrt_of_infinitesimal_gives_half_exponent():
    y = torch.sqrt(torchlc.eps(dtype=f64) * 4)
    assert nz(y) == {F(1, 2): 2.0}


def test_pow_tensor_exponent_per_element():
    e = t(2.0, 3.0, -1.0)
    y = X ** e
    assert planes(y) == {F(0): [2.25, -8.0, 4.0], F(1): [3.0, 12.0, -16.0]}
    y = X ** torch.tensor(2.0, dtype=f64)
    assert planes(y) == {F(0): [2.25, 4.0, 0.0625], F(1): [3.0, -4.0, 0.5]}


def test_pow_of_elements_whose_leading_term_truncates():
    z = torchlc.from_terms({0: t(2.0, 0.0), 1: t(0.0, 2.0)}, dtype=f64)   # [2, 2ε], order 1
    assert planes(z ** 2) == planes(z * z) == {F(0): [4.0, 0.0], F(1): [0.0, 0.0]}
    assert planes(z ** 3) == {F(0): [8.0, 0.0], F(1): [0.0, 0.0]}
    x = torchlc.from_terms({-1: t(1.0, 0.0), 2: t(0.0, 1.0)}, dtype=f64)  # [ε⁻¹, ε²], order 2
    assert nz(x ** 2) == {F(-2): [1.0, 0.0]}
    d = torchlc.ngrad(lambda u: u ** 2, t(0.0, 1.0))
    assert nz(d) == {F(0): [0.0, 2.0]}


def test_pow_zero_and_one():
    assert planes(X ** 1) == planes(X)
    assert nz(X ** 0) == {F(0): [1.0, 1.0, 1.0]}


# ------------------------------------------------------------------------------ broadcasting
def test_broadcast_lc_vector_with_plain_matrix_and_back():
    want_add = {F(0): (M + A).tolist(), F(1): torch.ones(2, 3, dtype=f64).tolist()}
    assert planes(X + M) == want_add
    assert planes(M + X) == want_add
    assert planes(M * X) == {F(0): (M * A).tolist(), F(1): M.tolist()}
    XM = M.nonstd()
    assert planes(XM * A) == {F(0): (M * A).tolist(), F(1): A.expand(2, 3).tolist()}
    assert planes(XM - A) == {F(0): (M - A).tolist(), F(1): torch.ones(2, 3, dtype=f64).tolist()}
    assert (X + M).shape == (2, 3) and (XM / A).shape == (2, 3)


def test_broadcast_lc_with_lc():
    XM = M.nonstd()
    y = XM * X  # (m + ε)(a + ε) = ma + (m + a)ε
    assert planes(y) == {F(0): (M * A).tolist(), F(1): (M + A).tolist()}
    y = X.unsqueeze(1) + t(1.0, 2.0).nonstd()  # (3,1) + (2,) -> (3, 2)
    assert y.shape == (3, 2)
    assert planes(y) == {F(0): (A[:, None] + t(1.0, 2.0)).tolist(), F(1): torch.full((3, 2), 2.0).tolist()}


def test_broadcast_0d():
    s = t(2.0).squeeze().nonstd()
    y = s * X
    assert y.shape == (3,)
    assert planes(y) == {F(0): [3.0, -4.0, 0.5], F(1): [3.5, -0.0, 2.25]}


# ------------------------------------------------------------------------------ in-place variants
def _inplace_cases():
    return [
        ("add_", lambda z: z.add_(M[0]), {F(0): [2.5, 0.0, 3.25], F(1): [1.0, 1.0, 1.0]}),
        ("add_scalar", lambda z: z.add_(1.0), {F(0): [2.5, -1.0, 1.25], F(1): [1.0, 1.0, 1.0]}),
        ("add_lc", lambda z: z.add_(X), {F(0): [3.0, -4.0, 0.5], F(1): [2.0, 2.0, 2.0]}),
        ("sub_lc", lambda z: z.sub_(X), {F(0): [0.0, 0.0, 0.0], F(1): [0.0, 0.0, 0.0]}),
        ("mul_", lambda z: z.mul_(2), {F(0): [3.0, -4.0, 0.5], F(1): [2.0, 2.0, 2.0]}),
        ("mul_lc", lambda z: z.mul_(X), {F(0): [2.25, 4.0, 0.0625], F(1): [3.0, -4.0, 0.5]}),
        ("div_", lambda z: z.div_(2), {F(0): [0.75, -1.0, 0.125], F(1): [0.5, 0.5, 0.5]}),
        ("neg_", lambda z: z.neg_(), {F(0): [-1.5, 2.0, -0.25], F(1): [-1.0, -1.0, -1.0]}),
        ("abs_", lambda z: z.abs_(), {F(0): [1.5, 2.0, 0.25], F(1): [1.0, -1.0, 1.0]}),
        ("floor_", lambda z: z.floor_(), {F(0): [1.0, -2.0, 0.0]}),
        ("iadd", lambda z: z.__iadd__(X), {F(0): [3.0, -4.0, 0.5], F(1): [2.0, 2.0, 2.0]}),
        ("exp_", lambda z: z.exp_(), {F(0): torch.exp(A).tolist(), F(1): torch.exp(A).tolist()}),
    ]


@pytest.mark.parametrize("name,op,want", [pytest.param(*c, id=c[0]) for c in _inplace_cases()])
def test_inplace_arithmetic(name, op, want):
    z = X.clone()
    r = op(z)
    assert r is z
    assert nz(z) == {q: v for q, v in want.items() if any(c != 0 for c in v)}


@pytest.mark.parametrize(
    "name,op,want",
    [
        ("clamp_", lambda z: z.clamp_(min=0.0, max=1.0), {F(0): [1.0, 0.0, 0.25], F(1): [0.0, 0.0, 1.0]}),
        ("relu_", lambda z: torch.relu_(z), {F(0): [1.5, 0.0, 0.25], F(1): [1.0, 0.0, 1.0]}),
    ],
)
def test_inplace_working(name, op, want):
    z = X.clone()
    r = op(z)
    assert r is z
    assert planes(z) == want
    assert planes(X) == {F(0): [1.5, -2.0, 0.25], F(1): [1.0, 1.0, 1.0]}  # clone isolated


def test_inplace_pow():
    z = X.clone()
    assert z.pow_(2) is z
    assert planes(z) == {F(0): [2.25, 4.0, 0.0625], F(1): [3.0, -4.0, 0.5]}


def test_inplace_does_not_touch_source_of_clone():
    z = X.clone()
    z.clamp_(min=0.0)
    assert planes(X) == {F(0): [1.5, -2.0, 0.25], F(1): [1.0, 1.0, 1.0]}


# ------------------------------------------------------------------------------ dtypes
def test_float32_arithmetic_matches_float32_torch():
    a = torch.tensor([0.1, 0.7, 3.3])
    b = torch.tensor([0.3, -1.1, 2.0])
    x = a.nonstd(b)
    y = x * x + x / 3
    assert y.dtype == torch.float32
    val, tan = jvp(lambda z: z * z + z / 3, (a,), (b,))
    assert torch.equal(torchlc.coeff(y, 0), val)
    assert_close(torchlc.coeff(y, 1), tan)


def test_integer_input_is_cast_to_default_float():
    x = torch.tensor([1, 2]).nonstd()
    assert x.dtype == torch.get_default_dtype()
    assert planes(x * 2) == {F(0): [2.0, 4.0], F(1): [2.0, 2.0]}


def test_reciprocal_of_exact_zero_is_outside_the_field():
    a = torchlc.from_terms({-1: torch.tensor([-2.0, 0.0]), 0: torch.tensor([0.0, 0.0])})
    r = 1 / a
    assert nz(r[0]) == {F(1): -0.5}
    assert not bool(torch.isfinite(torchlc.standard_part(r))[1])   # never a finite 0
    with torchlc.strict(), pytest.raises(torchlc.DomainError):
        1 / a


@pytest.mark.parametrize("shapes", [((8,), (8,)), ((2, 4), (2, 1)), ((4,), (2, 1, 4)), ((1, 4), (2, 1))],
                         ids=["same", "bcast", "ndim", "both"])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_first_order_mul_fast_path_is_the_general_product(grad, dtype, shapes):
    # the first-order fast path of aten.mul must give the general truncated product bit for bit,
    # metadata included, on every value (zeros, infinities, NaN), with autograd recording, and for
    # broadcasting shapes
    from torchlc.ops.arithmetic import mul, mul_lc

    g = torch.Generator().manual_seed(0)
    vals = torch.tensor([0.0, -0.0, 1.5, -2.0, float("inf"), float("-inf"), float("nan"), 3.0], dtype=dtype)

    def draw(shape):
        return vals[torch.randint(0, 8, (math.prod(shape),), generator=g)].reshape(shape)

    sa, sb = shapes
    a0, a1, b0, b1 = draw(sa), draw(sa), draw(sb), draw(sb)
    a1 = a1.clone().requires_grad_(grad)
    a, b = a0.nonstd(a1), b0.nonstd(b1)
    fast, general = mul(None, a, b), mul_lc(a, b)
    assert (fast.lc_support, fast.lc_order, fast.lc_exact) == (general.lc_support, general.lc_order, general.lc_exact)
    torch.testing.assert_close(fast.lc_planes(), general.lc_planes(), rtol=0, atol=0, equal_nan=True)
    if grad:
        (torchlc.coeff(fast, 1).nan_to_num().sum()).backward()
        assert a1.grad is not None


def test_higher_order_square_and_product_blocked(monkeypatch):
    # x * x and x ** 2 fold the symmetric pairs of the Cauchy product; large products run block by
    # block. Both against the plain pairwise product (a copy of x is not recognised as a square).
    import torchlc._algebra as A

    g = torch.Generator().manual_seed(1)
    a, v = torch.randn(41, generator=g, dtype=torch.float64), torch.randn(41, generator=g, dtype=torch.float64)
    with torch.no_grad():
        t = torch.tanh(a.nonstd(v, order=6))
        u = t.clone()
        ref = torchlc.coeffs(t * u)
        for y in (t * t, t ** 2, torch.square(t)):
            torch.testing.assert_close(torchlc.coeffs(y), ref, rtol=1e-14, atol=1e-14)
            assert torchlc.support(y) == torchlc.support(t * u)
        monkeypatch.setattr(A, "BLOCK", 8)
        assert torch.equal(torchlc.coeffs(t * u), ref)
        assert torch.equal(torchlc.coeffs(t * t), torchlc.coeffs(t ** 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sup", [(0, 1), (F(-1, 2), 0, 2), (F(1, 3),)])
def test_adding_a_number_is_adding_it_as_a_tensor(dtype, sup):
    # x ± c and c ± x for a Python number c take a short path (c into the ε⁰ plane of a copy, no tensor
    # for c); it must equal adding c as a tensor of x's dtype (the general rule), every value and the
    # metadata, for awkward values and numbers (c − x may differ in the sign of a zero plane: −0 = 0)
    g = torch.Generator().manual_seed(len(sup))
    vals = torch.tensor([0.0, -0.0, 1.5, -2.0, float("inf"), float("-inf"), float("nan"), 1e-30], dtype=dtype)
    x = sum(vals[torch.randperm(8, generator=g)] * torchlc.eps(q, order=2) for q in sup)
    for c in (0.0, -0.0, 1e-5, 1 / 3, -7, 2**25 + 1, float("inf"), True):
        t = torch.tensor(c, dtype=dtype)
        for got, want in ((x + c, x + t), (x - c, x - t), (c + x, t + x), (c - x, t - x)):
            assert (got.lc_support, got.lc_order, got.lc_exact) == (want.lc_support, want.lc_order, want.lc_exact)
            torch.testing.assert_close(got.lc_planes(), want.lc_planes(), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("exact", [None, F(1), F(0)])
def test_first_order_power_fast_path_is_the_general_rule(monkeypatch, dtype, exact):
    # x ** r for first-order x led by its ε⁰ term everywhere (rsqrt, sqrt, 1/x, …) takes a short path;
    # it must give the general rule's planes bit for bit (NaN where the rule gives NaN), with the same
    # support and exactness, on infinities, NaN, tiny, huge and negative values
    import torchlc._algebra as A
    from torchlc._series import Series

    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, generator=g, dtype=dtype) * 3
    fi = torch.finfo(dtype)  # tiny and huge values of the dtype (1e-30 is 0 in float16)
    a[:5] = torch.tensor([float("inf"), float("-inf"), float("nan"), fi.tiny, -fi.max / 2], dtype=dtype)
    a[a == 0] = 1  # led by ε⁰ everywhere (torch 2.11's bfloat16 randn draws exact zeros)
    b = torch.randn(400, generator=g, dtype=dtype)
    b[5:8] = torch.tensor([float("nan"), float("inf"), 0.0], dtype=dtype)
    x = Series(torch.stack([a, b]), A.FIRST_ORDER, 1, exact)
    rs = [F(-1), F(1, 2), F(-1, 2), F(1, 3), F(-2, 3), F(3, 2), F(-3), F(5, 4)]
    fast = [A.power(x, r) for r in rs]
    assert all(A._power_first_order(x, r) is not None for r in rs)  # the short path was taken
    monkeypatch.setattr(A, "_power_first_order", lambda x, r, nonzero=False: None)
    for r, f in zip(rs, fast):
        want = A.power(x, r)
        assert (f.support, f.order, f.exact) == (want.support, want.order, want.exact), r
        torch.testing.assert_close(f.planes, want.planes, rtol=0, atol=0, equal_nan=True, msg=str(r))
    # a zero standard part somewhere: the general rule (its ε^(r/…) terms), never the short path
    z = Series(torch.stack([torch.tensor([0.0, 2.0], dtype=dtype), torch.tensor([4.0, 1.0], dtype=dtype)]),
               A.FIRST_ORDER, 1, None)
    monkeypatch.undo()
    assert A._power_first_order(z, F(1, 2)) is None


@pytest.mark.parametrize("numel", [6, 1 << 16])  # both sides of add_number's one-pass threshold
def test_add_number_bit_for_bit_against_a_tensor_addend(numel):
    """LC + a Python number (``1 + tanh(…)``) writes the planes as adding the number as a tensor of the
    planes' dtype does, bit for bit (signed zeros, NaN, ±inf), for planes led by ε⁰ and by ε⁻¹, and for
    planes that are not contiguous."""
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45])
    a = torch.cat([special, torch.randn(numel - 6, generator=g)])
    b = torch.cat([torch.tensor([-0.0, 0.0, 1.0, -0.0, float("nan"), -0.0]), torch.randn(numel - 6, generator=g)])
    x = a.nonstd(b)
    xs = [x, x / torchlc.eps(), x.view(2, -1).t()]
    for y in xs:
        for c in (1.0, -0.5, 3):
            got = (y + c).lc_planes()
            want = (y + torch.tensor(c, dtype=y.dtype)).lc_planes()
            assert got.shape == want.shape
            assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (c, torchlc.support(y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rms_norm_rsqrt_reads_no_data_on_the_host(dtype):
    """rsqrt(mean(x²) + eps), RMS norm's: the standard part is known positive (a square, its mean,
    plus a normal positive number), so the first-order path skips its host check for zeros (a sync on
    a GPU), and gives the planes the checked path gives, bit for bit."""
    from torchlc._tensor import standard_part_fact
    from torchlc.bench.measure import kernel_names

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 8, generator=g).to(dtype)
    a[0, 0] = 0.0  # a row of zeros: mean(x²) = 0, + eps > 0
    x = a.nonstd(torch.randn(3, 5, 8, generator=g).to(dtype))
    with torch.no_grad():
        var = (x * x).mean(-1, keepdim=True)
        assert standard_part_fact(var) == "nonneg" and standard_part_fact(x.pow(2)) == "nonneg"
        v = var + 1e-6
        assert standard_part_fact(v) == "pos"
        assert not {"ne", "all"} & set(kernel_names(lambda: torch.rsqrt(v)))  # no check, no sync
        fast = torch.rsqrt(v)
        checked = torch.rsqrt(v + 0.0)  # + 0.0: the same planes, no fact (0 is not positive)
        assert standard_part_fact(v + 0.0) is None
    assert torch.equal(torchlc.coeffs(fast), torchlc.coeffs(checked))


def test_standard_part_facts_are_voided_by_writes_and_not_made_up():
    """A fact holds for the planes it was recorded on: an in-place write voids it, so a zero written
    later takes the general rule (its ε^(−1/2) term), never the fast path's inf. Products of distinct
    tensors and numbers that are not normal positives in the dtype record nothing."""
    from torchlc._tensor import standard_part_fact

    x = torch.tensor([1.0, 2.0]).nonstd(torch.tensor([1.0, 1.0]))
    y = torch.tensor([3.0, -1.0]).nonstd(torch.tensor([1.0, 1.0]))
    with torch.no_grad():
        v = x * x + 1e-6
        assert standard_part_fact(v) == "pos"
        torchlc.coeffs(v)  # reading does not void it
        assert standard_part_fact(v) == "pos"
        v.mul_(torch.tensor([0.0, 1.0]))  # ε⁰ of the first element is now 0 (its ε¹ too)
        assert standard_part_fact(v) is None
        w = (x * x + 1e-6) * torch.tensor([0.0, 1.0]) + torch.tensor([1.0, 0.0]).nonstd(torch.tensor([0.0, 0.0])) * 0
        assert standard_part_fact(w) is None
        z = x * x + 1e-6
        torchlc.coeffs(z)[0, 0] = 0.0  # a write straight into the planes
        z.lc_planes()[1, 0] = 2.0
        assert standard_part_fact(z) is None
        r = torch.rsqrt(z)  # the general rule: x = 2ε there, so x^(-1/2) = 2^(-1/2) ε^(-1/2)
        assert F(-1, 2) in torchlc.support(r)
        assert standard_part_fact(x * y) is None
        assert standard_part_fact(x * x + 0.0) is None and standard_part_fact(x * x - 1e-6) is None
        h = x.half()
        assert standard_part_fact(h * h) == "nonneg"
        assert standard_part_fact(h * h + 1e-6) is None  # 1e-6 is subnormal in float16
        assert standard_part_fact(h * h + 1e-4) == "pos"
        assert standard_part_fact(x * x + float("inf")) is None


def _zero_first(v):
    """A mask that zeroes v's first element (all its planes), as an LC operand or a plain one."""
    m = torch.ones(v.shape, dtype=v.dtype)
    m.view(-1)[0] = 0.0
    return m


# every way a write reaches LC planes: LC in-place and out= ops (on the tensor or through an LC view),
# LC-level writes, and writes by plain ops into planes handed out by the public API (out= variants
# of LC ops raise NotImplementedError)
_WRITES = {
    "mul_": lambda v: v.mul_(_zero_first(v)),
    "mul_ through a view": lambda v: v.view(-1)[:1].mul_(0.0),
    "setitem": lambda v: v.__setitem__((0,) * v.dim(), 0.0),
    "copy_": lambda v: v.copy_(v * _zero_first(v)),
    "clamp_": lambda v: v.clamp_(max=0.0),
    "zero_": lambda v: v.zero_(),
    "squeeze_ then mul_": lambda v: v.unsqueeze_(0).mul_(0.0),
    "sub_ of the standard part": lambda v: v.sub_(torchlc.standard_part(v) * (1 - _zero_first(v))),
    "torchlc.coeffs": lambda v: torchlc.coeffs(v)[0].view(-1)[0].zero_(),
    "LCTensor.lc_planes": lambda v: v.lc_planes()[0].view(-1)[0].zero_(),
    "LCTensor.lc_storage": lambda v: v.lc_storage[0][0].view(-1)[0].zero_(),
    "torchlc.terms": lambda v: torchlc.terms(v)[F(0)].view(-1)[0].zero_(),
    "torchlc.coeff": lambda v: torchlc.coeff(v, 0).view(-1)[0].zero_(),
}
# these leave the ε¹ coefficient of the zeroed element: x = bε there, so x^(−1/2) has an ε^(−1/2) term
_KEEP_TANGENT = {"sub_ of the standard part", "torchlc.coeffs", "LCTensor.lc_planes", "LCTensor.lc_storage",
                 "torchlc.terms", "torchlc.coeff"}


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("write", list(_WRITES))
def test_writes_void_standard_part_facts(write, mode):
    """Property over every write path: after a write into planes that carry a fact (RMS norm's
    mean(x²) + eps, "pos"), rsqrt gives what it gives on the same values without a fact, bit for bit
    and with the same support (an exact zero written is NaN, a zero standard part takes the general
    rule's ε^(−1/2) term; the fast path would give inf). Eager planes see writes by their version counter; inference-mode planes, which have
    none, by torchlc's write clock (see torchlc._tensor.standard_part_fact), as in a trace."""
    from torchlc._tensor import standard_part_fact

    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=g).nonstd(torch.randn(3, 4, generator=g))
    ctx = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    with ctx():
        v = (x * x).mean(-1, keepdim=True) + 1e-6
        assert standard_part_fact(v) == "pos"
        _WRITES[write](v)
        assert standard_part_fact(v) is None
        got = torch.rsqrt(v)
        fresh = torchlc.from_terms({q: c.clone() for q, c in torchlc.terms(v).items()}, order=1)
        want = torch.rsqrt(fresh)
    assert torchlc.support(got) == torchlc.support(want)
    assert (F(-1, 2) in torchlc.support(got)) == (write in _KEEP_TANGENT)
    assert torch.equal(torchlc.coeffs(got).view(torch.int32), torchlc.coeffs(want).view(torch.int32))


def test_standard_part_facts_hold_in_inference_mode_and_traces():
    """Inference-mode planes (no version counter) and a trace's planes keep facts by the write clock:
    RMS norm's rsqrt reads no data there, and torchlc.compile traces it without the general rule's
    speculation (no lead-plane argmax, no guard flag to read back per call). A write anywhere in
    between voids them (conservative, never wrong)."""
    from torchlc._tensor import standard_part_fact
    from torchlc.bench.measure import kernel_names

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 8, generator=g).nonstd(torch.randn(2, 5, 8, generator=g))
    with torch.inference_mode():
        v = (x * x).mean(-1, keepdim=True) + 1e-6
        assert standard_part_fact(v) == "pos"
        assert not {"ne", "all"} & set(kernel_names(lambda: torch.rsqrt(v)))
        other = x.clone()
        other.add_(1.0)  # a write elsewhere: the clock moves
        assert standard_part_fact(v) is None

    def rms(t):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)

    graphs = []

    def recording(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    f = torchlc.compile(rms, backend=recording)
    with torch.no_grad():
        y, ref = f(x), rms(x)
    ops = {str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"}
    assert "aten.rsqrt.default" in ops and not {"aten.argmax.default", "aten.any.default"} & ops
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))


_EXTREME = [0.0, -0.0, 1.5, -2.0, 3.0, float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 3e38, 1e-160,
            5e-324, 1e-300, 1e-10, 0.75]


def _draw_planes(T, shape, dtype, g):
    vals = torch.tensor(_EXTREME, dtype=torch.float64).to(dtype)
    return vals[torch.randint(0, len(vals), (T, *shape), generator=g)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", ["square", "product", "broadcast"])
@pytest.mark.parametrize("terms,order", [((0, 1), 1), ((0, 1), 2), ((0, 1, 2), 3), ((-1, 0, 1), 2)])
def test_products_do_not_depend_on_the_grad_mode(terms, order, case, dtype):
    """Property over supports, orders, squares and broadcasts, on values that overflow, underflow and
    are ±inf/NaN: a product's planes with autograd recording (new tensors) equal the grad-free ones
    (written in place) bit for bit. Before, the recording path rounded a₀b₁ + a₁b₀ twice where the
    in-place one fused it (orders ≥ 2 differed in the last bit), and a checkpointed recomputation
    could change a value."""
    g = torch.Generator().manual_seed(len(terms) * 10 + order)
    shape_a, shape_b = ((4, 8), (8,)) if case == "broadcast" else ((4, 8), (4, 8))
    pa = _draw_planes(len(terms), shape_a, dtype, g)
    pb = _draw_planes(len(terms), shape_b, dtype, g)

    def product(grad):
        qa = pa.clone().requires_grad_(grad)
        x = torchlc.from_terms(dict(zip(terms, qa)), order=order)
        y = x if case == "square" else torchlc.from_terms(dict(zip(terms, pb)), order=order)
        with torch.set_grad_enabled(grad):
            z = x * y
        return torchlc.support(z), torchlc.coeffs(z).detach()

    (s0, free), (s1, recorded) = product(False), product(True)
    assert s0 == s1
    assert torch.equal(free.view(torch.int64 if dtype == torch.float64 else torch.int32),
                       recorded.view(torch.int64 if dtype == torch.float64 else torch.int32))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_first_order_squares_are_the_product_and_the_jvp(dtype):
    """x·x at first order: the fast path, the general product's square, the product with a copy of x
    (no square detected) and torch.func.jvp's tangent a₁a₀ + a₀a₁ all give 2·(a₀a₁), bit for bit,
    on values whose doubling or product overflows or underflows (2·1e308 is inf, but 2·(1e308·1e-10)
    is not)."""
    from torchlc.ops.arithmetic import mul, mul_lc

    g = torch.Generator().manual_seed(5)
    a0, a1 = _draw_planes(2, (64,), dtype, g)
    x = a0.nonstd(a1)
    with torch.no_grad():
        got = [torchlc.coeffs(t) for t in (mul(None, x, x), mul_lc(x, x), mul_lc(x, x.clone()), x ** 2)]
    _, tangent = torch.func.jvp(lambda z: z * z, (a0,), (a1,))
    bits = (lambda t: t.view(torch.int64)) if dtype == torch.float64 else (lambda t: t.view(torch.int32))
    for planes in got:
        assert torch.equal(bits(planes), bits(got[0]))
    assert torch.equal(bits(got[0][1]), bits(tangent))
    assert torch.equal(bits(got[0][0]), bits(a0 * a0))


def test_higher_order_squares_do_not_overflow_their_cross_terms():
    """(a₀ + a₁ε + a₂ε²)² at order 2: the ε² coefficient 2a₀a₂ + a₁² is 2e298 for a₀ = 1e308 and
    a₂ = 1e-10, finite although 2a₀ is not (the doubled factor overflowed before)."""
    x = torchlc.from_terms({0: torch.tensor([1e308], dtype=torch.float64),
                            1: torch.tensor([1e-10], dtype=torch.float64),
                            2: torch.tensor([1e-10], dtype=torch.float64)}, order=2)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            c2 = torchlc.coeff(x * x, 2)
        assert c2.item() == 2 * (1e308 * 1e-10)  # a₁² = 1e-20 is far below half an ulp of it


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_first_order_division_is_the_plain_division_and_the_jvp(dtype):
    """LC / LC at first order: the ε⁰ plane is torch's a₀/b₀ bit for bit (a·(1/b) rounds twice and
    differs in the last bit) and the ε¹ plane torch.func.jvp's tangent, on random values, signed zeros,
    ±inf, NaN, huge and subnormal divisors, in both grad modes, broadcasting too. A zero divisor keeps
    the general rule (its ε⁻¹ term)."""
    g = torch.Generator().manual_seed(9)
    specials = torch.tensor([0.0, -0.0, 1.5, -2.0, float("inf"), float("-inf"), float("nan"), 3e38, 1e-40, 1e-300])
    a0, a1, b0, b1 = (torch.cat([torch.randn(400, generator=g), specials[torch.randint(0, 10, (400,), generator=g)]])
                      .to(dtype) for _ in range(4))
    b0 = torch.where(b0 == 0, 1.25, b0)
    _, tangent = torch.func.jvp(torch.div, (a0, b0), (a1, b1))
    bits = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16}[dtype]
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            q = a0.nonstd(a1.clone().requires_grad_(grad)) / b0.nonstd(b1)
        planes = torchlc.coeffs(q).detach()
        assert torch.equal(planes[0].view(bits), (a0 / b0).view(bits))
        assert torch.equal(planes[1].view(bits), tangent.view(bits))
    rows = a0[:8].reshape(2, 4).nonstd(a1[:8].reshape(2, 4)) / b0[:4].nonstd(b1[:4])
    _, t = torch.func.jvp(torch.div, (a0[:8].reshape(2, 4), b0[:4]), (a1[:8].reshape(2, 4), b1[:4]))
    assert torch.equal(torchlc.coeff(rows, 1).view(bits), t.view(bits))
    z = torch.tensor([1.0, 2.0]).nonstd() / torch.tensor([0.0, 1.0]).nonstd()
    assert F(-1) in torchlc.support(z)
