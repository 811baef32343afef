"""Reductions: termwise sums, Cauchy-product trees, and the field's order for max/min/arg/sort/topk
(ties follow torch: first index, stable sorts). Dyadic data: exact comparisons; non-dyadic
products against torch.func.jvp."""

from fractions import Fraction as F

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-13, atol=1e-13)


def planes(y):
    return {q: c.tolist() for q, c in torchlc.terms(y).items()}


A = torch.tensor([[3.0, 1.0, 3.0], [2.0, 2.0, -1.0]], dtype=f64)
V = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]], dtype=f64)
X = A.nonstd(V)


def test_sum_mean():
    assert planes(X.sum()) == {F(0): 10.0, F(1): 3.0}
    assert planes(X.sum(0)) == {F(0): [5.0, 3.0, 2.0], F(1): [1.0, 0.0, 2.0]}
    assert planes(X.sum(-1, keepdim=True)) == {F(0): [[7.0], [3.0]], F(1): [[1.0], [2.0]]}
    assert planes(X.sum((0, 1))) == planes(X.sum())
    assert planes(torch.sum(X, dim=1)) == {F(0): [7.0, 3.0], F(1): [1.0, 2.0]}
    m = X.mean(1)
    assert torch.equal(torchlc.coeff(m, 0), A.mean(1))
    assert torch.equal(torchlc.coeff(m, 1), V.mean(1))
    assert torch.equal(torchlc.coeff(X.mean(), 0), A.mean())
    assert torchlc.exact_through(X.sum()) == 1


def test_sum_with_dtype_upcasts_coefficients():
    x = torch.tensor([0.1, 0.2, 0.3]).nonstd()
    y = x.sum(dtype=f64)
    assert y.dtype == f64
    assert torch.equal(torchlc.coeff(y, 0), torch.tensor([0.1, 0.2, 0.3]).sum(dtype=f64))


