"""Factorizations of LC matrices A = A0 + D (A0 the ε⁰ plane, D the infinitesimal part), with the series
machinery of :mod:`torchlc.ops.linalg`.

LU, Cholesky and QR are computed order by order with the factorization of A0 only: each order solves
the linearized factorization with the lower orders as a known right-hand side, so they are exact at
every order. SVD and eigh use their first-order formulas, which are exact whenever products of two
infinitesimal terms are truncated (every positive exponent p has 2p > order); otherwise, or at
degenerate spectra, or when A0 is singular (where the standard part does not determine the
factorization), the op raises NotImplementedError naming itself.
"""

from __future__ import annotations

import torch

from .._algebra import min_exact
from .._dispatch import implements
from .._tensor import series
from .linalg import (
    _M,
    ZERO,
    _any,
    _check_singular,
    _constant,
    _eye_like,
    _grid,
    _lu_series,
    _mm,
    _mT,
    _nie,
    _pairs,
    _read,
    _sym_from,
    _tri_solve,
    _write,
)

aten = torch.ops.aten


# -- LU -----------------------------------------------------------------------------------------------


@implements([aten.linalg_lu_factor_ex.default])
def lu_factor_ex(func, A, *, pivot=True, check_errors=False):
    name = "linalg_lu_factor_ex"
    if not pivot:
        _nie(name, "pivot=False")
    M = _read(A, name)
    LU0, piv0, info = torch.linalg.lu_factor_ex(M.a0, check_errors=check_errors)
    packed = _lu_series(M, LU0, piv0, name)[0]
    return _write(packed), piv0, info


@implements([aten.linalg_lu.default])
def linalg_lu(func, A, *, pivot=True):
    name = "linalg_lu"
    if not pivot:
        _nie(name, "pivot=False")
    M = _read(A, name)
    LU0, piv0 = torch.linalg.lu_factor(M.a0)
    packed, Ls, Us, P0 = _lu_series(M, LU0, piv0, name)
    return P0, _write(_M(Ls, packed.order, packed.exact)), _write(_M(Us, packed.order, packed.exact))


@implements([aten.lu_unpack.default])
def lu_unpack(func, LU_data, LU_pivots, unpack_data=True, unpack_pivots=True):
    name = "lu_unpack"
    M = _read(LU_data, name)
    P, L0, U0 = torch.lu_unpack(M.a0, LU_pivots, unpack_data, unpack_pivots)
    if not unpack_data:
        return P, L0, U0
    m, n = M.a0.shape[-2:]
    k = min(m, n)
    Ls = {q: (t[..., :, :k].tril(-1) if q != ZERO else L0) for q, t in M.p.items()}
    Us = {q: (t[..., :k, :].triu() if q != ZERO else U0) for q, t in M.p.items()}
    return P, _write(_M(Ls, M.order, M.exact)), _write(_M(Us, M.order, M.exact))


def _lu_factors(LU, pivots, name):
    M = _read(LU, name)
    P, _, _ = torch.lu_unpack(M.a0, pivots, unpack_data=False)
    L = _M({q: (t.tril(-1) + (_eye_like(t) if q == ZERO else 0)) for q, t in M.p.items()}, M.order, M.exact)
    U = _M({q: t.triu() for q, t in M.p.items()}, M.order, M.exact)
    return P, L, U


@implements([aten.linalg_lu_solve.default])
def lu_solve(func, LU, pivots, B, *, left=True, adjoint=False):
    name = "linalg_lu_solve"
    P, L, U = _lu_factors(LU, pivots, name)
    R = _read(B, name)
    Pt = _mT(P)
    if left and not adjoint:  # X = U⁻¹ L⁻¹ Pᵀ B
        Y = _tri_solve(L, R.map(lambda t: Pt @ t), False, True, True, name)
        X = _tri_solve(U, Y, True, True, False, name)
    elif left:  # Aᵀ X = B, Aᵀ = Uᵀ Lᵀ Pᵀ: X = P L⁻ᵀ U⁻ᵀ B
        Y = _tri_solve(U.map(_mT), R, False, True, False, name)
        X = _tri_solve(L.map(_mT), Y, True, True, True, name).map(lambda t: P @ t)
    elif not adjoint:  # X A = B: X = B U⁻¹ L⁻¹ Pᵀ
        Y = _tri_solve(U, R, True, False, False, name)
        X = _tri_solve(L, Y, False, False, True, name).map(lambda t: t @ Pt)
    else:  # X Aᵀ = B: X = B P L⁻ᵀ U⁻ᵀ
        Y = _tri_solve(L.map(_mT), R.map(lambda t: t @ P), True, False, True, name)
        X = _tri_solve(U.map(_mT), Y, False, False, False, name)
    return _write(X)


