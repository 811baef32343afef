"""Special functions, atan2/hypot/copysign, scans and order statistics, against torch.func.jvp (float64)."""

import math

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)
g = torch.Generator().manual_seed(0)


def t(*vals):
    return torch.tensor(vals, dtype=f64)


V = t(1.0, -2.0, 0.5, 3.0)
UNIT = t(0.3, -0.45, 0.7, 0.05)
WIDE = t(-2.3, -0.45, 0.7, 1.9)
POS = t(0.3, 1.7, 2.5, 4.05)
BIG = t(1.1, 1.7, 2.5, 4.05)
BESSEL = t(-3.5, -0.45, 0.7, 2.6)

OPS = {
    "asinh": (torch.asinh, WIDE),
    "acosh": (torch.acosh, BIG),
    "atanh": (torch.atanh, UNIT),
    "lgamma": (torch.lgamma, t(-2.3, 0.45, 1.7, 3.9)),
    "digamma": (torch.digamma, t(-2.3, 0.45, 1.7, 3.9)),
    "polygamma2": (lambda x: torch.polygamma(2, x), POS),
    "mvlgamma3": (lambda x: torch.mvlgamma(x, 3), BIG + 1),
    "erfinv": (torch.erfinv, UNIT),
    "ndtri": (torch.special.ndtri, t(0.3, 0.05, 0.7, 0.9)),
    "erfcx": (torch.special.erfcx, WIDE),
    "log_ndtr": (torch.special.log_ndtr, WIDE),
    "i0": (torch.i0, BESSEL),
    "i1": (torch.special.i1, BESSEL),
    "i0e": (torch.special.i0e, BESSEL),
    "i1e": (torch.special.i1e, BESSEL),
}


def d2(f, a, v):
    return jvp(lambda y: jvp(f, (y,), (v,))[1], (a,), (v,))[1]


@pytest.mark.parametrize("name", sorted(OPS))
def test_analytic_first_and_second_order(name):
    f, a = OPS[name]
    val, tan = jvp(f, (a,), (V,))
    y = f(a.nonstd(V))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    y2 = f(a.nonstd(V, order=2))
    assert_close(torchlc.coeff(y2, 2), d2(f, a, V) / 2, rtol=1e-8, atol=1e-9)


def test_bessel_third_order_against_nested_jvp():
    a = t(-3.5, -0.45, 1.2, 2.6, 5.0)
    v = torch.ones_like(a)
    for f in (torch.i0, torch.special.i1, torch.special.i0e, torch.special.i1e):
        y = f(a.nonstd(order=3))
        d3 = jvp(lambda z, f=f: d2(f, z, v), (a,), (v,))[1]
        assert_close(torchlc.coeff(y, 3), d3 / 6, rtol=1e-8, atol=1e-10)
    # at 0 (where torch's nested jvp of i1 is unreliable): I0 = 1 + t²/4, I1 = t/2 + t³/16, times e^{-t}
    z = t(0.0).nonstd(order=3)
    series = {torch.i0: [1, 0, 0.25, 0], torch.special.i1: [0, 0.5, 0, 0.0625],
              torch.special.i0e: [1, -1, 0.75, -5 / 12], torch.special.i1e: [0, 0.5, -0.5, 0.3125]}
    for f, c in series.items():
        assert_close(torchlc.coeffs(f(z)).flatten(), t(*c), **TOL)


def test_i0e_kink_at_zero_is_one_sided():
    # e^{-|x|}·I0(x) at x = 0 moving right: derivative −1; moving left: +1
    z = t(0.0, 0.0)
    y = torch.special.i0e(z.nonstd(t(1.0, -1.0)))
    assert_close(torchlc.coeff(y, 1), t(-1.0, -1.0))


