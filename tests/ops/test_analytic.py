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