# -- determinants -------------------------------------------------------------------------------------


def _det_parts(A, name):
    M = _read(A, name)
    LU0, piv0, _ = torch.linalg.lu_factor_ex(M.a0)
    packed, _, Us, _ = _lu_series(M, LU0, piv0, name)
    n = M.a0.shape[-1]
    perm_sign = torch.where(
        ((piv0 != torch.arange(1, n + 1, device=piv0.device, dtype=piv0.dtype)).sum(-1) % 2) == 1, -1.0, 1.0
    ).to(M.a0.dtype)
    diag = _write(_M({q: u.diagonal(0, -2, -1) for q, u in Us.items()}, packed.order, packed.exact))
    return diag, perm_sign, packed, piv0


@implements([aten._linalg_det.default])
def det(func, A):
    name = "_linalg_det"
    diag, perm_sign, packed, piv0 = _det_parts(A, name)
    if diag.shape[-1] == 0:  # det of a 0×0 matrix is 1
        return torch.ones(diag.shape[:-1], dtype=diag.dtype, device=diag.device), _write(packed), piv0
    d = aten.mul.Tensor(aten.prod.dim_int(diag, -1), perm_sign)
    return d, _write(packed), piv0


@implements([aten._linalg_slogdet.default])
def slogdet(func, A):
    name = "_linalg_slogdet"
    diag, perm_sign, packed, piv0 = _det_parts(A, name)
    if diag.shape[-1] == 0:
        one = torch.ones(diag.shape[:-1], dtype=diag.dtype, device=diag.device)
        return one, torch.zeros_like(one), _write(packed), piv0
    sgn = aten.sign.default(diag)  # real-valued LC (the field sign of each pivot)
    sgn0 = series(sgn).plane(ZERO).prod(-1) * perm_sign
    logabs = aten.sum.dim_IntList(aten.log.default(aten.abs.default(diag)), [-1])
    return sgn0, logabs, _write(packed), piv0



# -- Cholesky -----------------------------------------------------------------------------------------



def _chol_series(M: _M, L0, name):
    """L_q = L0·Φ(L0⁻¹ R_q L0⁻ᵀ), R_q = A_q − Σ_{i,j>0} L_i L_jᵀ, Φ = strictly lower + half diagonal."""
    sup = _grid([ZERO], list(M.d.keys()), M.order, name)
    Ls = {ZERO: L0}
    for q in sup[1:]:
        R = M.p[q] if q in M.p else torch.zeros_like(L0)
        for i, j in _pairs(q, Ls, Ls):
            R = R - Ls[i] @ _mT(Ls[j])
        F = torch.linalg.solve_triangular(L0, R, upper=False)
        F = torch.linalg.solve_triangular(_mT(L0), F, upper=True, left=False)
        phi = F.tril(-1) + torch.diag_embed(F.diagonal(0, -2, -1) / 2)
        Ls[q] = L0 @ phi
    return _M(Ls, M.order, min_exact(M.exact, M.order if M.d else None))


@implements([aten.linalg_cholesky_ex.default])
def cholesky_ex(func, A, *, upper=False, check_errors=False):
    name = "linalg_cholesky_ex"
    M = _read(A, name).map(lambda t: _sym_from(t, not upper))
    L0, info = torch.linalg.cholesky_ex(M.a0, upper=False, check_errors=check_errors)
    _check_singular(info != 0, name, M)
    Ls = _chol_series(M, L0, name)
    if upper:
        Ls = Ls.map(_mT)
    return _write(Ls), info


