"""CSR storage: only the nonzero terms, rows sorted by exponent, exponents exact (int64 numerators over
one denominator). Encode → decode is exact; ops on CSR tensors give the same values as on planes
storage (a CSR result's support is the set of exponents it stores, so it may be narrower than the
planes result's static support: the tests compare coefficients exponent by exponent)."""

from fractions import Fraction as F

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchlc
from torchlc.layouts import CSR_MIN_TERMS, bytes_per_element, csr, force

f64 = torch.float64


@st.composite
def sparse_planes(draw):
    T = draw(st.integers(1, 6))
    shape = draw(st.sampled_from([(1,), (5,), (2, 3), (3, 1, 2)]))
    vals = draw(st.lists(st.one_of(st.just(0.0), st.floats(width=32, allow_nan=False)),
                         min_size=T * int(torch.Size(shape).numel()),
                         max_size=T * int(torch.Size(shape).numel())))
    return torch.tensor(vals, dtype=torch.float32).reshape(T, *shape)


SUPPORTS = [(F(0),), (F(-1), F(0), F(1, 3)), (F(0), F(1, 2), F(1), F(3, 2)), (F(-2, 3), F(1, 4), F(5, 6)),
            tuple(F(k, 7) for k in range(6))]


@settings(max_examples=40, deadline=None)
@given(sparse_planes(), st.sampled_from(SUPPORTS))
def test_encode_decode_roundtrip(p, sup):
    p = p[: len(sup)]
    sup = sup[: p.shape[0]]
    row_ptr, num, vals, meta = csr.encode(p, sup)
    den, lo, hi = meta.tolist()
    n = p[0].numel()
    assert row_ptr.shape == (n + 1,) and row_ptr.dtype == torch.int64
    assert num.dtype == torch.int64 and all(lo <= k <= hi for k in num.tolist())
    assert vals.numel() == int((p != 0).sum())          # only nonzeros are stored
    # each row lists its exponents, exactly (numerator / den is in the support), in increasing order
    for i in range(n):
        r = num[row_ptr[i]:row_ptr[i + 1]].tolist()
        assert r == sorted(set(r))
        assert all(F(k, den) in sup for k in r)
    d = csr.decode((row_ptr, num, vals, meta), sup, tuple(p.shape[1:]), p.dtype)
    assert torch.equal(d, p)


def test_nan_and_inf_coefficients_roundtrip():
    p = torch.tensor([[float("nan"), 0.0, 1.0], [0.0, float("-inf"), 0.0]], dtype=f64)
    inner = csr.encode(p, (F(0), F(1, 3)))
    d = csr.decode(inner, (F(0), F(1, 3)), (3,), f64)
    assert torch.isnan(d[0, 0]) and d[1, 0] == 0
    assert torch.equal(d[:, 1:], p[:, 1:])


def same_values(y, r):
    """Equal coefficients at every exponent of either support (absent exponents are 0)."""
    ty, tr = torchlc.terms(y), torchlc.terms(r)
    zero = torch.zeros(tuple(y.shape), dtype=y.dtype)
    return all(torch.equal(ty.get(q, zero), tr.get(q, zero)) for q in set(ty) | set(tr))


def test_forced_csr_public_roundtrip_and_ops():
    a = torch.tensor([[1.0, 0.0, -2.0], [0.5, 3.0, 0.0]], dtype=f64)
    v = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0]], dtype=f64)
    with force("csr"):
        x = a.nonstd(v)
        ys = [x, x * x, x + 1, x / 4, torch.abs(x), torch.floor(x), x.t(), x[1], x.sum(0),
              torch.cat([x, x]), torch.where(a > 0, x, -x), torch.sort(x, 1).values, x.clone()]
    with force("planes"):
        x = a.nonstd(v)
        refs = [x, x * x, x + 1, x / 4, torch.abs(x), torch.floor(x), x.t(), x[1], x.sum(0),
                torch.cat([x, x]), torch.where(a > 0, x, -x), torch.sort(x, 1).values, x.clone()]
    for y, r in zip(ys, refs):
        assert torchlc.layout(y) == "csr"
        assert set(torchlc.support(y)) <= set(torchlc.support(r))
        assert same_values(y, r)
        assert torchlc.exact_through(y) == torchlc.exact_through(r)
    # only the nonzero coefficients of x are stored
    row_ptr, num, vals, meta = ys[0]._inner
    assert vals.numel() == int((a != 0).sum() + (v != 0).sum())


def wide(n=CSR_MIN_TERMS + 4, dtype=torch.float32):
    """Element i holds (i+1)·ε^{i/5} + ε^{(i+1)/5}: ragged, wide support, not monomial."""
    qs = [F(k, 5) for k in range(n + 1)]
    terms = {q: torch.zeros(n, dtype=dtype) for q in qs}
    for i in range(n):
        terms[qs[i]][i] = i + 1.0
        terms[qs[i + 1]][i] = 1.0
    return torchlc.from_terms(terms, order=F(n + 1, 5), dtype=dtype), terms


def test_wide_support_is_auto_csr_and_roundtrips():
    x, terms = wide()
    assert torchlc.layout(x) == "csr"
    dense = torch.stack([terms[q] for q in sorted(terms)])
    assert torch.equal(torchlc.coeffs(x), dense)
    assert torchlc.support(x) == tuple(sorted(terms))
    # 2 nonzeros per element: row_ptr int64 + 2·(int64 numerator + float32)
    assert bytes_per_element(x) == pytest.approx(8 * (x.numel() + 1) / x.numel() + 2 * 12, abs=0)


def test_wide_csr_arithmetic_matches_planes():
    x, _ = wide()
    with force("planes"):
        xp, _ = wide()
    for f in (lambda t: t * 3, lambda t: t + t, lambda t: -t, lambda t: t[3:9], lambda t: t.flip(0),
              lambda t: torch.where(t > 1, t, t * 2), lambda t: torch.sign(t), lambda t: t.sum()):
        y, r = f(x), f(xp)
        assert set(torchlc.support(y)) <= set(torchlc.support(r))
        assert same_values(y, r)


def test_leading_and_standard_part_on_csr():
    x, _ = wide()
    lead = torchlc.leading(x)
    n = x.numel()
    assert torch.equal(torchlc.coeff(lead, 0), torch.tensor([1.0] + [0.0] * (n - 1)))
    assert torch.equal(torchlc.standard_part(x), torch.tensor([1.0] + [0.0] * (n - 1)))
    assert (x > 0).all()
