"""linalg_eig/eigvals, householder_product and pinv with dropped singular values, against
torch.func.jvp (float64)."""

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)


def _check(f, xs, vs, tol=TOL):
    ys = f(*(x.nonstd(v) for x, v in zip(xs, vs)))
    p, t = jvp(f, tuple(xs), tuple(vs))
    ys, p, t = ((o,) if isinstance(o, torch.Tensor) else tuple(o) for o in (ys, p, t))
    for y, p_, t_ in zip(ys, p, t):
        assert y.dtype == p_.dtype
        assert_close(torchlc.coeff(y, 0), p_, **tol)
        assert_close(torchlc.coeff(y, 1), t_, **tol)


def _rand(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=torch.Generator().manual_seed(seed))


def test_eig_matches_jvp_gauge_free():
    A, V = _rand(2, 5, 5, seed=1), _rand(2, 5, 5, seed=2)
    _check(torch.linalg.eigvals, (A,), (V,))
    # eigenvectors up to phase: torch's gauge, compared through |V| and V Λ V⁻¹ = A
    _check(lambda a: torch.linalg.eig(a)[1].abs(), (A,), (V,))
    L, W = torch.linalg.eig(A.nonstd(V))
    recon = W @ torch.diag_embed(L) @ torch.linalg.inv(torch.linalg.eig(A)[1])  # first-order check below
    assert recon.dtype == torch.complex128
    # A W = W Λ holds term by term at first order
    lhs = A.to(torch.complex128).nonstd(V.to(torch.complex128)) @ W
    rhs = W * L.unsqueeze(-2)
    for q in (0, 1):
        assert_close(torchlc.coeff(lhs, q), torchlc.coeff(rhs, q), **TOL)


def test_eig_refuses_repeated_eigenvalues_and_higher_orders():
    with pytest.raises(NotImplementedError, match="repeated eigenvalues"):
        torch.linalg.eig(torch.eye(3, dtype=f64).nonstd(_rand(3, 3)))
    with pytest.raises(NotImplementedError, match="order=1"):
        torch.linalg.eig(_rand(3, 3).nonstd(_rand(3, 3), order=2))
    L, W = torch.linalg.eig(torch.eye(3, dtype=f64).nonstd(torch.zeros(3, 3, dtype=f64)))  # no ε part
    assert torchlc.coeff(L, 1).abs().sum() == 0


def test_householder_product_matches_jvp_and_is_exact():
    A, tau = _rand(2, 6, 4, seed=3), _rand(2, 4, seed=4)
    vA, vt = _rand(2, 6, 4, seed=5), _rand(2, 4, seed=6)
    _check(torch.linalg.householder_product, (A, tau), (vA, vt))
    # a polynomial: exact at order 2 as well (ε² term = ½ d²/dt² along the line)
    Q = torch.linalg.householder_product(A.nonstd(vA, order=2), tau.nonstd(vt, order=2))
    h = 1e-4
    f = torch.linalg.householder_product
    second = (f(A + h * vA, tau + h * vt) - 2 * f(A, tau) + f(A - h * vA, tau - h * vt)) / (2 * h * h)
    assert_close(torchlc.coeff(Q, 2), second, rtol=1e-5, atol=1e-5)


def test_pinv_with_rank_preserving_perturbations_matches_jvp():
    # pinv(a bᵀ) with both factors perturbed keeps rank 2 (OpInfo's "singular" variant)
    a, b, va, vb = _rand(5, 2, seed=7), _rand(4, 2, seed=8), _rand(5, 2, seed=9), _rand(4, 2, seed=10)
    _check(lambda a, b: torch.linalg.pinv(a @ b.mT), (a, b), (va, vb))
    _check(lambda a, b: torch.linalg.pinv(b @ a.mT), (a, b), (va, vb))


def test_pinv_with_a_tolerance_that_drops_singular_values_is_smooth():
    # rtol = 0.5 keeps only the singular values above half the largest: a smooth function of A
    A, V = _rand(5, 4, seed=11), _rand(5, 4, seed=12)
    S = torch.linalg.svdvals(A)
    assert (S < 0.5 * S[0]).any() and (S > 0.5 * S[0]).sum() >= 1
    y = torch.linalg.pinv(A.nonstd(V), rtol=0.5)
    h = 1e-6
    fd = (torch.linalg.pinv(A + h * V, rtol=0.5) - torch.linalg.pinv(A - h * V, rtol=0.5)) / (2 * h)
    assert_close(torchlc.coeff(y, 0), torch.linalg.pinv(A, rtol=0.5), **TOL)
    assert_close(torchlc.coeff(y, 1), fd, rtol=1e-6, atol=1e-6)
    # rtol = 1 drops every singular value for every ε: exactly 0
    assert torchlc.coeffs(torch.linalg.pinv(A.nonstd(V), rtol=1.0)).abs().sum() == 0


def test_pinv_refuses_where_it_is_discontinuous():
    A = torch.zeros(3, 3, dtype=f64)
    A[0, 0] = 1.0
    with pytest.raises(NotImplementedError, match="zero tolerances"):
        torch.linalg.pinv(A.nonstd(_rand(3, 3)), atol=0.0, rtol=0.0)
