"""scatter_reduce with amax/amin (the field's order) and prod (truncated Cauchy products), include_self
both ways: smooth cases against derivative references in float64, ties, zeros, signs and infinite
numbers against hand-derived values, gradients through the planes, compile and vmap.

References: amax/amin against ``torch.func.jvp``. For prod, ``torch.func.jvp`` silently returns a
zero tangent (pytorch/pytorch#196702), so the reference is ``torch.autograd.functional.jvp`` (double
backward through the reverse-mode formula, which is exact with zeros)."""

import pytest
import torch
from torch.testing import assert_close

import torchlc
from tests.test_models import MODES, TOL, R, check

f64 = torch.float64

# name: (self shape, dim, index, src shape); index may be smaller than src (only its extent is used)
CASES = {
    "dim0": (
        (3, 4),
        0,
        torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0], [0, 0, 0, 1], [1, 2, 0, 2]]),
        (4, 4),
    ),
    "dim1_small_index": ((3, 5), 1, torch.tensor([[4, 0, 4], [1, 1, 3]]), (3, 4)),
    "dim_neg_3d": ((2, 3, 3), -1, torch.tensor([[[0, 2, 2, 0]], [[1, 1, 1, 2]]]), (2, 1, 4)),
    "untouched_rows": ((4, 2), 0, torch.tensor([[1, 1], [1, 3], [3, 3]]), (3, 2)),
}


