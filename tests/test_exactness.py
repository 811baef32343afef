"""Exact means exact: each case the exactness issue found, as a user would meet it.

Every one of these returned a wrong number without an error before; each now gives the exact answer
or a clear error that says what to do.
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import pytest
import torch

import torchlc

f64 = torch.float64


def _truncated_tie():
    x = torch.tensor(1.0).nonstd()
    return x * x, 2 * x - 1  # a − b = ε², dropped at order 1


# -- readers honour exact_through ---------------------------------------------------------------------
def test_standard_part_refuses_a_value_hidden_by_truncation():
    x = torch.tensor(1.0).nonstd()
    with pytest.raises(torchlc.TruncationError, match=r"order=\d"):
        torchlc.standard_part((x * x - 2 * x + 1) / torchlc.eps(2))   # the value is 1
    with pytest.raises(torchlc.TruncationError, match=r"order=\d"):
        torchlc.standard_part((x * x - 2 * x + 1) / torchlc.eps(3))   # the value is +inf
    x3 = torch.tensor(1.0).nonstd(order=3)
    assert torchlc.standard_part((x3 * x3 - 2 * x3 + 1) / torchlc.eps(2)).item() == 1.0
    assert torchlc.standard_part((x3 * x3 - 2 * x3 + 1) / torchlc.eps(3)).item() == math.inf
    # the ε⁰ coefficient is exact here, and decides
    assert torchlc.standard_part((x * x - 2 * x + 1) / torchlc.eps() + 1).item() == 1.0


def test_leading_refuses_an_unknown_lead():
    x = torch.tensor(1.0).nonstd()
    with pytest.raises(torchlc.TruncationError):
        torchlc.leading(x * x - 2 * x + 1)
    assert torchlc.coeff(torchlc.leading(torch.tensor([0.0, 2.0]).nonstd()), 1).tolist() == [1.0, 0.0]


def test_repr_shows_only_exact_terms():
    y = (torch.tensor(1.0).nonstd() ** 2) / torchlc.eps()   # ε⁻¹ + 2 + (ε, inexact)
    r = repr(y)
    assert "o(ε⁰)" in r and "exact_through=0" in r and "2.0ε" not in r.replace("2.0 ", "")


@pytest.mark.parametrize("call", [lambda x: x.item(), int, float, complex, lambda x: f"{x:.2f}",
                                  lambda x: torch.ops.aten._local_scalar_dense(x)])
def test_scalar_conversions_say_what_to_do(call):
    with pytest.raises(TypeError, match="standard_part"):
        call(torch.tensor(1.0).nonstd())


# -- inputs -------------------------------------------------------------------------------------------
def test_from_terms_dtypes_promote_as_torch():
    assert torchlc.from_terms({0: torch.tensor(1e-300, dtype=f64)}).dtype == f64
    y = torchlc.from_terms({0: torch.tensor(1e-300, dtype=f64), 1: torch.tensor(1.0, dtype=f64)})
    assert (y > 0).item() and (torchlc.from_terms({1: torch.tensor(1.0, dtype=f64)})
                               < torch.tensor(1e-300, dtype=f64)).item()
    mixed = torchlc.from_terms({0: torch.tensor([1.0], dtype=f64), 1: torch.tensor([2.0])})
    assert mixed.dtype == f64
    assert torchlc.from_terms({0: 1.0, 1: 2}).dtype == torch.get_default_dtype()


def test_from_terms_refuses_an_exponent_given_twice():
    with pytest.raises(ValueError, match="given twice"):
        torchlc.from_terms({0: 1.0, "0": 2.0})
    with pytest.raises(ValueError, match="given twice"):
        torchlc.from_terms({F(1, 2): 1.0, "1/2": 2.0})


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_non_float_coefficient_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match=str(dtype)):
        torchlc.eps(dtype=dtype)
    with pytest.raises(TypeError, match=str(dtype)):
        torchlc.from_terms({0: 1.0}, dtype=dtype)


def test_complex_input_keeps_its_imaginary_part_or_is_refused():
    # nonstd of a complex point: complex coefficients, nothing dropped (semantics §7)
    z = torch.tensor([1 + 2j]).nonstd()
    assert z.dtype == torch.complex64
    assert torchlc.coeff(z, 0).tolist() == [1 + 2j] and torchlc.coeff(z, 1).tolist() == [1 + 0j]
    with pytest.raises(TypeError, match="complex coefficients"):
        torch.sin(z)  # decisions and analytic functions name the op and the dtype
    # from_terms, eps and the derivative API stay real: a TypeError naming the dtype
    with pytest.raises(TypeError, match="complex"):
        torchlc.from_terms({0: torch.tensor([1 + 2j])})
    with pytest.raises(TypeError, match="complex"):
        torchlc.ngrad(torch.sin, torch.tensor([1 + 2j]))


def test_integer_inputs_become_floats():
    assert torch.tensor([1, 2]).nonstd().dtype == torch.get_default_dtype()


def test_side_order_and_argument_checks():
    t = torch.tensor(1.0)
    for call in (lambda: torchlc.njvp(torch.floor, (t,), (t,), side="backwards"),
                 lambda: torchlc.ngrad(torch.floor, t, side="left"),
                 lambda: torchlc.njacfwd(torch.floor, side="up")):
        with pytest.raises(ValueError, match="side must be"):
            call()
    with pytest.raises(TypeError, match="tuple"):
        torchlc.njvp(torch.floor, t, t)
    with pytest.raises(ValueError, match="-2"):
        torchlc.ngrad(torch.sin, t, order=-2)
    with pytest.raises(ValueError, match="-2"):
        t.nonstd(order=-2)
    with pytest.raises(TypeError, match="plain tensor"):
        torchlc.ngrad(torch.sin, t.nonstd())
    for bad in (lambda x: None, lambda x: 3, lambda x: "s"):
        with pytest.raises(TypeError, match="must return a tensor or a pytree"):
            torchlc.ngrad(bad, t)


def test_ngrad_and_njvp_take_pytree_outputs():
    t = torch.tensor(0.0)
    d = torchlc.ngrad(lambda x: {"step": (x > 0).float(), "sq": (x * x, x)}, t)
    assert torchlc.coeff(d["step"], -1).item() == 1.0
    assert torchlc.coeff(d["sq"][1], 0).item() == 1.0
    out, d = torchlc.njvp(lambda x, y: (x * y, x + y), (torch.tensor(2.0), torch.tensor(3.0)),
                          (torch.tensor(1.0), torch.tensor(0.0)))
    assert out[0].item() == 6.0 and torchlc.coeff(d[0], 0).item() == 3.0


# -- exponents ----------------------------------------------------------------------------------------
def test_pow_broadcasts_like_torch():
    assert (torchlc.eps() ** torch.tensor([0.5, 0.5, 0.5])).shape == (3,)
    assert (torch.tensor(2.0).nonstd() ** torch.tensor([2.0, 2.0])).shape == (2,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, f64])
def test_float_exponents_mean_the_same_rational_in_every_dtype(dtype):
    y = torchlc.eps(dtype=f64) ** torch.tensor([0.5, 0.1], dtype=dtype)
    assert torchlc.support(y) == (F(1, 10), F(1, 2))
    assert torchlc.coeff(y, F(1, 10)).tolist() == [0.0, 1.0]


def test_fraction_exponents_stay_exact():
    assert torchlc.support(torchlc.eps() ** F(1, 5000)) == (F(1, 5000),)
    y = torch.tensor([-8.0], dtype=f64).nonstd() ** F(1, 3)      # odd root of a negative number
    assert torchlc.coeff(y, 0).item() == pytest.approx(-2.0) and torchlc.coeff(y, 1).item() == pytest.approx(1 / 12)


def test_analytic_series_of_any_length():
    y = torch.exp(torchlc.eps(F(1, 30)))                # 31 terms: 1/30! and beyond, no overflow
    assert torchlc.coeff(y, 1).item() == pytest.approx(1 / math.factorial(30), rel=1e-5)
    z = torch.sin(torch.tensor(1.0, dtype=f64).nonstd(order=21))
    assert torchlc.coeff(z, 21).item() == pytest.approx(math.cos(1.0) / math.factorial(21), rel=1e-12)


def test_term_budget_refuses_at_once():
    with pytest.raises(torchlc.TermBudgetError, match="1000000001 terms"):
        1 / (1 + torchlc.eps(F(1, 10**9)))


# -- semantic bugs --------------------------------------------------------------------------------------
def test_heaviside_of_a_negative_infinite_number_is_zero():
    x = -1 / torchlc.eps() + 1
    assert torchlc.coeff(torch.heaviside(x, torch.tensor(1.0)), 0).item() == 0.0
    assert torchlc.coeff(torch.heaviside(1 / torchlc.eps(), torch.tensor(0.5)), 0).item() == 1.0


def test_argmax_with_nan_follows_torch():
    x = torch.tensor([1.0, float("nan")])
    assert x.nonstd().argmax().item() == x.argmax().item() == 1


def test_truncated_ties_are_refused_by_every_index_op():
    a, b = _truncated_tie()
    for call in (lambda: torch.stack([b, a]).max(0).indices, lambda: torch.stack([b, a]).min(0).indices,
                 lambda: torch.argsort(torch.stack([a, b])), lambda: torch.sort(torch.stack([a, b])).indices,
                 lambda: torch.topk(torch.stack([b, a]), 1).indices, lambda: torch.equal(a, b)):
        with pytest.raises(torchlc.TruncationError, match="order="):
            call()


def test_sqrt_of_a_truncated_zero_is_not_exact():
    # ε·ε at order 1 is 0 through ε¹, but √(ε²) = ε: the ε¹ coefficient of the root is not known
    y = torch.sqrt(torchlc.eps() * torchlc.eps())
    with pytest.raises(torchlc.TruncationError):
        torchlc.coeff(y, 1)
    assert torchlc.coeff(torch.sqrt(torchlc.eps(order=2) * torchlc.eps(order=2)), 1).item() == 1.0


# -- checkpoints ----------------------------------------------------------------------------------------
def test_torch_load_weights_only_loads_lc_tensors_and_state_dicts(tmp_path):
    y = torch.sin(torch.tensor([1.0, 2.0], dtype=f64).nonstd(order=2))
    m = torch.nn.Module()
    m.register_buffer("lc", y)
    torch.save({"t": y, "sd": m.state_dict()}, tmp_path / "ck.pt")
    back = torch.load(tmp_path / "ck.pt")  # weights_only=True is torch's default
    for t in (back["t"], back["sd"]["lc"]):
        assert torchlc.support(t) == torchlc.support(y) and torch.equal(torchlc.coeffs(t), torchlc.coeffs(y))
    old = torch.load(__import__("pathlib").Path(__file__).parent / "data" / "lctensor_0.1.0.pt", weights_only=True)
    assert torchlc.support(old["tensor"]) == (F(0), F(1))


@pytest.mark.parametrize("args, why", [
    ((torch.tensor([[2.0], [-1.0]]), (F(1), F(0)), F(1), None), "not sorted"),
    ((torch.tensor([[2.0], [-1.0]]), (F(0), F(0)), F(1), None), "not sorted"),
    ((torch.tensor([[2.0], [-1.0]]), (F(0),), F(1), None), "2 coefficient planes for 1"),
    ((torch.tensor([[2.0], [-1.0]]), (0, 1), F(1), None), "tuple of fractions"),
    ((torch.tensor([[2.0], [-1.0]]), (F(0), F(1)), F(1), F(2)), "above its order"),
    ((torch.tensor([[2.0], [-1.0]]), (F(0), F(3)), F(1), None), "above its order"),
    ((torch.tensor([[2], [1]]), (F(0), F(1)), F(1), None), "floating"),
])
def test_unpickling_refuses_inconsistent_metadata(args, why):
    from torchlc.ops import _rebuild  # the 0.1.0 name of the rebuild function

    with pytest.raises(ValueError, match=why):
        _rebuild(*args)


# -- zero-size inputs -------------------------------------------------------------------------------------
def test_an_empty_batch_goes_through_linear_layers():
    x = torch.zeros(0, 3).nonstd()
    lin = torch.nn.Linear(3, 4)
    assert lin(x).shape == lin(torch.zeros(0, 3)).shape == (0, 4)
    assert (x @ torch.zeros(3, 2).nonstd()).shape == (0, 2)
    assert torch.linalg.multi_dot([x, torch.zeros(3, 2)]).shape == (0, 2)
    assert torch.zeros(2, 0).nonstd().amax(0).shape == (0,)
    u, s, vh = torch.linalg.svd(torch.zeros(0, 3).nonstd(), full_matrices=False)
    assert (u.shape, s.shape, vh.shape) == ((0, 0), (0,), (0, 3))
    with pytest.raises(IndexError, match="non-zero size"):
        torch.zeros(0, 3).nonstd().argmax(0)


def test_bernoulli_draws_the_plain_numbers_under_the_same_seed():
    for dtype in (torch.float32, f64):
        p = torch.rand(3, 7, dtype=dtype)
        for args in ((), (0.3,)):
            torch.manual_seed(0)
            a = torch.bernoulli(p, *args)
            torch.manual_seed(0)
            b = torch.bernoulli(p.nonstd(), *args)
            assert torch.equal(a, torchlc.coeff(b, 0))
