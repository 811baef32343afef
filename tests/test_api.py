"""The public API of docs/api.md: constructors, readers, ngrad/njvp/njacfwd and their errors."""

import math
from fractions import Fraction as F

import pytest
import torch
from torch.func import jvp, vmap
from torch.testing import assert_close

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
    return {q: c.tolist() for q, c in torchlc.terms(y).items() if bool((c != 0).any())}


MIXED = torchlc.from_terms({-1: t(0.0, -1.0, 0.0), 0: t(2.0, 5.0, 0.0), 1: t(0.0, 0.0, 3.0)})  # [2, −ε⁻¹+5, 3ε]


# ------------------------------------------------------------------------------ constructors
def test_nonstd_function_and_method():
    a = torch.tensor([1.0, 2.0])
    x = a.nonstd()
    assert isinstance(x, torchlc.LCTensor) and torchlc.is_lc(x)
    assert x.dtype == torch.float32 and x.shape == (2,)
    assert torchlc.order(x) == 1 and torchlc.exact_through(x) == 1
    assert torchlc.support(x) == (F(0), F(1))
    assert planes(x) == {F(0): [1.0, 2.0], F(1): [1.0, 1.0]}
    assert planes(torchlc.nonstd(a)) == planes(x)
    assert planes(a.nonstd(torch.tensor(3.0))) == {F(0): [1.0, 2.0], F(1): [3.0, 3.0]}   # v broadcasts
    assert planes(a.nonstd(torch.tensor([0.5, -1.0]))) == {F(0): [1.0, 2.0], F(1): [0.5, -1.0]}
    assert planes(torchlc.nonstd(2.0)) == {F(0): 2.0, F(1): 1.0}
    assert torchlc.nonstd(torch.tensor([1, 2])).dtype == torch.get_default_dtype()
    assert torchlc.order(a.nonstd(order=F(3, 2))) == F(3, 2)
    assert torchlc.order(a.nonstd(order=3)) == 3
    assert a.to(f64).nonstd().dtype == f64


def test_nonstd_order_zero_and_negative():
    x = torch.tensor([1.0, 2.0]).nonstd(order=0)   # the ε term is above the cutoff
    assert nz(x) == {F(0): [1.0, 2.0]}
    assert torchlc.order(x) == 0 and torchlc.exact_through(x) == 0
    with pytest.raises(ValueError, match="order"):
        torch.tensor([1.0]).nonstd(order=-1)


def test_nonstd_of_lc_adds_another_eps():
    x = torch.tensor([1.0, 2.0]).nonstd().nonstd(torch.tensor([10.0, 10.0]))
    assert planes(x) == {F(0): [1.0, 2.0], F(1): [11.0, 11.0]}


def test_eps():
    e = torchlc.eps()
    assert planes(e) == {F(1): 1.0} and torchlc.order(e) == 1 and e.shape == ()
    assert torchlc.order(torchlc.eps(3)) == 3 and nz(torchlc.eps(3)) == {F(3): 1.0}
    assert torchlc.order(torchlc.eps(F(1, 2))) == 1 and torchlc.support(torchlc.eps(F(1, 2))) == (F(1, 2),)
    assert torchlc.order(torchlc.eps(-1)) == 1 and nz(torchlc.eps(-1)) == {M1: 1.0}
    assert torchlc.support(torchlc.eps(0.5)) == (F(1, 2),)        # an exact short float is accepted
    assert torchlc.support(torchlc.eps("2/3")) == (F(2, 3),)
    assert torchlc.support(torchlc.eps(0.1)) == (F(1, 10),)       # the simplest rational of the float
    with pytest.raises(ValueError, match="Fraction"):
        torchlc.eps(3.141592653589793)                             # no short rational rounds to π
    z = torchlc.eps(3, order=1)                                    # above its own order: 0, truncated
    assert nz(z) == {} and torchlc.exact_through(z) == 1
    e = torchlc.eps(shape=(2, 3), dtype=f64)
    assert e.shape == (2, 3) and e.dtype == f64 and bool((torchlc.coeff(e, 1) == 1).all())


