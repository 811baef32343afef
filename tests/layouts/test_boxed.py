"""NaN-boxed monomials: one 64-bit word per element, a float32 coefficient and an index into the static
support. Encode → decode must give back the same planes exactly (bit for bit for every finite and
infinite coefficient and for −0.0 reals; NaN stays NaN on the same term)."""

import math
from fractions import Fraction as F

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchlc
from torchlc.layouts import boxed

SPECIAL = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-45, -3.4028234663852886e38,
           1.1754943508222875e-38, 1.0, -1.0]

coef = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL),
)
exponent = st.builds(F, st.integers(-40, 40), st.integers(1, 12))


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@st.composite
def monomial_data(draw):
    """(support, planes (T, n) float32 with at most one nonzero term per element, per-element (t, c))."""
    support = tuple(sorted(set(draw(st.lists(exponent, min_size=1, max_size=6)))))
    if draw(st.booleans()) and F(0) not in support:
        support = tuple(sorted(support + (F(0),)))
    n = draw(st.integers(1, 12))
    planes = torch.zeros((len(support), n))
    picks = []
    for i in range(n):
        t = draw(st.integers(0, len(support) - 1))
        c = draw(coef)
        planes[t, i] = c
        picks.append((t, c))
    return support, planes, picks


def check_roundtrip(support, planes, picks, decoded):
    assert decoded.shape == planes.shape and decoded.dtype == planes.dtype
    for i, (t, c) in enumerate(picks):
        col = decoded[:, i]
        if math.isnan(c):
            # NaN stays NaN on its own term (q ≠ 0 keeps its bits), nothing else appears
            assert torch.isnan(col).sum() == 1
            assert torch.isnan(col[t]) or support[t] == 0
            if support[t] != 0:
                assert bits(col[t:t + 1]).item() == bits(planes[t:t + 1, i]).item()
            assert bool((col[~torch.isnan(col)] == 0).all())
        elif c == 0:
            # a zero element decodes to zeros (the sign of a −0.0 real: see test_negative_zero_real)
            assert bool((col == 0).all())
        else:
            assert bits(col).tolist() == bits(planes[:, i]).tolist()


@settings(max_examples=40, deadline=None)
@given(monomial_data())
def test_encode_decode_roundtrip(data):
    support, planes, picks = data
    words = boxed.encode(planes, support)
    assert words.dtype == torch.float64 and words.shape == planes.shape[1:]
    check_roundtrip(support, planes, picks, boxed.decode(words, support, torch.float32))


@settings(max_examples=20, deadline=None)
@given(monomial_data())
def test_from_terms_roundtrip_through_public_api(data):
    support, planes, picks = data
    x = torchlc.from_terms({q: planes[k] for k, q in enumerate(support)}, order=max(support[-1], 1))
    if len(support) >= 2:
        assert torchlc.layout(x) == "boxed"
        assert torchlc.layouts.bytes_per_element(x) == 8
    assert torchlc.support(x) == support
    check_roundtrip(support, planes, picks, torchlc.coeffs(x))
    # data movement on the words keeps every coefficient
    y = torch.cat([x.clone(), x.flip(0)])[: planes.shape[1]]
    assert torchlc.layout(y) == torchlc.layout(x)
    check_roundtrip(support, planes, picks, torchlc.coeffs(y))