def test_domains():
    y = torch.acosh(t(1.0, 1.0, 0.5).nonstd(t(0.0, 1.0, 1.0)))
    assert torchlc.coeff(y, 0)[0] == 0 and torchlc.coeff(y, 1)[0] == 0
    assert torch.isnan(torchlc.coeff(y, 0)[1:]).all()
    assert torch.isnan(torchlc.coeff(torch.atanh(t(1.0).nonstd()), 1)).all()
    assert torch.isnan(torchlc.coeff(torch.lgamma(t(-2.0).nonstd()), 1)).all()


@pytest.mark.parametrize("y0,x0", [(0.3, 0.6), (-0.3, 0.6), (1.0, 0.6), (-1.0, 0.6), (0.6, -1.0),
                                   (-0.6, -1.0), (1.0, -0.6), (-1.0, -0.6), (0.0, -1.0), (0.0, 2.0)])
def test_atan2_branches(y0, x0):
    y, x = t(y0), t(x0)
    vy, vx = t(1.0), t(0.5)
    val, tan = jvp(torch.atan2, (y, x), (vy, vx))
    r = torch.atan2(y.nonstd(vy), x.nonstd(vx))
    assert_close(torchlc.coeff(r, 0), val, **TOL)
    assert_close(torchlc.coeff(r, 1), tan, **TOL)
    r2 = torch.atan2(y.nonstd(vy, order=2), x.nonstd(vx, order=2))
    h = 1e-4  # one-sided (the branch cut y = 0, x < 0 is approached from y > 0)
    f = [torch.atan2(y + k * h * vy, x + k * h * vx) for k in range(4)]
    fd2 = (2 * f[0] - 5 * f[1] + 4 * f[2] - f[3]) / h**2
    assert_close(torchlc.coeff(r2, 2), fd2 / 2, rtol=1e-4, atol=1e-5)


def test_atan2_infinitesimal_arguments():
    # y = ε, x = ε/2: the angle is atan(2), decided by the infinitesimal parts
    r = torch.atan2(t(0.0).nonstd(t(1.0)), t(0.0).nonstd(t(0.5)))
    assert_close(torchlc.coeff(r, 0), t(math.atan(2.0)))
    r = torch.atan2(t(0.0).nonstd(t(-1.0)), t(-1.0).nonstd(t(0.0)))
    assert_close(torchlc.coeff(r, 0), t(-math.pi))


def test_hypot_and_copysign():
    x, y = t(0.3, -1.2, 2.0), t(-0.7, 0.4, 0.0)
    vx, vy = t(1.0, 0.5, -1.0), t(0.2, -1.0, 2.0)
    for f in (torch.hypot, torch.copysign):
        val, tan = jvp(f, (x, y), (vx, vy))
        r = f(x.nonstd(vx), y.nonstd(vy))
        assert_close(torchlc.coeff(r, 0), val, **TOL)
        if f is torch.hypot:
            assert_close(torchlc.coeff(r, 1), tan, **TOL)
    # copysign by the field's sign of y: y = 0 + 2ε is positive; −0.0 counts as negative
    r = torch.copysign(x.nonstd(vx), y.nonstd(vy))
    assert torchlc.coeff(r, 0)[2] == 2.0
    r = torch.copysign(x.nonstd(vx), t(1.0, 1.0, -0.0))
    assert torchlc.coeff(r, 0)[2] == -2.0 and torchlc.coeff(r, 1)[2] == 1.0


def _check(f, *xs):
    vs = [torch.randn(x.shape, generator=g, dtype=f64) for x in xs]
    val, tan = jvp(f, tuple(xs), tuple(vs))
    r = f(*[x.nonstd(v) for x, v in zip(xs, vs)])
    val, tan = (val, tan) if isinstance(val, tuple) else ((val,), (tan,))
    r = r if isinstance(r, tuple) else (r,)
    for o, v0, t0 in zip(r, val, tan):
        if isinstance(o, torchlc.LCTensor):
            assert_close(torchlc.coeff(o, 0), v0, **TOL)
            assert_close(torchlc.coeff(o, 1), t0, **TOL)
        else:
            assert torch.equal(o, v0)