def _chol_solve(B: _M, F: _M, upper, name):
    if upper:  # A = UᵀU
        Y = _tri_solve(F.map(_mT), B, False, True, False, name)
        return _tri_solve(F, Y, True, True, False, name)
    Y = _tri_solve(F, B, False, True, False, name)
    return _tri_solve(F.map(_mT), Y, True, True, False, name)


@implements([aten.cholesky_solve.default])
def cholesky_solve(func, B, L, upper=False):
    name = "cholesky_solve"
    return _write(_chol_solve(_read(B, name), _read(L, name), upper, name))


@implements([aten.cholesky_inverse.default])
def cholesky_inverse(func, L, upper=False):
    name = "cholesky_inverse"
    F = _read(L, name)
    return _write(_chol_solve(_M({ZERO: _eye_like(F.a0)}), F, upper, name))


# -- QR -----------------------------------------------------------------------------------------------


@implements([aten.linalg_qr.default])
def qr(func, A, mode="reduced"):
    name = "linalg_qr"
    M = _read(A, name)
    m, n = M.a0.shape[-2:]
    Q0, R0 = torch.linalg.qr(M.a0, mode="reduced" if mode == "r" else mode)
    if M.d and m < n:
        # A = Q [R_a | R_b]: QR of the leading m×m block, then R_b = Qᵀ A_b (a truncated product)
        Ma = M.map(lambda t: t[..., :, :m])
        Qa, Ra = qr(func, _write(Ma), "reduced")
        Qm = _read(Qa, name)
        Rb = _M(_mm(Qm.map(_mT), M.map(lambda t: t[..., :, m:]), M.order), M.order, None)
        Rm = _read(Ra, name)
        R = _M({q: torch.cat([Rm.p.get(q, torch.zeros_like(Rm.a0)), Rb.p.get(q, torch.zeros_like(Rb.a0))], -1)
                for q in set(Rm.p) | set(Rb.p)}, M.order, min_exact(Rm.exact, M.order))
        return (torch.empty(0, dtype=M.a0.dtype, device=M.a0.device) if mode == "r" else Qa), _write(R)
    if M.d:
        if mode == "complete" and m > n:
            _nie(name, "mode='complete' with m > n (the completion is not unique)")
        if _any(R0.diagonal(0, -2, -1) == 0) and _constant(M):
            sup = _grid([ZERO], list(M.d.keys()), M.order, name)  # A is exactly A0: A0's QR, exactly
            exact = min_exact(M.exact, M.order)
            Qs = {q: Q0 if q == ZERO else torch.zeros_like(Q0) for q in sup}
            Rs = {q: R0 if q == ZERO else torch.zeros_like(R0) for q in sup}
            R = _write(_M(Rs, M.order, exact))
            return (torch.empty(0, dtype=Q0.dtype, device=Q0.device) if mode == "r" else
                    _write(_M(Qs, M.order, exact))), R
        _check_singular(R0.diagonal(0, -2, -1) == 0, name, M)
    sup = _grid([ZERO], list(M.d.keys()), M.order, name)
    Qs, Rs = {ZERO: Q0}, {ZERO: R0}
    for q in sup[1:]:
        C = M.p[q] if q in M.p else torch.zeros_like(M.a0)
        Sm = torch.zeros_like(R0)
        for i, j in _pairs(q, Qs, Rs):
            C = C - Qs[i] @ Rs[j]
        for i, j in _pairs(q, Qs, Qs):
            Sm = Sm + _mT(Qs[i]) @ Qs[j]
        CR = torch.linalg.solve_triangular(R0, C, upper=True, left=False)  # C R0⁻¹
        Mq = _mT(Q0) @ CR
        K = (Mq + Sm / 2).tril(-1)
        W = -Sm / 2 + K - _mT(K)
        Rs[q] = ((Mq - W) @ R0).triu()
        Qs[q] = Q0 @ W + (CR - Q0 @ Mq)
    exact = min_exact(M.exact, M.order if M.d else None)
    R = _write(_M(Rs, M.order, exact))
    if mode == "r":
        return torch.empty(0, dtype=M.a0.dtype, device=M.a0.device), R
    return _write(_M(Qs, M.order, exact)), R


# -- spectral: first order ------------------------------------------------------------------------------