def test_from_terms():
    x = torchlc.from_terms({0: torch.tensor([1.0, 0.0]), 1: torch.tensor([2.0, 0.0]), -1: torch.tensor([0.0, 3.0])})
    assert torchlc.support(x) == (M1, F(0), F(1))
    assert planes(x) == {M1: [0.0, 3.0], F(0): [1.0, 0.0], F(1): [2.0, 0.0]}
    assert torchlc.order(x) == 1 and torchlc.exact_through(x) == 1
    assert torchlc.order(torchlc.from_terms({0: 1.0, 3: 2.0})) == 3           # default max(1, max q)
    y = torchlc.from_terms({0: 1.0, 3: 2.0}, order=1)                         # term above order dropped
    assert nz(y) == {F(0): 1.0} and torchlc.exact_through(y) == 1
    assert planes(torchlc.from_terms({0: 1.0, -1: 2.0})) == {M1: 2.0, F(0): 1.0}
    assert torchlc.support(torchlc.from_terms({"1/3": 1.0})) == (F(1, 3),)
    assert torchlc.from_terms({0: t(1.0)}).dtype == f64                       # follows float tensors
    assert torchlc.from_terms({0: torch.tensor([1, 2])}).dtype == torch.get_default_dtype()
    assert torchlc.from_terms({0: 1.0}, dtype=f64).dtype == f64
    b = torchlc.from_terms({0: t(1.0, 2.0), F(1, 2): s(3.0)})                # tensors broadcast
    assert planes(b) == {F(0): [1.0, 2.0], F(1, 2): [3.0, 3.0]}
    with pytest.raises(ValueError):
        torchlc.from_terms({})


def test_from_terms_copies_its_inputs():
    c = torch.tensor([1.0, 2.0])
    x = torchlc.from_terms({0: c, 1: c})
    c.mul_(10)
    assert planes(x) == {F(0): [1.0, 2.0], F(1): [1.0, 2.0]}


# ------------------------------------------------------------------------------ readers
def test_terms_coeff_coeffs_support_on_plain_and_lc():
    p = torch.tensor([1.0, 2.0])
    assert list(torchlc.terms(p)) == [F(0)] and torch.equal(torchlc.terms(p)[F(0)], p)
    assert torch.equal(torchlc.coeff(p, 0), p) and torch.equal(torchlc.coeff(p, 1), torch.zeros(2))
    assert torch.equal(torchlc.coeffs(p), p[None])
    assert torchlc.support(p) == (F(0),)
    assert torchlc.order(p) is None
    x = p.nonstd()
    assert torch.equal(torchlc.coeff(x, F(1, 2)), torch.zeros(2))      # outside the support: zeros
    assert torch.equal(torchlc.coeffs(x), torch.stack([p, torch.ones(2)]))
    assert all(isinstance(q, F) for q in torchlc.support(MIXED))
    assert torch.equal(torchlc.coeffs(MIXED), torch.stack([torchlc.coeff(MIXED, q) for q in torchlc.support(MIXED)]))


def test_exact_through_and_coeff_truncation_error_names_order():
    x = torch.tensor([1.0]).nonstd()
    y = (1 / torchlc.eps()) * x ** 2          # ε⁻¹(1 + 2ε) with ε² dropped: exact through ε⁰ only
    assert torchlc.exact_through(y) == 0 and torchlc.order(y) == 1
    assert nz(y) == {M1: [1.0], F(0): [2.0]}
    with pytest.raises(torchlc.TruncationError, match=r"order ≥ 2|order=2"):
        torchlc.coeff(y, 1)
    with pytest.raises(torchlc.TruncationError, match="order"):
        torchlc.coeff(x, 2)
    with pytest.raises(TypeError):
        torchlc.exact_through(torch.tensor(1.0))
    # recomputing with the named order makes the coefficient available
    x2 = torch.tensor([1.0]).nonstd(order=2)
    y2 = (1 / torchlc.eps(order=2)) * x2 ** 2
    assert torchlc.coeff(y2, 1).tolist() == [1.0]


def test_standard_part():
    assert torch.equal(torchlc.standard_part(MIXED), torch.tensor([2.0, -math.inf, 0.0]))
    p = torch.tensor([1.0])
    assert torchlc.standard_part(p) is p
    sp = torchlc.standard_part(torch.tensor([1.0, 2.0]).nonstd())
    assert type(sp) is torch.Tensor and sp.tolist() == [1.0, 2.0]
    pos_inf = torchlc.from_terms({-2: t(1.0), -1: t(-5.0)})
    assert torchlc.standard_part(pos_inf).tolist() == [math.inf]


def test_leading():
    lead = torchlc.leading(MIXED)
    assert torchlc.layout(lead) == "planes"            # float64 monomials are never boxed
    assert torchlc.layout(torchlc.leading(MIXED.float())) == "boxed"
    assert nz(torchlc.leading(MIXED.float())) == nz(lead)
    assert nz(lead) == {M1: [0.0, -1.0, 0.0], F(0): [2.0, 0.0, 0.0], F(1): [0.0, 0.0, 3.0]}
    lead = torchlc.leading(torch.tensor([0.0, 2.0]).nonstd())
    assert nz(lead) == {F(0): [0.0, 2.0], F(1): [1.0, 0.0]}
    assert torchlc.order(lead) == 1


def test_layout_and_is_lc():
    assert torchlc.layout(torch.tensor([1.0]).nonstd()) == "planes"
    with pytest.raises(TypeError, match="LCTensor"):
        torchlc.layout(torch.tensor(1.0))
    assert torchlc.is_lc(torchlc.eps()) and not torchlc.is_lc(torch.tensor(1.0))


