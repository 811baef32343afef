"""Native CSR (ragged) tensors: every element with its own exponents, computed without planes.

* the semantics case table (tests/test_semantics.py) rerun with every tensor stored as CSR;
* the differential test against the exact reference (tests/reference.py) with *ragged* inputs: each
  element draws its own exponents (multiples of 1/12), built with ``torchlc.from_csr``, both forced to
  CSR and under the automatic policy (results move between CSR and planes by cost);
* constructors and readers that never decode, the lazy support, the layout policy, refusals.
"""

from __future__ import annotations

import sys
from unittest import mock
from fractions import Fraction as F
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import torchlc
from torchlc.layouts import NATIVE_SEEN, force

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import test_differential as TD  # noqa: E402
import test_semantics as SEM  # noqa: E402

f64 = torch.float64


def csr(x) -> bool:
    return torchlc.layout(x) == "csr"


def lazy(x) -> bool:
    """The tensor's support has not been computed (nothing decoded it)."""
    return "_support" not in x.__dict__


# ------------------------------------------------------------------------------------ semantics table
_SKIP = {
    "test_boxed_integer_power",             # asserts the boxed layout itself
    # a CSR tensor's support is the set of exponents it stores (docs/layouts.md), not the static
    # union/sumset: x·y holds no ε^{5/6} term when every such product is 0 (its values are checked)
    "test_support_is_static_union_and_sum",
}


@pytest.fixture
def all_csr():
    with force("csr"):
        yield


def _semantics_cases():
    for name in dir(SEM):
        fn = getattr(SEM, name)
        if name.startswith("test_") and callable(fn) and name not in _SKIP:
            marks = getattr(fn, "pytestmark", [])
            params = [m for m in marks if m.name == "parametrize"]
            if params:
                argnames, values = params[0].args[:2]
                for v in values:
                    yield pytest.param(fn, dict(zip([a.strip() for a in argnames.split(",")], v if isinstance(v, tuple) else (v,))), id=f"{name}-{v}")
            else:
                yield pytest.param(fn, {}, id=name)


@pytest.mark.parametrize("case,kwargs", list(_semantics_cases()))
def test_semantics_table_on_csr(case, kwargs, all_csr):
    case(**kwargs)


# ------------------------------------------------------------------------------------ differential
RAGGED_EXPS = [F(k, 12) for k in range(-12, 25)]


@st.composite
def ragged_inputs(draw, nvars=2):
    """Per element 1–3 terms with exponents of its own (multiples of 1/12 up to the order)."""
    order = draw(st.sampled_from([F(1), F(3, 2), F(2)]))
    exps = [q for q in RAGGED_EXPS if q <= order]
    xs = []
    for _ in range(nvars):
        planes: dict = {}
        for i in range(TD.N):
            qs = draw(st.lists(st.sampled_from(exps), min_size=1, max_size=3, unique=True))
            for q in qs:
                c = draw(st.sampled_from(TD.KINKS)) if q == 0 else draw(st.sampled_from(TD.COEFS[2:]))
                planes.setdefault(q, [F(0)] * TD.N)[i] = c
        xs.append(planes)
    return order, xs


def build_ragged(order, planes, dtype):
    """from_csr of the nonzero terms, element by element (exponents over 12)."""
    crow, num, vals = [0], [], []
    for i in range(TD.N):
        for q in sorted(planes):
            c = planes[q][i]
            if c != 0:
                num.append(int(q * 12))
                vals.append(float(c))
        crow.append(len(num))
    return torchlc.from_csr(torch.tensor(crow), torch.tensor(num, dtype=torch.int64),
                            torch.tensor(vals, dtype=dtype), denominator=12, order=order)


def _build(order, planes, dtype, kind, _plain=TD.build_core):
    return build_ragged(order, planes, dtype) if kind == "ragged" else _plain(order, planes, dtype, kind)


@TD.SETTINGS
@given(TD.trees(depth=3), ragged_inputs())
def test_differential_ragged_forced_csr(tree, inp):
    order, xs = inp
    with mock.patch.object(TD, "build_core", _build), force("csr"):
        TD.run_case(tree, order, xs, f64, "ragged", expect_layout="csr")