def _first_order_only(M: _M, name):
    """The first-order formulas are exact iff products of infinitesimal terms are truncated."""
    if M.d and (M.order is None or any(2 * p <= M.order for p in M.d)):
        _nie(name, "orders where products of infinitesimal terms survive (only first-order formulas "
                   "are implemented; use order=1)")


def _gaps(vals, name, what):
    """1/(v_j − v_i) off the diagonal; degenerate spectra raise."""
    diff = vals.unsqueeze(-2) - vals.unsqueeze(-1)  # [i, j] = v_j − v_i
    n = vals.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=vals.device)
    if _any((diff == 0) & off):
        _nie(name, f"repeated {what} (the derivative of the {what} is not determined)")
    return torch.where(off, 1 / torch.where(off, diff, torch.ones_like(diff)), torch.zeros_like(diff))


@implements([aten._linalg_eigh.default])
def eigh(func, A, UPLO="L", compute_v=True):
    name = "_linalg_eigh"
    M = _read(A, name).map(lambda t: _sym_from(t, UPLO == "L"))
    _first_order_only(M, name)
    lam, V = torch.linalg.eigh(M.a0, UPLO=UPLO)
    Ls, Vs = {ZERO: lam}, {ZERO: V}
    if M.d:
        F = _gaps(lam, name, "eigenvalues")
    for q, dA in M.d.items():
        P = _mT(V) @ dA @ V
        Ls[q] = P.diagonal(0, -2, -1)
        if compute_v:
            Vs[q] = V @ (F * P)
    exact = min_exact(M.exact, M.order if M.d else None)
    Vout = _write(_M(Vs, M.order, exact)) if compute_v else torch.empty(0, dtype=lam.dtype, device=lam.device)
    return _write(_M(Ls, M.order, exact)), Vout


@implements([aten._linalg_svd.default])
def svd(func, A, full_matrices=False, compute_uv=True, driver=None):
    name = "_linalg_svd"
    M = _read(A, name)
    _first_order_only(M, name)
    m, n = M.a0.shape[-2:]
    k = min(m, n)
    if M.d and full_matrices and compute_uv and m != n:
        _nie(name, "full_matrices=True with a non-square matrix (the completion is not unique)")
    U, Sv, Vh = torch.linalg.svd(M.a0, full_matrices=full_matrices, driver=driver)
    Us, Ss, Vhs = {ZERO: U}, {ZERO: Sv}, {ZERO: Vh}
    if M.d and _constant(M):  # A is exactly A0 (e.g. a zero matrix): A0's SVD, exactly
        for q in M.d:
            Us[q], Ss[q], Vhs[q] = torch.zeros_like(U), torch.zeros_like(Sv), torch.zeros_like(Vh)
    elif M.d:
        E = _gaps(Sv * Sv, name, "singular values")
        if _any(Sv == 0):
            _nie(name, "a zero singular value (|·| kink of the singular values)")
    V = _mT(Vh)
    Uk, Vk = U[..., :, :k], V[..., :, :k]
    for q, dA in M.d.items():
        if q in Ss:
            continue
        dP = _mT(Uk) @ dA @ Vk
        Ss[q] = dP.diagonal(0, -2, -1)
        if not compute_uv:
            continue
        Sd = torch.diag_embed(Sv)
        dU = Uk @ (E * (dP @ Sd + Sd @ _mT(dP)))
        dV = Vk @ (E * (Sd @ dP + _mT(dP) @ Sd))
        if m > k:
            dU = dU + (dA @ Vk - Uk @ dP) / Sv.unsqueeze(-2)
        if n > k:
            dV = dV + (_mT(dA) @ Uk - Vk @ _mT(dP)) / Sv.unsqueeze(-2)
        Us[q], Vhs[q] = dU, _mT(dV)
    exact = min_exact(M.exact, M.order if M.d else None)
    Sout = _write(_M(Ss, M.order, exact))
    if not compute_uv:
        e = torch.empty(0, dtype=Sv.dtype, device=Sv.device)
        return e, Sout, e
    return _write(_M(Us, M.order, exact)), Sout, _write(_M(Vhs, M.order, exact))