def test_coeffs_and_coeff_inside_vmap():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    c = vmap(lambda r: torchlc.coeffs(r.nonstd() * r))(x)
    assert torch.equal(c, torch.stack([torch.stack([r * r, r]) for r in x]))
    d = vmap(lambda r: torchlc.coeff(r.nonstd() * r, 1))(x)
    assert torch.equal(d, x)


def test_lctensor_refuses_implicit_conversion():
    x = torch.tensor([1.0, 2.0]).nonstd()
    with pytest.raises(TypeError, match="standard_part|compare"):
        bool(x[0])
    with pytest.raises(TypeError):
        float(x[0])
    with pytest.raises(TypeError):
        x.tolist()
    with pytest.raises(TypeError):
        x.numpy()


# ------------------------------------------------------------------------------ ngrad
@pytest.mark.parametrize("side", ["forward", "backward", "central"])
@pytest.mark.parametrize("order", [0, 1, 2])
def test_ngrad_smooth_matches_taylor(side, order):
    # f = exp(sin x) at 0.3 (v = 1): D₊ = f' + f''ε/2 + f'''ε²/6, D₋ = f' − f''ε/2 + f'''ε²/6, central: f' + f'''ε²/6
    f = lambda u: torch.exp(torch.sin(u))  # noqa: E731
    a = s(0.3)
    one = s(1.0)
    d1 = jvp(f, (a,), (one,))[1]
    d2 = jvp(lambda u: jvp(f, (u,), (one,))[1], (a,), (one,))[1]
    d3 = jvp(lambda w: jvp(lambda u: jvp(f, (u,), (one,))[1], (w,), (one,))[1], (a,), (one,))[1]
    y = torchlc.ngrad(f, a, side=side, order=order)
    assert torchlc.exact_through(y) >= order
    sgn = {"forward": 1.0, "backward": -1.0, "central": 0.0}[side]
    want = [d1, sgn * d2 / 2, d3 / 6]
    assert torch.equal(torchlc.coeff(y, -1), s(0.0))
    for k in range(order + 1):
        assert_close(torchlc.coeff(y, k), want[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_ngrad_kink_orders(order):
    # |x| at 0: ±1 exactly through any order; H(x) = (x > 0): ε⁻¹ forward, nothing backward
    assert nz(torchlc.ngrad(torch.abs, s(0.0), order=order)) == {F(0): 1.0}
    assert nz(torchlc.ngrad(torch.abs, s(0.0), side="backward", order=order)) == {F(0): -1.0}
    assert nz(torchlc.ngrad(torch.abs, s(0.0), side="central", order=order)) == {}
    h = lambda u: (u > 0).to(f64)  # noqa: E731
    assert nz(torchlc.ngrad(h, s(0.0), order=order)) == {M1: 1.0}
    assert nz(torchlc.ngrad(h, s(0.0), side="backward", order=order)) == {}
    assert nz(torchlc.ngrad(h, s(0.0), side="central", order=order)) == {M1: 0.5}
    # jump + slope + curvature: f = x² + 1 for x > 0, −x otherwise
    g = lambda u: torch.where(u > 0, u * u + 1, -u)  # noqa: E731
    want = {0: {M1: 1.0}, 1: {M1: 1.0, F(1): 1.0}, 2: {M1: 1.0, F(1): 1.0}}[order]
    assert nz(torchlc.ngrad(g, s(0.0), order=order)) == want
    assert nz(torchlc.ngrad(g, s(0.0), side="backward", order=order)) == {F(0): -1.0}


def test_ngrad_direction_and_elementwise():
    y = torchlc.ngrad(lambda u: (u * u).sum(), t(1.0, 2.0), t(1.0, 0.5))
    assert nz(y) == {F(0): 4.0}
    y = torchlc.ngrad(torch.floor, t(1.0, 1.5, 2.0), side="backward")
    assert nz(y) == {M1: [1.0, 0.0, 1.0]}
    assert nz(torchlc.ngrad(torch.abs, 0)) == {F(0): 1.0}          # Python number input
    with pytest.raises(ValueError, match="side"):
        torchlc.ngrad(torch.abs, s(0.0), side="left")


def test_ngrad_raises_working_order_past_infinite_intermediates():
    # f(x) = (x − 1)²/ε at 1: ((ε)²/ε − 0)/ε = 1 needs the ε² term of the square, i.e. a working order
    # above the one ngrad starts with
    def f(u):
        return (u - 1) * (u - 1) / torchlc.eps(order=torchlc.order(u), dtype=f64)

    y = torchlc.ngrad(f, s(1.0), order=1)
    assert nz(y) == {F(0): 1.0}
    assert torchlc.exact_through(y) >= 1


def test_njvp():
    out, d = torchlc.njvp(lambda x, y: x * y, (s(2.0), s(3.0)), (s(1.0), s(0.0)))
    assert torch.equal(out, s(6.0)) and nz(d) == {F(0): 3.0}
    out, d = torchlc.njvp(torch.floor, (torch.tensor(1.0),), (torch.tensor(-1.0),))
    assert torch.equal(out, torch.tensor(1.0)) and nz(d) == {M1: -1.0}
    out, d = torchlc.njvp(torch.floor, (torch.tensor(1.0),), (torch.tensor(-1.0),), side="backward")
    assert nz(d) == {}
    with pytest.raises(ValueError):
        torchlc.njvp(torch.add, (s(1.0), s(2.0)), (s(1.0),))
    # smooth: agrees with torch.func.jvp
    f = lambda x, y: torch.sin(x) * torch.exp(y)  # noqa: E731
    prim, tang = (s(0.3), s(-0.2)), (s(1.5), s(0.5))
    out, d = torchlc.njvp(f, prim, tang)
    val, ref = jvp(f, prim, tang)
    assert torch.equal(out, val)
    assert_close(torchlc.coeff(d, 0), ref, rtol=1e-12, atol=1e-12)


def test_njacfwd():
    J = torchlc.njacfwd(lambda x: torch.round(x * 2))(torch.tensor([0.25, 1.0]))
    assert J.shape == (2, 2)
    assert nz(J) == {M1: [[1.0, 0.0], [0.0, 0.0]]}
    J = torchlc.njacfwd(lambda x: torch.stack([x[0] * x[1], torch.relu(x[0])]))(torch.tensor([0.0, 3.0]))
    assert nz(J) == {F(0): [[3.0, 0.0], [1.0, 0.0]]}
    J = torchlc.njacfwd(lambda x, y: x * y, argnums=1)(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 1.0]))
    assert nz(J) == {F(0): [[2.0, 0.0], [0.0, 3.0]]}
    J = torchlc.njacfwd(torch.abs, side="backward")(torch.tensor([0.0, 1.0]))
    assert nz(J) == {F(0): [[-1.0, 0.0], [0.0, 1.0]]}
    J1 = torchlc.njacfwd(torch.abs, chunk_size=1)(torch.tensor([0.0, 1.0]))
    assert nz(J1) == {F(0): [[1.0, 0.0], [0.0, 1.0]]}
    # matrix input: shape out.shape + in.shape, smooth part equals torch.func.jacfwd
    f = lambda x: torch.tanh(x @ torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=f64)).sum(0)  # noqa: E731
    x = torch.tensor([[0.1, 0.2], [0.3, -0.4]], dtype=f64)
    J = torchlc.njacfwd(f)(x)
    ref = torch.func.jacfwd(f)(x)
    assert J.shape == ref.shape == (2, 2, 2)
    assert_close(torchlc.coeff(J, 0), ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ errors
def test_domain_error_and_strict():
    y = torch.log(torchlc.eps())
    assert torch.isnan(torchlc.coeffs(y)).any()
    assert not torchlc.is_strict()
    with torchlc.strict():
        assert torchlc.is_strict()
        with pytest.raises(torchlc.DomainError, match="log"):
            torch.log(torchlc.eps())
        with pytest.raises(torchlc.DomainError, match="exp"):
            torch.exp(torchlc.eps(-1))
        with torchlc.strict(False):
            assert not torchlc.is_strict()
    assert not torchlc.is_strict()
    assert issubclass(torchlc.DomainError, ArithmeticError)
    assert issubclass(torchlc.TruncationError, ArithmeticError)


def test_truncation_error_from_a_decision_names_the_order():
    x = s(1.0).nonstd()
    z = -(x * x - 2 * x + 1) / torchlc.eps(dtype=f64)     # −ε, but known only through ε⁰ (reads 0)
    with pytest.raises(torchlc.TruncationError, match=r"order=\d+"):
        torch.sign(z)
    with pytest.raises(torchlc.TruncationError, match=r"order=\d+"):
        torch.heaviside(z, s(0.5))


@pytest.mark.parametrize("op", [torch.floor, torch.ceil])   # round/trunc give 0 either way
def test_integer_part_of_truncated_zero_raises(op):
    x = s(1.0).nonstd()
    z = -(x * x - 2 * x + 1) / torchlc.eps(dtype=f64)
    with pytest.raises(torchlc.TruncationError, match="order"):
        op(z)


def test_unsupported_op_names_the_op():
    x = torch.tensor([1.0, 2.0]).nonstd()
    with pytest.raises(NotImplementedError, match=r"aten::histc has no rule") as info:
        torch.ops.aten.histc(x)
    assert "aten.aten::" not in str(info.value)