def test_prod_matches_hand_and_jvp():
    # (3)(1+ε)(3)(2+ε)(2−ε)(−1+2ε): st −36, ε-coefficient −36·(1 + ½ − ½ − 2) = 36
    assert planes(X.prod()) == {F(0): -36.0, F(1): 36.0}
    assert planes(X.prod(1)) == {F(0): [9.0, -4.0], F(1): [9.0, 8.0]}
    assert planes(X.prod(0, keepdim=True)) == {F(0): [[6.0, 2.0, -3.0]], F(1): [[3.0, 1.0, 6.0]]}
    a = torch.tensor([0.3, 1.7, -0.9, 1.1, 2.3], dtype=f64)
    v = torch.tensor([1.0, 0.5, -2.0, 0.0, 0.25], dtype=f64)
    y = a.nonstd(v, order=2).prod()
    val, tan = jvp(torch.prod, (a,), (v,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    d2 = jvp(lambda z: jvp(torch.prod, (z,), (v,))[1], (a,), (v,))[1]
    assert_close(torchlc.coeff(y, 2), d2 / 2, **TOL)


def test_cumsum_cumprod():
    assert planes(X.cumsum(1)) == {F(0): [[3.0, 4.0, 7.0], [2.0, 4.0, 3.0]],
                                   F(1): [[0.0, 1.0, 1.0], [1.0, 0.0, 2.0]]}
    assert planes(X.cumprod(1)) == {F(0): [[3.0, 3.0, 9.0], [2.0, 4.0, -4.0]],
                                    F(1): [[0.0, 3.0, 9.0], [1.0, 0.0, 8.0]]}
    a = torch.tensor([0.3, 1.7, -0.9, 1.1, 2.3, 0.7, -1.3], dtype=f64)
    v = torch.tensor([1.0, 0.5, -2.0, 0.0, 0.25, 3.0, 1.0], dtype=f64)
    y = a.nonstd(v).cumprod(0)
    val, tan = jvp(lambda z: z.cumprod(0), (a,), (v,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    y = a.nonstd(v).cumsum(0)
    assert torch.equal(torchlc.coeff(y, 0), a.cumsum(0))
    assert torch.equal(torchlc.coeff(y, 1), v.cumsum(0))


def test_amax_amin_max_min_values():
    assert planes(X.amax()) == {F(0): 3.0, F(1): 0.0}
    assert planes(X.amax(1)) == {F(0): [3.0, 2.0], F(1): [0.0, 1.0]}
    assert planes(X.amin(0)) == {F(0): [2.0, 1.0, -1.0], F(1): [1.0, 1.0, 2.0]}
    assert planes(X.amax(1, keepdim=True)) == {F(0): [[3.0], [2.0]], F(1): [[0.0], [1.0]]}
    assert planes(X.max()) == {F(0): 3.0, F(1): 0.0}
    assert planes(X.min()) == {F(0): -1.0, F(1): 2.0}


def test_max_min_with_dim_and_indices():
    m = X.max(1)
    assert planes(m.values) == {F(0): [3.0, 2.0], F(1): [0.0, 1.0]}
    assert m.indices.tolist() == [0, 0]
    m = X.min(1)
    assert planes(m.values) == {F(0): [1.0, -1.0], F(1): [1.0, 2.0]}
    assert m.indices.tolist() == [1, 2]
    m = torch.max(X, 0, keepdim=True)
    assert planes(m.values) == {F(0): [[3.0, 2.0, 3.0]], F(1): [[0.0, -1.0, 0.0]]}
    assert m.indices.tolist() == [[0, 1, 0]]


def test_argmax_argmin_decided_by_infinitesimals_and_ties_first():
    # row 1: 2+ε vs 2−ε: the ε decides; row 0: 3 and 3 tie exactly: first index
    assert X.argmax(1).tolist() == [0, 0]
    assert X.argmin(1).tolist() == [1, 2]
    assert X.argmax().item() == 0
    assert X.argmax(0, keepdim=True).tolist() == [[0, 1, 0]]
    y = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=f64).nonstd(torch.tensor([0.0, 2.0, 2.0, -1.0], dtype=f64))
    assert y.argmax().item() == 1
    assert y.argmin().item() == 3
    assert y.max(0).indices.item() == 1
    assert torch.argmax(y, dim=0).item() == 1


def test_argmax_infinite_beats_finite():
    y = torchlc.from_terms({-1: torch.tensor([0.0, 1e-30, 0.0], dtype=f64),
                            0: torch.tensor([1e300, -1e300, 5.0], dtype=f64)}, dtype=f64)
    assert y.argmax().item() == 1
    assert y.argmin().item() == 2


def test_sort_and_topk_ties_stable():
    s = X.sort(1)
    assert planes(s.values) == {F(0): [[1.0, 3.0, 3.0], [-1.0, 2.0, 2.0]],
                                F(1): [[1.0, 0.0, 0.0], [2.0, -1.0, 1.0]]}
    assert s.indices.tolist() == [[1, 0, 2], [2, 1, 0]]
    s = X.sort(1, descending=True)
    assert s.indices.tolist() == [[0, 2, 1], [0, 1, 2]]
    s = torch.sort(X, dim=1, stable=True)
    assert s.indices.tolist() == [[1, 0, 2], [2, 1, 0]]
    assert X.argsort(1).tolist() == [[1, 0, 2], [2, 1, 0]]
    k = X.topk(2, 1)
    assert planes(k.values) == {F(0): [[3.0, 3.0], [2.0, 2.0]], F(1): [[0.0, 0.0], [1.0, -1.0]]}
    assert k.indices.tolist() == [[0, 2], [0, 1]]
    k = X.topk(1, 1, largest=False)
    assert k.indices.tolist() == [[1], [2]]
    y = torch.tensor([1.0, 1.0, 1.0], dtype=f64).nonstd(torch.tensor([0.0, 2.0, 2.0], dtype=f64))
    assert y.sort(descending=True).indices.tolist() == [1, 2, 0]
    assert y.topk(1).indices.tolist() == [1]


def test_sort_matches_torch_on_real_values():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (4, 9), generator=g).to(f64)
    x = torchlc.from_terms({0: a}, dtype=f64)
    for desc in (False, True):
        s = x.sort(dim=1, descending=desc, stable=True)
        ref = a.sort(dim=1, descending=desc, stable=True)
        assert torch.equal(torchlc.coeff(s.values, 0), ref.values)
        assert torch.equal(s.indices, ref.indices)
    assert torch.equal(x.argmax(1), a.argmax(1))
    assert torch.equal(x.argmin(0), a.argmin(0))


def test_any_all():
    x = torch.tensor([0.0, 1.0], dtype=f64).nonstd(torch.tensor([0.0, 0.0], dtype=f64))
    assert x.any().item() is True
    assert x.all().item() is False
    e = torchlc.eps(shape=(2,), dtype=f64)
    assert e.all().item() is True   # ε ≠ 0


def _truncated_tie():
    # x = 1 + vε: (x² − 2x)/ε = −ε⁻¹ + v²ε, but x² dropped its ε² term, so the result is exact through
    # ε⁰ only and both elements read −ε⁻¹: the true argmax (index 1) depends on the dropped terms
    x = torch.tensor([1.0, 1.0], dtype=f64).nonstd(torch.tensor([1.0, 2.0], dtype=f64))
    z = (x * x - 2 * x) / torchlc.eps(dtype=f64)
    assert torchlc.exact_through(z) == 0
    return z


def test_argmax_with_dim_tie_on_truncated_terms_raises():
    z = _truncated_tie()
    with pytest.raises(torchlc.TruncationError, match="order"):
        z.argmax(0)
    with pytest.raises(torchlc.TruncationError, match="order"):
        z.argmin(0)


def test_argmax_no_dim_on_truncated_tensor():
    z = _truncated_tie()
    with pytest.raises(torchlc.TruncationError, match="order"):
        z.argmax()
    # no tie: must simply answer
    y = torch.tensor([1.0, 3.0], dtype=f64).nonstd()
    w = (y * y) / torchlc.eps(dtype=f64)
    assert w.argmax().item() == 1


@pytest.mark.parametrize("op", ["amax", "amin"])
def test_value_only_reductions_keep_exact_values_on_truncated_ties(op):
    # every candidate tied through exact_through has the same known coefficients, so the values are
    # exact whichever wins; ops that also return an index refuse the tie instead (next test)
    z = _truncated_tie()
    v = getattr(z, op)(0)
    e = torchlc.exact_through(v)
    for q in torchlc.support(z):
        if q <= e:
            assert torch.equal(torchlc.coeff(v, q), torchlc.coeff(z, q)[0]), (op, q)


@pytest.mark.parametrize("op", ["max", "min", "sort", "topk", "argsort", "kthvalue"])
def test_index_returning_ops_refuse_truncated_ties(op):
    # the index of a tie decided only by dropped terms would be a silent guess
    z = _truncated_tie()
    call = {"max": lambda: z.max(0), "min": lambda: z.min(0), "sort": lambda: z.sort(),
            "topk": lambda: z.topk(1), "argsort": lambda: z.argsort(), "kthvalue": lambda: z.kthvalue(1)}[op]
    with pytest.raises(torchlc.TruncationError, match=r"order=\d"):
        call()




@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("sup", [(-1,), (F(-1, 2), F(1, 3)), (0, 1), (F(1, 4),)])
def test_prod_and_cumprod_equal_the_running_product(n, sup):
    """prod and cumprod (log-depth trees of Cauchy products) against the running product x₀·x₁·…
    through `*`, term for term, for every length (odd ones pad or carry) and for supports with and
    without ε⁰. Once a support without ε⁰ silently dropped the padding 1 (prod of 3 monomials
    2ε⁻¹·3ε⁻¹·5ε⁻¹ gave 0) and cumprod's carried prefix (every entry 0)."""
    g = torch.Generator().manual_seed(n)
    x = sum(torch.randn(n, generator=g, dtype=torch.float64) * torchlc.eps(q, order=2) for q in sup)
    run = [x[0]]
    for i in range(1, n):
        run.append(run[-1] * x[i])
    for got, want in ((x.prod(), run[-1]), (x.prod(0, keepdim=True)[0], run[-1]),
                      (x.cumprod(0), torch.stack(run))):
        tg, tw = torchlc.terms(got), torchlc.terms(want)
        z = torch.zeros(tuple(want.shape), dtype=torch.float64)
        for q in set(tg) | set(tw):
            assert_close(tg.get(q, z), tw.get(q, z), rtol=1e-12, atol=1e-12, msg=f"ε^{q}")
        assert torchlc.exact_through(got) >= torchlc.exact_through(want)
