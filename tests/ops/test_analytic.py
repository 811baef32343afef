"""Analytic functions (semantics §3) at generic points, checked against torch.func.jvp in float64.

x = a + v·ε: the ε⁰ plane is f(a) (torch's own value), the ε¹ plane the jvp tangent f'(a)·v, and at
order 2 the ε² plane is f''(a)·v²/2 (nested jvp, and hand-derived formulas for a few).
"""

import math
from fractions import Fraction as F

import pytest
import torch
import torch.nn.functional as Fn
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)

A = torch.tensor([0.3, -0.45, 0.7, 0.05], dtype=f64)   # inside (-1, 1): every op's domain
V = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=f64)
POS = torch.tensor([0.3, 1.7, 2.5, 0.05], dtype=f64)    # positive points for log/sqrt/...
WIDE = torch.tensor([-2.3, -0.45, 0.7, 1.9], dtype=f64)  # functions defined on all of ℝ

OPS = {
    "exp": (torch.exp, WIDE),
    "expm1": (torch.expm1, WIDE),
    "log": (torch.log, POS),
    "log1p": (torch.log1p, A),
    "log2": (torch.log2, POS),
    "log10": (torch.log10, POS),
    "exp2": (torch.exp2, WIDE),
    "sin": (torch.sin, WIDE),
    "cos": (torch.cos, WIDE),
    "tan": (torch.tan, WIDE),
    "tanh": (torch.tanh, WIDE),
    "sinh": (torch.sinh, WIDE),
    "cosh": (torch.cosh, WIDE),
    "sigmoid": (torch.sigmoid, WIDE),
    "erf": (torch.erf, WIDE),
    "erfc": (torch.erfc, WIDE),
    "atan": (torch.atan, WIDE),
    "asin": (torch.asin, A),
    "acos": (torch.acos, A),
    "softplus": (Fn.softplus, WIDE),
    "softplus_beta": (lambda t: Fn.softplus(t, beta=2.0), WIDE),
    "gelu": (Fn.gelu, WIDE),
    "gelu_tanh": (lambda t: Fn.gelu(t, approximate="tanh"), WIDE),
    "silu": (Fn.silu, WIDE),
    "sqrt": (torch.sqrt, POS),
    "rsqrt": (torch.rsqrt, POS),
    "reciprocal": (torch.reciprocal, WIDE),
    "method_exp": (lambda t: t.exp(), WIDE),
    "method_sin": (lambda t: t.sin(), WIDE),
}


def d2(f, a, v):
    """Second directional derivative f''(a)[v, v] by nested jvp."""
    return jvp(lambda y: jvp(f, (y,), (v,))[1], (a,), (v,))[1]


@pytest.mark.parametrize("name", sorted(OPS))
def test_first_order_matches_jvp(name):
    f, a = OPS[name]
    y = f(a.nonstd(V))
    val, tan = jvp(f, (a,), (V,))
    assert isinstance(y, torchlc.LCTensor)
    assert y.dtype == f64 and y.shape == a.shape
    assert set(torchlc.support(y)) <= {F(0), F(1)}
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    assert torchlc.exact_through(y) == 1


