"""LCTensors with complex coefficients: the ring operations, real/imag/conj/abs/angle, the conversions
between real and complex, and the refusal of every decision (TypeError naming the op and dtype)."""

import math

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64, c128 = torch.float64, torch.complex128
TOL = dict(rtol=1e-10, atol=1e-10)


def _rand(*shape, dtype=c128, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _check(f, xs, vs):
    ys = f(*(x.nonstd(v) for x, v in zip(xs, vs)))
    p, t = jvp(f, tuple(xs), tuple(vs))
    for y, p_, t_ in zip(*(o if isinstance(o, tuple) else (o,) for o in (ys, p, t))):
        assert y.dtype == p_.dtype
        assert_close(torchlc.coeff(y, 0), p_, **TOL)
        assert_close(torchlc.coeff(y, 1), t_, **TOL)


def test_nonstd_of_a_complex_point_keeps_the_imaginary_part():
    z = torch.tensor([1 + 2j]).nonstd()
    assert z.dtype == torch.complex64
    assert torchlc.coeff(z, 0).tolist() == [1 + 2j] and torchlc.coeff(z, 1).tolist() == [1 + 0j]
    w = torch.tensor([1.0], dtype=f64).nonstd(torch.tensor([2j], dtype=c128))  # a complex direction
    assert w.dtype == c128 and torchlc.coeff(w, 1).tolist() == [2j]
    assert "(1.0+2.0j)" in repr(z)


RING = {
    "add": lambda a, b: a + b,
    "sub_scalar": lambda a, b: a - (2 - 1j) * b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "rdiv_plain": lambda a, b: a / torch.tensor([1.5 - 0.5j, 2j, -1.0], dtype=c128),
    "neg_reciprocal": lambda a, b: -(1 / b),
    "matmul": lambda a, b: a.reshape(3, 1) @ b.reshape(1, 3),
    "sum_mean_prod": lambda a, b: a.sum() + b.mean() + (a * b).prod(),
    "cumsum": lambda a, b: torch.cumsum(a * b, 0),
    "real_imag": lambda a, b: a.real * b.imag,
    "conj": lambda a, b: torch.conj(a) * b,
    "abs_angle": lambda a, b: a.abs() + b.angle(),
    "view_as_real": lambda a, b: torch.view_as_real(a * b),
}


@pytest.mark.parametrize("name", sorted(RING))
def test_complex_ring_and_parts_match_jvp(name):
    a, b = _rand(3, seed=1), _rand(3, seed=2) + 2
    va, vb = _rand(3, seed=3), _rand(3, seed=4)
    _check(RING[name], (a, b), (va, vb))


def test_real_to_complex_conversions_match_jvp():
    x, y = torch.rand(4, dtype=f64) + 0.5, torch.randn(4, dtype=f64)
    vx, vy = torch.randn(4, dtype=f64), torch.randn(4, dtype=f64)
    _check(torch.complex, (x, y), (vx, vy))
    _check(torch.polar, (x, y), (vx, vy))
    _check(lambda a: a.to(c128) * 1j, (x,), (vx,))
    _check(lambda a: torch.view_as_complex(torch.stack([a, 2 * a], -1)), (x,), (vx,))


def test_abs_at_zero_is_the_fields_value():
    # |0 + vε| = |v|ε: the one-sided value of the kink (jvp gives 0 there)
    z = torch.zeros(2, dtype=c128).nonstd(torch.tensor([3 + 4j, -1j], dtype=c128), order=2)
    r = z.abs()
    assert r.dtype == f64
    assert_close(torchlc.coeff(r, 1), torch.tensor([5.0, 1.0], dtype=f64), **TOL)


def test_angle_of_a_real_number_is_decided_in_the_field():
    x = torch.tensor([0.0, 0.0, -1.0, 2.0, math.nan], dtype=f64).nonstd(torch.tensor([-1.0, 1.0, 1.0, 1.0, 1.0]))
    a = torch.angle(x)
    assert torchlc.coeff(a, 0)[:4].tolist() == [math.pi, 0.0, math.pi, 0.0]  # angle(−ε) = π
    assert math.isnan(torchlc.coeff(a, 0)[4]) and torchlc.coeff(a, 1)[:4].abs().sum() == 0


DECISIONS = {
    "lt": lambda z: torch.lt(z, 0),
    "eq": lambda z: torch.eq(z, z),
    "sign": torch.sgn,
    "sort": lambda z: torch.sort(z),
    "amax": lambda z: torch.amax(z),
    "floor_of_real_view_is_fine_but_exp_is_not": torch.exp,
    "sin": torch.sin,
    "sqrt": torch.sqrt,
    "softmax": lambda z: torch.softmax(z, 0),
}


@pytest.mark.parametrize("name", sorted(DECISIONS))
def test_decisions_and_analytic_functions_refuse_complex_naming_the_op(name):
    z = _rand(3).nonstd()
    with pytest.raises(TypeError, match=r"torchlc: aten::\w+.*complex coefficients \(torch.complex128\)"):
        DECISIONS[name](z)


def test_imaginary_parts_are_never_dropped_silently():
    z = _rand(3).nonstd()
    with pytest.raises(TypeError, match="imaginary"):
        z.to(f64)
    with pytest.raises(TypeError, match="imaginary"):
        torch.zeros(3, dtype=f64).nonstd().copy_(z)
    w = torch.zeros(3, dtype=c128).nonstd()
    w.copy_(z)  # complex into complex is a copy
    assert_close(torchlc.coeff(w, 0), torchlc.coeff(z, 0))
    r = z.real  # the explicit way
    assert r.dtype == f64 and (r > -100).all()


def test_complex_lc_round_trips_through_save_and_load(tmp_path):
    z = _rand(2, 3).nonstd(_rand(2, 3, seed=5))
    torch.save(z, tmp_path / "z.pt")
    back = torch.load(tmp_path / "z.pt")
    assert back.dtype == c128 and torchlc.support(back) == torchlc.support(z)
    assert_close(torchlc.coeffs(back), torchlc.coeffs(z))


def test_a_complex_rule_registers_once_and_safe_kinds_pass_through():
    from torchlc import _dispatch

    with pytest.raises(_dispatch.RegistrationError, match="already has a complex rule"):
        _dispatch.implements_complex([torch.ops.aten.add.Tensor])(lambda *a: None)
    assert _dispatch.COMPLEX_KINDS == {"per_plane", "structural", "factory", "decomposition"}
    z = _rand(2, 3).nonstd()
    assert torch.flip(torch.cat([z, z]).t(), [0]).shape == (3, 4)  # structural rules run unchanged