def test_logcumsumexp_addbmm():
    x = torch.randn(3, 5, generator=g, dtype=f64)
    _check(lambda z: torch.logcumsumexp(z, 1), x)
    _check(lambda z: torch.logcumsumexp(z, 0), x)
    # no underflow of early terms (torch's own jvp gives 0 at [0, 0] here): Σ_{j≤k} softmax_j·v_j
    x[0, 0] = -1000.0
    v = torch.randn(3, 5, generator=g, dtype=f64)
    L = torch.logcumsumexp(x, 1)
    w = torch.exp(x[:, None, :] - L[:, :, None]).tril()
    r = torch.logcumsumexp(x.nonstd(v), 1)
    assert_close(torchlc.coeff(r, 0), L, **TOL)
    assert_close(torchlc.coeff(r, 1), (w * v[:, None, :]).sum(-1), **TOL)
    b1, b2, m = (torch.randn(s, generator=g, dtype=f64) for s in ((2, 3, 4), (2, 4, 5), (3, 5)))
    _check(lambda a, b, c: torch.addbmm(c, a, b, beta=0.5, alpha=2.0), b1, b2, m)


def test_order_statistics():
    x = torch.randn(4, 7, generator=g, dtype=f64)
    _check(lambda z: torch.median(z), x)
    _check(lambda z: torch.median(z, 1), x)
    _check(lambda z: torch.kthvalue(z, 3, 0), x)
    _check(lambda z: torch.cummax(z, 1), x)
    _check(lambda z: torch.cummin(z, 0), x)
    y = x.clone()
    y[1, 3] = float("nan")
    _check(lambda z: torch.nanmedian(z, 1), y)
    _check(lambda z: torch.mode(z, 1), x)
    # repeated elements (equal in every coefficient): torch's choice, smallest mode, last index
    m = torch.tensor([[1.0, 2.0, 2.0, 3.0, 1.0, 2.0], [3.0, 1.0, 3.0, 1.0, 0.0, 5.0]], dtype=f64)
    v, i = torch.mode(m.nonstd(2 * m), 1)
    rv, ri = torch.mode(m, 1)
    assert torch.equal(i, ri) and torch.equal(torchlc.coeff(v, 1), 2 * rv)


def test_ties_are_broken_by_the_field_order():
    # equal standard parts: the ε terms decide (the one-sided limit f(x + t·v), t → 0⁺)
    x = t(1.0, 1.0, 1.0).nonstd(t(0.0, 2.0, -1.0))
    v, i = torch.cummax(x, 0)
    assert i.tolist() == [0, 1, 1] and torchlc.coeff(v, 1).tolist() == [0.0, 2.0, 2.0]
    v, i = torch.median(x, 0)
    assert int(i) == 0
    v, i = torch.mode(x, 0)  # all distinct in the field: the smallest
    assert int(i) == 2


def test_logcumsumexp_tangent_is_exact_where_torch_jvp_is_not():
    """PyTorch's own jvp of logcumsumexp loses ~1e-6 in float64 on its OpInfo samples; the LC ε¹
    plane matches the exact derivative y_i' = Σ_{j≤i} exp(x_j − y_i)·v_j to rounding."""
    from torch.testing._internal.common_methods_invocations import op_db

    op = next(o for o in op_db if o.name == "logcumsumexp")
    torch.manual_seed(0)
    for s in op.sample_inputs("cpu", torch.float64):
        x, d = s.input, s.args[0]
        if x.dim() == 0:
            continue
        v = torch.randn_like(x)
        y = torch.logcumsumexp(x.nonstd(v), d)
        xm, vm = x.movedim(d, -1), v.movedim(d, -1)
        ym = torch.logcumsumexp(x, d).movedim(d, -1)
        n = xm.shape[-1]
        w = torch.exp(xm.unsqueeze(-2) - ym.unsqueeze(-1)) * torch.tril(torch.ones(n, n, dtype=torch.bool))
        exact = (w * vm.unsqueeze(-2)).sum(-1).movedim(-1, d)
        torch.testing.assert_close(torchlc.coeff(y, 1), exact, rtol=1e-12, atol=1e-12)