@pytest.mark.parametrize("name", sorted(OPS))
def test_second_order_matches_nested_jvp(name):
    f, a = OPS[name]
    y = f(a.nonstd(V, order=2))
    val, tan = jvp(f, (a,), (V,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    assert_close(torchlc.coeff(y, 2), d2(f, a, V) / 2, rtol=1e-10, atol=1e-10)


def test_second_order_hand_derived():
    a = torch.tensor([0.3, 1.2], dtype=f64)
    x = a.nonstd(order=2)
    # exp: e^a (1 + ε + ε²/2)
    assert_close(torchlc.coeff(torch.exp(x), 2), a.exp() / 2, **TOL)
    # sin: −sin(a)/2
    assert_close(torchlc.coeff(torch.sin(x), 2), -a.sin() / 2, **TOL)
    # log: −1/(2a²)
    assert_close(torchlc.coeff(torch.log(x), 2), -1 / (2 * a**2), **TOL)
    # tanh: (tanh)'' = −2 tanh (1 − tanh²)
    t = a.tanh()
    assert_close(torchlc.coeff(torch.tanh(x), 2), -t * (1 - t**2), **TOL)
    # sigmoid: σ'' = σ(1−σ)(1−2σ)
    s = torch.sigmoid(a)
    assert_close(torchlc.coeff(torch.sigmoid(x), 2), s * (1 - s) * (1 - 2 * s) / 2, **TOL)
    # atan: −a/(1+a²)²
    assert_close(torchlc.coeff(torch.atan(x), 2), -a / (1 + a**2) ** 2, **TOL)
    # erf: (2/√π)(−2a e^{−a²})/2
    assert_close(torchlc.coeff(torch.erf(x), 2), -2 * a * torch.exp(-a**2) / math.sqrt(math.pi), **TOL)


def test_third_order_exp_and_sin():
    a = torch.tensor([0.25, -1.0], dtype=f64)
    x = a.nonstd(order=3)
    e = torch.exp(x)
    for k in range(4):
        assert_close(torchlc.coeff(e, k), a.exp() / math.factorial(k), **TOL)
    s = torch.sin(x)
    derivs = [a.sin(), a.cos(), -a.sin(), -a.cos()]
    for k in range(4):
        assert_close(torchlc.coeff(s, k), derivs[k] / math.factorial(k), **TOL)


def test_exact_real_argument_gives_torch_value_exactly():
    a = torch.tensor([0.3, 1.7], dtype=f64)
    x = torchlc.from_terms({0: a}, dtype=f64)
    for f in (torch.exp, torch.sin, torch.log, torch.tanh, torch.erf, torch.sqrt):
        y = f(x)
        assert torch.equal(torchlc.coeff(y, 0), f(a))
        assert torch.equal(torchlc.coeff(y, 1), torch.zeros_like(a))


def test_float32_default_dtype():
    a = torch.tensor([0.3, 1.7])
    y = torch.exp(a.nonstd())
    assert y.dtype == torch.float32
    assert torch.equal(torchlc.coeff(y, 0), a.exp())
    assert_close(torchlc.coeff(y, 1), a.exp())


def test_composition_matches_jvp():
    def f(t):
        return torch.tanh(torch.exp(torch.sin(t)) * t) + Fn.softplus(t) * torch.sigmoid(2 * t)

    a = WIDE
    y = f(a.nonstd(V, order=2))
    val, tan = jvp(f, (a,), (V,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    assert_close(torchlc.coeff(y, 2), d2(f, a, V) / 2, rtol=1e-10, atol=1e-10)


def test_rational_exponent_argument():
    # sin(a + ε^{1/2}) = sin a + cos a ε^{1/2} − sin a/2 ε + …
    a = torch.tensor([0.3, -0.8], dtype=f64)
    x = torchlc.from_terms({0: a, F(1, 2): torch.ones_like(a)}, dtype=f64)
    y = torch.sin(x)
    assert set(torchlc.support(y)) == {F(0), F(1, 2), F(1)}
    assert_close(torchlc.coeff(y, 0), a.sin(), **TOL)
    assert_close(torchlc.coeff(y, F(1, 2)), a.cos(), **TOL)
    assert_close(torchlc.coeff(y, 1), -a.sin() / 2, **TOL)


def test_softplus_threshold_decided_in_field():
    # torch switches to identity where beta·x > threshold (20): at x = 20 exactly, x + ε is above
    x = torch.tensor([20.0], dtype=f64).nonstd()
    y = Fn.softplus(x)
    assert torch.equal(torchlc.coeff(y, 0), torch.tensor([20.0], dtype=f64))
    assert torch.equal(torchlc.coeff(y, 1), torch.tensor([1.0], dtype=f64))
    x = torch.tensor([20.0], dtype=f64).nonstd(torch.tensor([-1.0], dtype=f64))
    y = Fn.softplus(x)
    val, tan = jvp(lambda t: torch.log1p(torch.exp(t)), (torch.tensor([20.0], dtype=f64),),
                   (torch.tensor([-1.0], dtype=f64),))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)


def test_infinite_argument_is_nan():
    x = torchlc.from_terms({-1: torch.tensor([0.0, 1.0], dtype=f64), 0: torch.tensor([1.0, 1.0], dtype=f64)})
    y = torch.exp(x)
    assert not torch.isnan(torchlc.coeffs(y)[:, 0]).any()
    assert torch.isnan(torchlc.coeff(y, 0)[1])
    assert_close(torchlc.coeff(y, 0)[0], torch.tensor(math.e, dtype=f64), **TOL)


# -- higher order: the series rules and the dense composition ------------------------------------
# A dense argument (ε, ε², …: every x.nonstd(v, order=K) after one nonlinear op) runs each function's
# O(K²) series rule (exp, log, sin, tanh, …) or the powers composition of its Taylor coefficients;
# checked against nested torch.func.jvp (the K-th derivative of t ↦ f(h(a + t·v)) is K! × the ε^K
# coefficient) and against the Horner path that non-dense supports take.


def _nested(f, a, v, k):
    g = f
    for _ in range(k):
        g = (lambda h: lambda y: jvp(h, (y,), (v,))[1])(g)
    return g(a)


def _inner(t):
    # a nonlinear, domain-preserving inner map, so f sees a dense multi-plane argument
    return t + 0.1 * torch.sin(t)


@pytest.mark.parametrize("K", [1, 5])
@pytest.mark.parametrize("name", sorted(OPS))
def test_high_order_composition_matches_nested_jvp(name, K, monkeypatch):
    import torchlc._algebra as A

    monkeypatch.setattr(A, "DENSE_MIN", 1)  # first order through the series rules too
    f, a = OPS[name]
    with torch.no_grad():
        y = f(_inner(a.nonstd(V, order=K)))  # in place (grad-free)
    y_grad = f(_inner(a.requires_grad_(False).clone().requires_grad_(True).nonstd(V, order=K)))
    assert torchlc.support(y) == tuple(F(k) for k in range(K + 1))
    assert torchlc.exact_through(y) == K
    for k in range(K + 1):
        ref = _nested(lambda t: f(_inner(t)), a, V, k) / math.factorial(k)
        scale = float(ref.abs().max()) + 1.0
        assert_close(torchlc.coeff(y, k), ref, rtol=1e-9, atol=1e-9 * scale)
        assert_close(torchlc.coeff(y_grad, k).detach(), torchlc.coeff(y, k), rtol=1e-13, atol=1e-13 * scale)


@pytest.mark.parametrize("fn", [torch.exp, torch.sin, torch.cos, torch.tanh, torch.sigmoid, torch.log, torch.tan,
                                torch.sinh, torch.cosh, torch.expm1, torch.log1p, torch.erf, torch.atan])
@pytest.mark.parametrize("K", [1, 2, 3, 6])
def test_dense_path_matches_horner_on_gapped_support(fn, K):
    # the same series with its zero planes left out (a non-dense support) takes the Horner path
    a = torch.tensor([0.3, 0.45, 0.7, 1.2], dtype=f64)
    c1 = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=f64)
    c3 = torch.tensor([0.2, 0.1, -0.4, 0.3], dtype=f64)
    gapped = {0: a, 1: c1, 3: c3} if K >= 3 else {0: a, 1: c1}
    dense = {**gapped, 2: torch.zeros_like(a)} if K >= 3 else gapped
    yg = fn(torchlc.from_terms(gapped, order=K, dtype=f64))
    yd = fn(torchlc.from_terms(dense, order=K, dtype=f64))
    assert torchlc.support(yd) == tuple(F(k) for k in range(K + 1))
    for q in torchlc.support(yg):
        assert_close(torchlc.coeff(yd, q), torchlc.coeff(yg, q), rtol=1e-13, atol=1e-13)
    assert torchlc.exact_through(yd) == torchlc.exact_through(yg) == K


def test_dense_path_in_a_half_integer_progression():
    # support (0, 1/2, 1, 3/2) at order 2: a series in t = ε^{1/2}
    a = torch.tensor([0.3, -0.8], dtype=f64)
    terms = {0: a, F(1, 2): torch.ones_like(a), 1: 0.5 * torch.ones_like(a), F(3, 2): -torch.ones_like(a)}
    x = torchlc.from_terms(terms, order=2, dtype=f64)
    y = torch.exp(x)
    assert torchlc.support(y) == (F(0), F(1, 2), F(1), F(3, 2), F(2))
    # exp(a)·exp(t + t²/2 − t³): the coefficients by hand
    e = a.exp()
    want = [e, e, e, e * (1 / 6 + 0.5 - 1), e * (1 / 24 + 0.25 + 0.125 - 1)]
    for k, w in enumerate(want):
        assert_close(torchlc.coeff(y, F(k, 2)), w, **TOL)


def test_series_rule_backward_through_the_planes():
    # autograd records the series rules (no in-place writes then): d/da of the ε⁴ coefficient of
    # g(a + ε) is 5 × its ε⁵ coefficient
    a = torch.tensor([0.3, -0.7], dtype=f64, requires_grad=True)
    g = lambda t: torch.tanh(torch.exp(t)) * torch.sin(t)  # noqa: E731
    torchlc.coeff(g(a.nonstd(order=4)), 4).sum().backward()
    with torch.no_grad():
        c5 = torchlc.coeff(g(a.detach().nonstd(order=5)), 5)
    assert_close(a.grad, 5 * c5, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [torch.exp, torch.sin, torch.tanh, torch.sigmoid, torch.log, torch.erf])
@pytest.mark.parametrize("K", [1, 4])
def test_blocked_kernels_give_the_same_bits(fn, K, monkeypatch):
    # large grad-free arguments run the in-place kernels block by block; every element sees the same
    # kernels, so a tiny block size (ragged last block included) changes no bit
    import torchlc._algebra as A

    g = torch.Generator().manual_seed(0)
    a = torch.rand(37, 3, generator=g, dtype=f64) + 0.5
    v = torch.randn(37, 3, generator=g, dtype=f64)
    monkeypatch.setattr(A, "DENSE_MIN", 1)  # first order too
    with torch.no_grad():
        ref = torchlc.coeffs(fn(_inner(a.nonstd(v, order=K))))
        monkeypatch.setattr(A, "BLOCK", 8)
        got = torchlc.coeffs(fn(_inner(a.nonstd(v, order=K))))
    assert torch.equal(got, ref)