def test_specific_words():
    support = (F(-1), F(0), F(1, 3))
    planes = torch.tensor([[-2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                           [0.0, 3.0, 0.0, float("inf"), float("nan"), 0.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0, 1.5]])
    w = boxed.encode(planes, support).view(torch.int64)
    # reals (exponent 0) are their own float64 bits; a real NaN is canonical
    assert w[1].item() == torch.tensor(3.0, dtype=torch.float64).view(torch.int64).item()
    assert w[2].item() == 0
    assert w[3].item() == torch.tensor(float("inf"), dtype=torch.float64).view(torch.int64).item()
    assert w[4].item() == 0x7FF8000000000000
    # a boxed term: quiet NaN | (index + 1) << 32 | float32 bits
    assert w[0].item() == boxed.QNAN | (1 << 32) | torch.tensor(-2.0).view(torch.int32).item() & 0xFFFFFFFF
    assert w[5].item() == boxed.QNAN | (3 << 32) | torch.tensor(1.5).view(torch.int32).item()
    d = boxed.decode(w.view(torch.float64), support, torch.float32)
    assert torch.equal(d[:, [0, 1, 3, 5]], planes[:, [0, 1, 3, 5]])
    assert torch.equal(d[:, 2], torch.zeros(3))
    assert torch.isnan(d[1, 4]) and d[0, 4] == 0 and d[2, 4] == 0


def test_negative_zero_real_when_zero_is_first_exponent():
    support = (F(0), F(1, 2))
    planes = torch.tensor([[-0.0, 2.0], [0.0, 0.0]])
    d = boxed.decode(boxed.encode(planes, support), support, torch.float32)
    assert bits(d[0]).tolist() == bits(planes[0]).tolist()


def test_negative_zero_real_when_support_starts_below_zero():
    support = (F(-1), F(0))
    planes = torch.tensor([[0.0, 2.0], [-0.0, 0.0]])
    d = boxed.decode(boxed.encode(planes, support), support, torch.float32)
    assert bits(d[1, :1]).item() == bits(torch.tensor([-0.0])).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_coefficients_box_losslessly(dtype):
    vals = torch.tensor([1.5, -2.0, 3.0e-3, 65504.0 if dtype == torch.float16 else 1e30]).to(dtype)
    x = torchlc.from_terms({F(1, 2): vals * torch.tensor([1, 0, 1, 0]).to(dtype),
                            -2: vals * torch.tensor([0, 1, 0, 1]).to(dtype)}, order=1, dtype=dtype)
    assert torchlc.layout(x) == "boxed" and x.dtype == dtype
    c = torchlc.coeffs(x)
    assert c.dtype == dtype
    assert torch.equal(c[0], vals * torch.tensor([0, 1, 0, 1]).to(dtype))
    assert torch.equal(c[1], vals * torch.tensor([1, 0, 1, 0]).to(dtype))


def test_can_box_policy():
    assert boxed.can_box(torch.float32, (F(0), F(1)))
    assert boxed.can_box(torch.bfloat16, (F(0), F(1)))
    assert not boxed.can_box(torch.float64, (F(0), F(1)))
    assert not boxed.can_box(torch.float32, range(boxed.MAX_TERMS + 1))  # only its length matters


def test_large_support_index_roundtrips():
    # a tag far from 1 exercises the high payload bits
    support = tuple(F(k, 997) for k in range(5000))
    planes = torch.zeros((5000, 3))
    planes[4999, 0] = 7.25
    planes[2500, 1] = -1.0
    planes[0, 2] = float("inf")
    d = boxed.decode(boxed.encode(planes, support), support, torch.float32)
    assert torch.equal(d, planes)


def test_boxed_view_ops_act_on_words():
    x = torchlc.from_terms({F(1, 3): torch.tensor([[1.5, 0.0], [0.0, 0.0]]),
                            -1: torch.tensor([[0.0, -2.0], [0.0, 4.0]]),
                            0: torch.tensor([[0.0, 0.0], [3.0, 0.0]])})
    assert torchlc.layout(x) == "boxed"
    dense = torchlc.coeffs(x)
    for f in (lambda t: t.t(), lambda t: t.reshape(4), lambda t: t[1], lambda t: t[:, 1:],
              lambda t: t.flip(0), lambda t: t.unsqueeze(0).expand(3, 2, 2), lambda t: t.permute(1, 0),
              lambda t: t.roll(1, 0), lambda t: t.repeat(2, 1), lambda t: t.gather(1, torch.tensor([[1, 0], [0, 0]])),
              lambda t: t.index_select(0, torch.tensor([1, 1])), lambda t: t.diagonal(), lambda t: t.contiguous()):
        y = f(x)
        assert torchlc.layout(y) == "boxed"
        ref = torch.stack([f(p) for p in dense])
        assert torch.equal(torchlc.coeffs(y), ref)
