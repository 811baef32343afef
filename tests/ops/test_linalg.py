"""Linear algebra on LC matrices against torch.func.jvp (first order) and nested jvp (second order)."""

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-9, atol=1e-10)


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=f64)


def _spd(n, seed=0):
    x = _rand(n, n, seed=seed)
    return x @ x.mT + n * torch.eye(n, dtype=f64)


def _tri(n, upper, seed=0):
    t = _rand(n, n, seed=seed) + 3 * torch.eye(n, dtype=f64)
    return t.triu() if upper else t.tril()


def _flat_outputs(o):
    return list(o) if isinstance(o, (tuple, list)) else [o]


def check_first(f, xs, seed=1):
    vs = tuple(_rand(*x.shape, seed=seed + i) for i, x in enumerate(xs))
    val, tan = jvp(f, tuple(xs), vs)
    r = f(*[x.nonstd(v) for x, v in zip(xs, vs)])
    for o, v0, t0 in zip(_flat_outputs(r), _flat_outputs(val), _flat_outputs(tan)):
        if isinstance(o, torchlc.LCTensor):
            assert_close(torchlc.coeff(o, 0), v0, **TOL)
            assert_close(torchlc.coeff(o, 1), t0, **TOL)
            assert torchlc.exact_through(o) >= 1
        else:
            assert_close(o, v0, rtol=0, atol=0) if not o.is_floating_point() else assert_close(o, v0, **TOL)


def check_second(f, xs, seed=1):
    """ε² plane against a central second difference of f(x + t·v). (torch.func's nested jvp of
    linalg.det and linalg.solve is itself wrong at second order: it treats the LU as constant.)"""
    vs = tuple(_rand(*x.shape, seed=seed + i) for i, x in enumerate(xs))
    h = 2e-3

    def at(t):
        return _flat_outputs(f(*[x + t * v for x, v in zip(xs, vs)]))

    def second(k, h):
        return (at(h)[k] - 2 * at(0.0)[k] + at(-h)[k]) / h**2

    r = f(*[x.nonstd(v, order=2) for x, v in zip(xs, vs)])
    for k, o in enumerate(_flat_outputs(r)):
        if isinstance(o, torchlc.LCTensor):
            fd2 = (4 * second(k, h / 2) - second(k, h)) / 3  # Richardson: O(h⁴)
            assert_close(torchlc.coeff(o, 2), fd2 / 2, rtol=1e-6, atol=1e-6)


def test_torch_nested_jvp_of_det_is_not_the_second_derivative():
    # documents why check_second uses finite differences: the exact Taylor coefficient of det(A + tD)
    A = _rand(3, 3, seed=3) + 3 * torch.eye(3, dtype=f64)
    D = _rand(3, 3, seed=4)
    c2 = torchlc.coeff(torch.linalg.det(A.nonstd(D, order=2)), 2)
    # det(A + tD) = det(A)·det(I + tA⁻¹D); its t² coefficient is det(A)·e2(eigenvalues of A⁻¹D)
    ev = torch.linalg.eigvals(torch.linalg.solve(A, D))
    e2 = ((ev.sum() ** 2 - (ev**2).sum()) / 2).real
    assert_close(c2, torch.linalg.det(A) * e2, **TOL)


A4 = _rand(4, 4) + 2 * torch.eye(4, dtype=f64)
B43 = _rand(4, 3, seed=5)
CASES = {
    "inv": (torch.linalg.inv, (A4,)),
    "inv_batched": (torch.linalg.inv, (_rand(2, 3, 3) + 2 * torch.eye(3, dtype=f64),)),
    "solve": (torch.linalg.solve, (A4, B43)),
    "solve_vec": (torch.linalg.solve, (A4, _rand(4, seed=7))),
    "solve_right": (lambda a, b: torch.linalg.solve(a, b, left=False), (A4, _rand(3, 4, seed=8))),
    "solve_triangular": (lambda a, b: torch.linalg.solve_triangular(a, b, upper=True), (_tri(4, True), B43)),
    "solve_triangular_right_unit": (
        lambda a, b: torch.linalg.solve_triangular(a, b, upper=False, left=False, unitriangular=True),
        (_tri(4, False), _rand(3, 4, seed=9))),
    "triangular_solve": (lambda b, a: torch.triangular_solve(b, a.tril(), upper=False)[0],
                         (B43, _tri(4, False))),
    "cholesky": (lambda a: torch.linalg.cholesky(a + a.mT), (_spd(4),)),
    "cholesky_upper": (lambda a: torch.linalg.cholesky(a + a.mT, upper=True), (_spd(4),)),
    # (torch's jvp of these uses the whole tangent of L, though the op reads only its lower triangle)
    "cholesky_solve": (lambda b, low: torch.cholesky_solve(b, low.tril()), (B43, torch.linalg.cholesky(_spd(4)))),
    "det": (torch.linalg.det, (A4,)),
    "slogdet": (torch.linalg.slogdet, (A4,)),
    "logdet": (torch.logdet, (_spd(4),)),
    "lu_factor": (torch.linalg.lu_factor, (A4,)),
    "lu_tall": (torch.linalg.lu, (_rand(5, 3),)),
    "lu_wide": (torch.linalg.lu, (_rand(3, 5),)),
    "lu_solve": (lambda a, b: torch.linalg.lu_solve(*torch.linalg.lu_factor(a), b), (A4, B43)),
    "lu_solve_adjoint_right": (lambda a, b: torch.linalg.lu_solve(*torch.linalg.lu_factor(a), b, left=False,
                                                                  adjoint=True), (A4, _rand(3, 4, seed=3))),
    "qr_tall": (torch.linalg.qr, (_rand(5, 3),)),
    "qr_square": (torch.linalg.qr, (A4,)),
    "qr_wide": (torch.linalg.qr, (_rand(3, 5),)),
    "pinv_tall": (torch.linalg.pinv, (_rand(5, 3),)),
    "pinv_wide": (torch.linalg.pinv, (_rand(3, 5),)),
    "matrix_exp": (torch.linalg.matrix_exp, (_rand(3, 3) / 2,)),
    "matrix_power_neg": (lambda a: torch.linalg.matrix_power(a, -2), (A4,)),
}
FIRST_ONLY = {
    "svd_tall": (lambda a: torch.linalg.svd(a, full_matrices=False), (_rand(5, 3),)),
    "svd_wide": (lambda a: torch.linalg.svd(a, full_matrices=False), (_rand(3, 5),)),
    "svdvals": (torch.linalg.svdvals, (_rand(4, 3),)),
    "eigh": (lambda a: torch.linalg.eigh(a + a.mT), (_rand(4, 4),)),
    "eigvalsh": (lambda a: torch.linalg.eigvalsh(a + a.mT), (_rand(4, 4),)),
}