@TD.SETTINGS
@given(TD.trees(depth=3), ragged_inputs())
def test_differential_ragged_by_policy(tree, inp):
    # no forcing: inputs start as CSR when their exponents are wide for their terms, else planes, and
    # every result moves between the two by cost: mixed-layout ops all the way
    order, xs = inp
    with mock.patch.object(TD, "build_core", _build):
        TD.run_case(tree, order, xs, f64, "ragged")


# ------------------------------------------------------------------------------------ constructors/readers
def ragged_example(n=6, dtype=f64, order=3):
    """Element i: (i+1) + ε^{(i+1)/7} − 2ε^{(2i+3)/7}: every element its own exponents."""
    crow = torch.arange(0, 3 * n + 1, 3)
    i = torch.arange(n)
    num = torch.stack([torch.zeros(n, dtype=torch.int64), i + 1, 2 * i + 3], 1).reshape(-1)
    vals = torch.stack([(i + 1).to(dtype), torch.ones(n, dtype=dtype), -2 * torch.ones(n, dtype=dtype)], 1)
    return torchlc.from_csr(crow, num, vals.reshape(-1), denominator=7, order=order)


def test_from_csr_terms_and_export_roundtrip():
    x = ragged_example()
    assert csr(x) and lazy(x)
    assert torchlc.terms(x, 2) == {F(0): torch.tensor(3.0, dtype=f64), F(3, 7): torch.tensor(1.0, dtype=f64),
                                   F(1): torch.tensor(-2.0, dtype=f64)}
    d = torchlc.to_csr(x)
    assert lazy(x)  # neither reader decoded it
    assert d.denominator == 7 and d.shape == (6,) and d.order == 3
    y = torchlc.from_csr(d.crow_indices, d.exponents, d.values, denominator=d.denominator, order=d.order)
    assert torch.equal(torchlc.coeffs(x), torchlc.coeffs(y)) and torchlc.support(x) == torchlc.support(y)
    assert torchlc.support(x) == tuple(sorted({F(0)} | {F(k, 7) for k in [1, 2, 3, 4, 5, 6, 7, 9, 11, 13]}))