def _compare(f, xs, vs, ref=None):
    """f on the inputs lifted along vs (None: kept plain) against (value, tangent) of ``ref`` (default
    f) by double backward, with grad enabled, under no_grad and under inference_mode."""
    moving = [i for i, v in enumerate(vs) if v is not None]

    def g(*ts):
        full = list(xs)
        for i, t in zip(moving, ts):
            full[i] = t
        return (ref or f)(*full)

    val, tan = torch.autograd.functional.jvp(
        g, tuple(xs[i] for i in moving), tuple(vs[i] for i in moving)
    )
    for name, ctx in MODES.items():
        with ctx():
            y = f(*[x if v is None else x.nonstd(v) for x, v in zip(xs, vs)])
        assert_close(torchlc.coeff(y, 0), val, **TOL, msg=lambda m, name=name: f"{name}: {m}")
        assert_close(torchlc.coeff(y, 1), tan, **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("include_self", [True, False], ids=["self", "noself"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("reduce", ["amax", "amin", "prod"])
def test_smooth(reduce, case, include_self):
    shape, dim, index, src = CASES[case]
    f = lambda x, s: x.scatter_reduce(dim, index, s, reduce, include_self=include_self)
    # torch's backward needs src shaped like index; the op only reads src[:index.shape] anyway
    used = tuple(slice(0, n) for n in index.shape)
    ref = lambda x, s: f(x, s[used])
    x, s, v, vs = R(*shape), R(*src, seed=1), R(*shape, seed=2), R(*src, seed=3)
    _compare(f, [x, s], [v, vs], ref)
    _compare(f, [x, s], [None, vs], ref)  # plain self, LC src
    _compare(f, [x, s], [v, None], ref)  # LC self, plain src
    if reduce != "prod" and tuple(index.shape) == src:  # forward AD needs index and src alike
        check(f, [x, s], [v, vs])


def _lc(*terms):
    """A 1-D LCTensor from per-element (ε⁰, ε¹) pairs."""
    a = torch.tensor([t[0] for t in terms], dtype=f64)
    b = torch.tensor([t[1] for t in terms], dtype=f64)
    return a.nonstd(b)


def _pairs(y):
    return list(zip(torchlc.coeff(y, 0).tolist(), torchlc.coeff(y, 1).tolist()))


def test_amax_amin_ties_follow_the_order():
    # target 0 gets self 1 + 2ε and src 1 + 5ε, 1 − 3ε: a tie in ε⁰ decided by ε¹ (the one-sided
    # derivative of the max, where jvp would average); target 1 gets nothing; target 2 a full tie
    x = _lc((1.0, 2.0), (7.0, 1.0), (0.5, 0.0))
    s = _lc((1.0, 5.0), (1.0, -3.0), (4.0, 1.0), (4.0, 1.0))
    idx = torch.tensor([0, 0, 2, 2])
    for ctx in MODES.values():
        with ctx():
            assert _pairs(x.scatter_reduce(0, idx, s, "amax")) == [
                (1.0, 5.0),
                (7.0, 1.0),
                (4.0, 1.0),
            ]
            assert _pairs(x.scatter_reduce(0, idx, s, "amin")) == [
                (1.0, -3.0),
                (7.0, 1.0),
                (0.5, 0.0),
            ]
            y = x.scatter_reduce(0, idx, s, "amin", include_self=False)
            assert _pairs(y) == [(1.0, -3.0), (7.0, 1.0), (4.0, 1.0)]
            y = x.scatter_reduce(0, idx, s, "amax", include_self=False)
            assert _pairs(y) == [(1.0, 5.0), (7.0, 1.0), (4.0, 1.0)]


def test_amax_gradients_split_ties_like_torch():
    # ε⁰ output: its gradient splits evenly among the ε⁰ ties, exactly as plain torch's; ε¹ output:
    # all to the element the order picked (a full tie splits evenly again)
    a = torch.tensor([0.0, 1.0, 1.0, 3.0, 3.0], dtype=f64, requires_grad=True)
    b = torch.tensor([0.0, 5.0, -3.0, 2.0, 2.0], dtype=f64, requires_grad=True)
    idx = torch.tensor([0, 0, 1, 1])
    x, s = a[:2].nonstd(b[:2]), a[1:].nonstd(b[1:])
    y = x.scatter_reduce(0, idx, s, "amax", include_self=False)
    assert _pairs(y) == [(1.0, 5.0), (3.0, 2.0)]
    ga, gb = torch.autograd.grad(torchlc.coeff(y, 0).sum(), [a, b], retain_graph=True)
    plain = torch.autograd.grad(
        a[:2].scatter_reduce(0, idx, a[1:], "amax", include_self=False).sum(), a
    )[0]
    assert ga.tolist() == plain.tolist() == [0.0, 0.5, 0.5, 0.5, 0.5]
    assert gb.tolist() == [0.0] * 5
    ga, gb = torch.autograd.grad(torchlc.coeff(y, 1).sum(), [a, b])
    assert ga.tolist() == [0.0] * 5
    assert gb.tolist() == [0.0, 1.0, 0.0, 0.5, 0.5]


def test_amax_nan_propagates():
    x = _lc((0.0, 1.0), (0.0, 1.0))
    s = _lc((float("nan"), 1.0), (2.0, 1.0))
    y = x.scatter_reduce(0, torch.tensor([0, 1]), s, "amax")
    assert torchlc.coeff(y, 0)[0].isnan() and torchlc.coeff(y, 1)[0].isnan()
    assert _pairs(y)[1] == (2.0, 1.0)


def test_prod_exact_with_zeros_signs_and_truncation():
    # (2 + ε)·ε·(3 + 2ε) = 6ε + 7ε² + 2ε³; (−2)·(−3 + ε) = 6 − 2ε; target 2 untouched
    x = _lc((2.0, 1.0), (-2.0, 0.0), (5.0, 1.0))
    s = _lc((0.0, 1.0), (3.0, 2.0), (-3.0, 1.0))
    idx = torch.tensor([0, 0, 1])
    for ctx in MODES.values():
        with ctx():
            assert _pairs(x.scatter_reduce(0, idx, s, "prod")) == [
                (0.0, 6.0),
                (6.0, -2.0),
                (5.0, 1.0),
            ]
            y = x.scatter_reduce(0, idx, s, "prod", include_self=False)
            assert _pairs(y) == [(0.0, 3.0), (-3.0, 1.0), (5.0, 1.0)]
    # the same at order 3 keeps every term of the product
    x3 = torch.tensor([2.0], dtype=f64).nonstd(order=3)
    s3 = torch.tensor([0.0, 3.0], dtype=f64).nonstd(torch.tensor([1.0, 2.0], dtype=f64), order=3)
    y = x3.scatter_reduce(0, torch.tensor([0, 0]), s3, "prod")
    assert [torchlc.coeff(y, q).item() for q in (0, 1, 2, 3)] == [0.0, 6.0, 7.0, 2.0]
    # two exact zeros in one product: ε·ε = ε², truncated to 0 at order 1 (exact through ε¹)
    y = x.scatter_reduce(0, torch.tensor([0, 0]), _lc((0.0, 1.0), (0.0, 1.0)), "prod")
    assert _pairs(y)[0] == (0.0, 0.0)


def test_prod_with_an_infinite_factor():
    # ε · ε⁻¹ · 4 = 4: the infinite factor pulls the ε¹ term from above the cutoff into ε⁰
    x = torch.tensor([4.0], dtype=f64).nonstd(torch.zeros(1, dtype=f64))
    s = torch.cat([torchlc.eps(shape=(1,), dtype=f64), 1 / torchlc.eps(shape=(1,), dtype=f64)])
    y = x.scatter_reduce(0, torch.tensor([0, 0]), s, "prod")
    assert torchlc.coeff(y, 0).tolist() == [4.0]


def test_prod_gradients_through_the_tangent():
    x, s, v, vs = R(3, 4), R(4, 4, seed=1), R(3, 4, seed=2), R(4, 4, seed=3)
    x.requires_grad_()
    s.requires_grad_()
    _, dim, index, _ = CASES["dim0"]
    f = lambda x, s: x.scatter_reduce(dim, index, s, "prod", include_self=True)
    y = f(x.nonstd(v), s.nonstd(vs))
    got = torch.autograd.grad((torchlc.coeff(y, 1) ** 2).sum(), [x, s])
    _, tan = torch.autograd.functional.jvp(f, (x, s), (v, vs), create_graph=True)
    want = torch.autograd.grad((tan**2).sum(), [x, s])
    for g, w in zip(got, want):
        assert g.abs().sum() > 0
        assert_close(g, w, **TOL)


@pytest.mark.parametrize("reduce", ["amax", "prod"])
def test_vmap_over_lc_inputs(reduce):
    index = torch.tensor([0, 2, 0, 1])
    x, s = R(5, 3), R(5, 4, seed=1)
    f = lambda x, s: x.scatter_reduce(0, index, s, reduce)
    y = torch.vmap(f)(x.nonstd(R(5, 3, seed=2)), s.nonstd(R(5, 4, seed=3)))
    ref = torch.stack(
        [f(x[i].nonstd(R(5, 3, seed=2)[i]), s[i].nonstd(R(5, 4, seed=3)[i])) for i in range(5)]
    )
    assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=0, atol=0)


def test_compiled_prod_speculates_the_group_size():
    index_small = torch.tensor([0, 1, 0, 1])  # at most 2 src elements per target
    index_big = torch.tensor([0, 0, 0, 1])  # 3 on target 0: more than the trace assumed
    x, s = R(2), R(4, seed=1)
    f = lambda x, s, i: x.scatter_reduce(0, i, s, "prod")
    for compiled in (
        torchlc.compile(f, backend="aot_eager"),
        torch.compile(f, backend="aot_eager", fullgraph=True),
    ):
        for index in (index_small, index_big):
            with torch.no_grad():
                y = compiled(x.nonstd(), s.nonstd(), index)
            ref = f(x.nonstd(), s.nonstd(), index)
            assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), **TOL)