@pytest.mark.parametrize("name", sorted(CASES) + sorted(FIRST_ONLY))
def test_first_order_matches_jvp(name):
    f, xs = {**CASES, **FIRST_ONLY}[name]
    check_first(f, xs)


@pytest.mark.parametrize("name", ["inv", "solve", "solve_triangular", "cholesky", "det", "lu_tall", "qr_tall",
                                  "qr_wide", "matrix_exp", "pinv_tall", "lu_solve"])
def test_second_order_matches_nested_jvp(name):
    f, xs = CASES[name]
    check_second(f, xs)


def test_inverse_is_the_neumann_series():
    # (A0 + εD)⁻¹ = A0⁻¹ − ε A0⁻¹DA0⁻¹ + ε² A0⁻¹DA0⁻¹DA0⁻¹ − …, truncated at the order
    A0, D = A4, _rand(4, 4, seed=11)
    P = torch.linalg.inv(A0)
    X = torch.linalg.inv(A0.nonstd(D, order=3))
    for k in range(4):
        assert_close(torchlc.coeff(X, k), (-1) ** k * torch.linalg.matrix_power(P @ D, k) @ P, **TOL)
    assert torchlc.exact_through(X) == 3


def test_fractional_exponents_and_plain_rhs():
    A0, D = A4, _rand(4, 4, seed=12)
    A = torchlc.from_terms({0: A0, "1/2": D}, order=1, dtype=f64)
    X = torch.linalg.solve(A, B43)
    # A X = B through the order
    R = A @ X
    assert_close(torchlc.coeff(R, 0), B43, **TOL)
    for q in ("1/2", 1):
        assert_close(torchlc.coeff(R, q), torch.zeros_like(B43), **TOL)


def test_refusals_name_the_op():
    sing = torch.zeros(3, 3, dtype=f64)
    with pytest.raises(NotImplementedError, match="linalg_inv_ex"):
        torch.linalg.inv(sing.nonstd(torch.eye(3, dtype=f64)))
    with pytest.raises(NotImplementedError, match="_linalg_svd"):
        torch.linalg.svd(_rand(3, 3).nonstd(order=2))
    with pytest.raises(NotImplementedError, match="_linalg_eigh"):
        torch.linalg.eigh(torch.eye(3, dtype=f64).nonstd(_rand(3, 3)))
    with pytest.raises(NotImplementedError, match="linalg_pinv"):  # no tolerance: the rank jumps
        torch.linalg.pinv(torch.ones(3, 2, dtype=f64).nonstd(_rand(3, 2)), atol=0.0, rtol=0.0)


def test_triangular_ops_read_one_triangle():
    # a tangent in the unread triangle changes nothing (finite differences agree; torch's jvp does not)
    L = torch.linalg.cholesky(_spd(4))
    vL = _rand(4, 4, seed=21)
    h = 1e-6
    # torch.func.jvp is off for cholesky_inverse and triangular_solve(transpose=True) even with
    # triangular tangents; finite differences are the reference for them
    for f in (lambda a: torch.cholesky_solve(B43, a), torch.cholesky_inverse,
              lambda a: torch.cholesky_inverse(a.mT, upper=True),
              lambda a: torch.triangular_solve(B43, a, upper=False, transpose=True)[0],
              lambda a: torch.linalg.solve_triangular(a, B43, upper=False)):
        fd = (f(L + h * vL) - f(L - h * vL)) / (2 * h)
        assert_close(torchlc.coeff(f(L.nonstd(vL)), 1), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_lstsq(shape):
    A, B = _rand(*shape), _rand(shape[0], 2, seed=31)
    check_first(lambda a, b: torch.linalg.lstsq(a, b).solution, (A, B))
    r = torch.linalg.lstsq(A.nonstd(_rand(*shape, seed=32), order=2), B)
    assert torchlc.exact_through(r.solution) == 2