def test_from_csr_sorts_sums_drops_and_truncates():
    # unsorted row, an exponent twice (summed), a zero coefficient, a term above the order
    x = torchlc.from_csr(torch.tensor([0, 4, 5]), torch.tensor([3, 0, 3, 9, 1]),
                         torch.tensor([1.0, 2.0, 0.5, 7.0, 0.0]), denominator=4, order=2)
    assert torchlc.terms(x, 0) == {F(0): torch.tensor(2.0), F(3, 4): torch.tensor(1.5)}
    assert torchlc.terms(x, 1) == {}
    assert torchlc.exact_through(x) == 2  # ε^{9/4} was dropped: exact only through the order
    with pytest.raises(TypeError, match="integer numerators"):
        torchlc.from_csr(torch.tensor([0, 1]), torch.tensor([0.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="do not describe"):
        torchlc.from_csr(torch.tensor([0, 2]), torch.tensor([0]), torch.tensor([1.0]))


def test_terms_of_one_element_on_planes_and_plain():
    x = torch.tensor([[1.0, 0.0], [2.0, 3.0]]).nonstd()
    assert torchlc.terms(x, (1, 0)) == {F(0): torch.tensor(2.0), F(1): torch.tensor(1.0)}
    assert torchlc.terms(torch.tensor([0.0, 4.0]), 1) == {F(0): torch.tensor(4.0)}
    with pytest.raises(IndexError):
        torchlc.terms(x, (2, 0))


# ------------------------------------------------------------------------------------ native ops
def test_native_ops_match_planes_and_never_decode():
    x = ragged_example()
    y = ragged_example() * 0.5 + 1
    with force("planes"):
        xp, yp = x * 1, y * 1
    assert lazy(x)
    ops = {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b, "sqrt": lambda a, b: torch.sqrt(a), "exp": lambda a, b: torch.exp(a - 1),
        "pow": lambda a, b: a ** F(2, 3), "recip": lambda a, b: 1 / a, "neg": lambda a, b: -a,
        "abs": lambda a, b: torch.abs(a - 3), "where": lambda a, b: torch.where(torch.arange(6) % 2 == 0, a, b),
        "sum": lambda a, b: (a * b).reshape(2, 3).sum(1), "flip": lambda a, b: a.flip(0)[1:4],
        "cat": lambda a, b: torch.cat([a, b]), "stack": lambda a, b: torch.stack([a, b], 1)[2],
        "prod": lambda a, b: a.prod(), "prod_dim": lambda a, b: (a * b).reshape(2, 3).prod(1),
        "prod_odd": lambda a, b: torch.stack([a, b, a + b], 1).prod(-1, keepdim=True),
        "prod_empty": lambda a, b: a[:0].reshape(0, 2).prod(0) + a[:2],
        "masked_fill": lambda a, b: a.masked_fill(torch.arange(6) % 3 == 0, 2.5),
        "masked_fill_lc": lambda a, b: a.masked_fill(torch.arange(6) > 3, b[1]),
    }
    for name, f in ops.items():
        with force("csr"):  # keep results on CSR (tiny tensors would move to planes by cost)
            got = f(x, y)
        ref = f(xp, yp)
        assert csr(got), name
        assert lazy(got), name  # computed natively: no support was materialised
        tg, tr = torchlc.terms(got), torchlc.terms(ref)
        z = torch.zeros(tuple(ref.shape), dtype=f64)
        for q in set(tg) | set(tr):
            torch.testing.assert_close(tg.get(q, z), tr.get(q, z), rtol=1e-14, atol=1e-14, msg=f"{name} ε^{q}")
        assert torchlc.exact_through(got) >= torchlc.exact_through(ref), name
    c = x > y
    assert c.dtype == torch.bool and torch.equal(c, xp > yp)
    assert torch.equal(torch.sign(x - 3), torch.sign(xp - 3))


def test_decisions_refuse_truncated_ties_like_planes():
    # x·x at order 3 drops terms, so x·x − x·x·1 ties through exact_through: decided by dropped terms
    x = ragged_example()
    with force("planes"):
        xp = x * 1
    a, ap = x * x * x, xp * xp * xp
    b, bp = a * 1 + 0 * x, ap * 1 + 0 * xp
    with pytest.raises(torchlc.TruncationError) as ec:
        torch.sign(a - b)
    with pytest.raises(torchlc.TruncationError) as ep:
        torch.sign(ap - bp)
    assert str(ec.value) == str(ep.value)


def test_outside_the_field_is_nan_or_domain_error():
    x = torchlc.from_csr(torch.tensor([0, 1, 2]), torch.tensor([-3, 0]), torch.tensor([1.0, -4.0]), denominator=3)
    with force("csr"):
        e = torch.exp(x)           # exp of an infinite number
        s = torch.sqrt(x)          # sqrt of a negative number
    assert torch.isnan(torchlc.terms(e, 0)[F(0)]) and torch.isnan(torchlc.terms(s, 1)[F(0)])
    with force("csr"), torchlc.strict():
        with pytest.raises(torchlc.DomainError):
            torch.exp(x)
        with pytest.raises(torchlc.DomainError):
            torch.sqrt(x)


def test_per_element_exponents_of_eps():
    t = torch.arange(1, 2001, dtype=f64) / 2000      # 2,000 distinct exponents k/2000
    y = torchlc.eps(dtype=f64) ** t
    assert csr(y) and lazy(y)
    assert torchlc.terms(y, 0) == {F(1, 2000): torch.tensor(1.0, dtype=f64)}
    assert torchlc.terms(y, 1999) == {F(1): torch.tensor(1.0, dtype=f64)}
    z = torch.tensor([2.0, 4.0], dtype=f64).nonstd() ** torch.tensor([0.5, F(1, 3)], dtype=f64)
    with force("planes"):
        zp = torch.tensor([2.0, 4.0], dtype=f64).nonstd() ** torch.tensor([0.5, F(1, 3)], dtype=f64)
    torch.testing.assert_close(torchlc.coeffs(z), torchlc.coeffs(zp), rtol=1e-15, atol=0)


def test_policy_upgrade_and_downgrade():
    x = ragged_example(50, order=15)
    assert csr(x)                                   # 50 elements, 101 distinct exponents, 3 terms each
    st_ = torch.floor(x)                            # no native rule: decodes, a real result
    assert torchlc.layout(st_) == "planes"
    narrow = x - x + torch.tensor(1.0, dtype=f64).nonstd()   # every element 1 + ε: two exponents
    assert torchlc.layout(narrow) == "planes"
    # a dense wide support stays on planes; a sparse one moves to CSR
    dense = torchlc.from_terms({F(k, 5): torch.ones(4) for k in range(40)})
    sparse = torchlc.from_terms({F(k, 5): ((torch.arange(40) - k) % 40 < 2).float() for k in range(40)})
    assert torchlc.layout(dense) == "planes" and csr(sparse)


def test_mixed_layouts_and_plain_operands():
    x = ragged_example()
    p = torch.arange(6, dtype=f64).nonstd()        # planes
    with force("planes"):
        xp = x * 1
    for f in (lambda a: a + p, lambda a: p * a, lambda a: a * torch.arange(6, dtype=f64), lambda a: 2.0 - a,
              lambda a: a / torch.full((6,), 4.0, dtype=f64), lambda a: torch.where(p > 2, a, 3.0)):
        with force("csr"):
            got = f(x)
        ref = f(xp)
        assert csr(got)
        tg, tr = torchlc.terms(got), torchlc.terms(ref)
        z = torch.zeros(6, dtype=f64)
        assert all(torch.equal(tg.get(q, z), tr.get(q, z)) for q in set(tg) | set(tr))


def test_exponents_beyond_int64_fall_back_to_planes():
    # denominators whose lcm leaves int64: the native rule declines and the planes rules compute
    a = torchlc.from_csr(torch.tensor([0, 1, 2]), torch.tensor([1, 2]), torch.tensor([1.0, 1.0]),
                         denominator=2**40 + 15, order=1)
    b = torchlc.from_csr(torch.tensor([0, 1, 2]), torch.tensor([1, 3]), torch.tensor([1.0, 1.0]),
                         denominator=2**40 + 17, order=1)
    with force("csr"):
        s = a + b
    assert torchlc.terms(s, 0) == {F(1, 2**40 + 15): torch.tensor(1.0), F(1, 2**40 + 17): torch.tensor(1.0)}


def test_dense_path_untouched_until_csr_exists():
    # the dispatcher's native table is consulted only after a CSR tensor was built (one flag)
    assert NATIVE_SEEN[0]  # set by the tests above; in a fresh process it starts False
    x = torch.tensor([1.0]).nonstd()
    assert torchlc.layout(x * x) == "planes"


@st.composite
def _ragged_tensors(draw):
    """A CSR tensor of 1–3 dims, each element 0–3 terms at its own exponents k/6 (k in −6…6)."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    n = 1
    for s in shape:
        n *= s
    counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    num, vals, ptr = [], [], [0]
    for c in counts:
        ks = sorted(draw(st.sets(st.integers(-6, 6), min_size=c, max_size=c)))
        num += ks
        vals += [draw(st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 3.0])) for _ in ks]
        ptr.append(len(num))
    order = draw(st.sampled_from([1, 2, None]))
    x = torchlc.from_csr(torch.tensor(ptr), torch.tensor(num, dtype=torch.int64), torch.tensor(vals, dtype=f64),
                         denominator=6, shape=shape, **({} if order is None else {"order": order}))
    dim = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    return x, dim, draw(st.booleans())


@TD.SETTINGS
@given(case=_ragged_tensors())
def test_prod_over_dims_matches_planes(case):
    """The native product over a dim (pairwise Cauchy products, odd counts carried) equals the planes
    rule's, term for term, for ragged exponents, every dim, keepdim and truncation order."""
    x, dim, keepdim = case
    with force("planes"):
        xp = x * 1
    call = (lambda t: t.prod()) if dim is None else (lambda t: t.prod(dim, keepdim=keepdim))
    with force("csr"):
        got = call(x)
    with force("planes"):
        ref = call(xp)
    assert csr(got) and got.shape == ref.shape
    tg, tr = torchlc.terms(got), torchlc.terms(ref)
    z = torch.zeros(tuple(ref.shape), dtype=f64)
    for q in set(tg) | set(tr):
        torch.testing.assert_close(tg.get(q, z), tr.get(q, z), rtol=1e-13, atol=1e-13, msg=f"ε^{q}")
