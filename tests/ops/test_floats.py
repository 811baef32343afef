"""frexp and nextafter on LC tensors (torchlc.ops.floats) against torch.func.jvp (float64)."""

import math

import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64


def test_frexp_matches_jvp_off_powers_of_two():
    x = torch.tensor([-3.7, -0.3, 0.7, 1.25, 5.0, 1e-3], dtype=f64)
    v = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0], dtype=f64)
    m, e = torch.frexp(x.nonstd(v))
    (pm, pe), (tm, _) = jvp(torch.frexp, (x,), (v,))
    assert torch.equal(e, pe)
    assert_close(torchlc.coeff(m, 0), pm, rtol=0, atol=0)
    assert_close(torchlc.coeff(m, 1), tm, rtol=0, atol=0)  # 2^-e scales exactly


def test_frexp_at_a_power_of_two_is_the_fields_binade():
    # 0.5 − ε < 0.5 lies in [¼, ½): e = −1, m = 2x = 1 − 2ε; 0.5 + ε stays at e = 0; −2 + ε has |x| < 2
    x = torch.tensor([0.5, 0.5, -2.0, 0.0, 0.0], dtype=f64).nonstd(torch.tensor([-1.0, 1.0, 1.0, 2.0, 0.0]))
    m, e = torch.frexp(x)
    assert e.tolist() == [-1, 0, 1, 0, 0]
    assert torchlc.coeff(m, 0).tolist() == [1.0, 0.5, -1.0, 0.0, 0.0]
    assert torchlc.coeff(m, 1).tolist() == [-2.0, 1.0, 0.5, 2.0, 0.0]  # m = x·2^−e; at st x = 0: m = x
    for xi, ei, mi in zip(x.unbind(), e.tolist(), m.unbind()):  # x = m·2^e exactly
        assert_close(torchlc.coeffs(mi) * 2.0**ei, torchlc.coeffs(xi))


def test_frexp_of_an_infinite_element_is_nan():
    x = torchlc.from_terms({-1: torch.tensor([1.0, 0.0], dtype=f64), 0: torch.tensor([0.0, 3.0], dtype=f64)})
    m, e = torch.frexp(x)
    assert math.isnan(torchlc.coeff(m, 0)[0]) and e.tolist() == [0, 2]


def test_nextafter_steps_the_standard_part_and_keeps_the_terms():
    x = torch.tensor([1.0, -2.0, 0.0], dtype=f64)
    y = torch.tensor([2.0, -3.0, -1.0], dtype=f64)
    vx, vy = torch.tensor([0.5, 1.0, -2.0], dtype=f64), torch.tensor([1.0, 1.0, 1.0], dtype=f64)
    r = torch.nextafter(x.nonstd(vx), y.nonstd(vy))
    # one ulp is a jump smaller than any real step: nextafter(x, y) moves with x alone (torch.func.jvp
    # agrees where it has nextafter's formula, torch >= 2.13)
    assert torch.equal(torchlc.coeff(r, 0), torch.nextafter(x, y)) and torch.equal(torchlc.coeff(r, 1), vx)
    try:
        p, t = jvp(torch.nextafter, (x, y), (vx, vy))
    except NotImplementedError:  # torch 2.11: no forward AD formula
        pass
    else:
        assert torch.equal(torchlc.coeff(r, 0), p) and torch.equal(torchlc.coeff(r, 1), t)
    # a plain x towards an LC y: a real result; an x without an ε⁰ plane gains one
    assert torch.equal(torchlc.coeff(torch.nextafter(x, y.nonstd(vy)), 0), torch.nextafter(x, y))
    e = torch.nextafter(torchlc.eps(dtype=f64), torch.tensor(1.0, dtype=f64))
    assert torchlc.coeff(e, 0).item() == torch.nextafter(torch.tensor(0.0, dtype=f64), torch.tensor(1.0, dtype=f64))
    assert torchlc.coeff(e, 1).item() == 1.0
