"""Linear algebra on LC matrices A = A0 + D (A0 the ε⁰ plane, D the infinitesimal part).

Solves, inverses and factorizations are computed order by order with the factorization of A0 only:
A X = B gives A0 X_q = B_q − Σ_{p>0} D_p X_{q−p}, which is the exact series Σ_k (−A0⁻¹D)^k A0⁻¹ B
truncated at the order. LU, Cholesky and QR follow the same pattern (each order solves the linearized
factorization with the lower orders as a known right-hand side), so they are exact at every order.
SVD and eigh use their first-order formulas, which are exact whenever products of two infinitesimal
terms are truncated (every positive exponent p has 2p > order); otherwise, or at degenerate spectra, or
when A0 is singular (where the standard part does not determine the factorization), the op raises
NotImplementedError naming itself. Infinite entries (negative exponents) are not supported.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from .. import _support as S
from .._algebra import Series, min_exact
from .._context import inner_is_plain as _inner_is_plain
from .._dispatch import implements
from .._tensor import LCTensor, series, wrap

aten = torch.ops.aten
ZERO = S.ZERO


# -- dict series helpers ------------------------------------------------------------------------------


class _M:
    """A matrix series as {exponent: plane}, with the LC order/exact metadata."""

    __slots__ = ("p", "order", "exact")

    def __init__(self, p, order=None, exact=None):
        self.p = p
        self.order = order
        self.exact = exact

    @property
    def a0(self):
        return self.p[ZERO]

    @property
    def d(self):
        return {q: v for q, v in self.p.items() if q > 0}

    def map(self, fn):
        return _M({q: fn(v) for q, v in self.p.items()}, self.order, self.exact)


def _any(mask) -> bool:
    """Host-side any() for data-dependent refusals; False where data cannot be read (vmap, tracing):
    there a singular or degenerate standard part shows up as inf/NaN coefficients instead."""
    mask = torch.as_tensor(mask)
    return _inner_is_plain(mask) and bool(mask.any())


def _nie(name, why):
    raise NotImplementedError(f"torchlc: aten.{name} on LCTensors: {why}")


def _read(x, name) -> _M:
    if isinstance(x, LCTensor):
        s = series(x)
        p = {}
        for q, plane in zip(s.support, s.planes):
            if q < 0:
                if _any(plane != 0):
                    _nie(name, "matrices with infinite entries (negative exponents) are not supported")
                continue
            p[q] = plane
        if ZERO not in p:
            p[ZERO] = torch.zeros_like(s.planes[0])
        return _M(p, s.order, s.exact)
    return _M({ZERO: torch.as_tensor(x)})


def _write(m: _M):
    qs = sorted(m.p)
    shape = torch.broadcast_shapes(*(m.p[q].shape for q in qs))
    planes = torch.stack([m.p[q].expand(shape) for q in qs])
    return wrap(planes, tuple(qs), m.order, m.exact)


def _order(*ms):
    os_ = [m.order for m in ms if m.order is not None]
    return max(os_) if os_ else None


def _grid(base, steps, order, name):
    """Exponents reachable from ``base`` by adding elements of ``steps`` (all positive), ≤ order."""
    out = set(base)
    if not steps:
        return sorted(out)
    if order is None:
        _nie(name, "an untruncated series (no order) with an infinitesimal part")
    frontier = set(out)
    while frontier:
        new = {q + p for q in frontier for p in steps if q + p <= order} - out
        out |= new
        frontier = new
    return sorted(out)


def _pairs(q, left, right):
    """(i, j) with i in left, j in right, i + j = q, both positive."""
    return [(i, q - i) for i in left if i > 0 and (q - i) in right and q - i > 0]


def _mT(t):
    return t.transpose(-2, -1)


def _mm(a: _M, b: _M, order):
    out = {}
    for i, x in a.p.items():
        for j, y in b.p.items():
            q = i + j
            if order is not None and q > order:
                continue
            t = x @ y
            out[q] = t if q not in out else out[q] + t
    return out


def _exact_solve(A: _M, B: _M, truncated):
    """Exactness of X = A⁻¹B: errors of A above A.exact enter as A⁻¹ dA X (lead ≥ min exponent of B)."""
    b = []
    if A.exact is not None:
        b.append(A.exact + min(B.p))
    if B.exact is not None:
        b.append(B.exact)
    if truncated:
        b.append(_order(A, B))
    return min_exact(*b)


def _series_solve(solve0, D, B: _M, order, left, name):
    """X with (A0 + D)X = B (left) or X(A0 + D) = B, order by order: X_q = solve0(B_q − Σ D_p X_{q−p})."""
    sup = _grid(B.p.keys(), list(D.keys()), order, name)
    X = {}
    ref = next(iter(B.p.values()))
    for q in sup:
        r = B.p.get(q)
        for p, Dp in D.items():
            if q - p in X:
                t = Dp @ X[q - p] if left else X[q - p] @ Dp
                r = -t if r is None else r - t
        if r is None:
            r = torch.zeros_like(ref)
        X[q] = solve0(r)
    return X


def _check_singular(bad, name, A: _M):
    if A.d and _any(bad):
        _nie(name, "the standard part of the matrix is singular (the LC matrix may still be invertible, "
                   "but its inverse is not determined by the standard part's factorization)")


def _eye_like(t):
    n = t.shape[-1]
    return torch.eye(n, dtype=t.dtype, device=t.device).expand(t.shape)


# -- inverse and solve --------------------------------------------------------------------------------


@implements([aten.linalg_inv_ex.default])
def inv_ex(func, A, *, check_errors=False):
    M = _read(A, "linalg_inv_ex")
    inv0, info = torch.linalg.inv_ex(M.a0, check_errors=check_errors)
    _check_singular(info != 0, "linalg_inv_ex", M)
    B = _M({ZERO: _eye_like(M.a0)})
    X = _series_solve(lambda r: inv0 @ r, M.d, B, M.order, True, "linalg_inv_ex")
    X[ZERO] = inv0
    return _write(_M(X, M.order, _exact_solve(M, B, bool(M.d)))), info


def _is_vector_rhs(A, B):
    return B.dim() == 1 or (B.dim() == A.dim() - 1 and tuple(B.shape) == tuple(A.shape[:-1]))


@implements([aten._linalg_solve_ex.default])
def solve_ex(func, A, B, *, left=True, check_errors=False):
    name = "_linalg_solve_ex"
    M, R = _read(A, name), _read(B, name)
    vec = _is_vector_rhs(A, B)
    if vec:
        R = R.map(lambda t: t.unsqueeze(-1))
    LU0, piv0, info = torch.linalg.lu_factor_ex(M.a0)
    _check_singular(info != 0, name, M)
    X = _series_solve(lambda r: torch.linalg.lu_solve(LU0, piv0, r, left=left), M.d, R, _order(M, R), left, name)
    res = _M(X, _order(M, R), _exact_solve(M, R, bool(M.d)))
    if vec:
        res = res.map(lambda t: t.squeeze(-1))
    LU = _write(_lu_series(M, LU0, piv0, name)[0]) if isinstance(A, LCTensor) else LU0
    return _write(res), LU, piv0, info


def _tri_parts(T: _M, upper, unitriangular):
    """Planes of the triangle torch reads (the unit diagonal is implicit)."""
    keep = (lambda t: t.triu()) if upper else (lambda t: t.tril())
    D = {}
    for q, t in T.d.items():
        t = keep(t)
        if unitriangular:
            t = t - torch.diag_embed(t.diagonal(0, -2, -1))
        D[q] = t
    return D


def _tri_solve(T: _M, B: _M, upper, left, unitriangular, name):
    T0 = T.a0
    if not unitriangular:
        _check_singular(T0.diagonal(0, -2, -1) == 0, name, T)
    D = _tri_parts(T, upper, unitriangular)

    def solve0(r):
        return torch.linalg.solve_triangular(T0, r, upper=upper, left=left, unitriangular=unitriangular)

    X = _series_solve(solve0, D, B, _order(T, B), left, name)
    return _M(X, _order(T, B), _exact_solve(T, B, bool(D)))


@implements([aten.linalg_solve_triangular.default])
def solve_triangular(func, A, B, *, upper, left=True, unitriangular=False):
    name = "linalg_solve_triangular"
    return _write(_tri_solve(_read(A, name), _read(B, name), upper, left, unitriangular, name))


@implements([aten.triangular_solve.default])
def triangular_solve(func, b, A, upper=True, transpose=False, unitriangular=False):
    name = "triangular_solve"
    T = _read(A, name)
    if transpose:
        T = T.map(_mT)
        upper = not upper
    X = _tri_solve(T, _read(b, name), upper, True, unitriangular, name)
    return _write(X), aten.clone.default(A)


# -- LU -----------------------------------------------------------------------------------------------


def _lu_series(M: _M, LU0, piv0, name):
    """Packed LU series of A (pivots of A0): P0ᵀA_q = Σ L_i U_j. On the leading k×k block,
    F = L0⁻¹ R_q U0⁻¹ gives L_q = L0·tril(F, −1), U_q = triu(F)·U0; the extra rows of a tall matrix give
    L_q = (R − L0 U_q) U0⁻¹, the extra columns of a wide one U_q = L0⁻¹ (R − L_q U0).
    Returns (packed LU _M, L dict, U dict, P0)."""
    a0 = M.a0
    m, n = a0.shape[-2:]
    k = min(m, n)
    P0, L0, U0 = torch.lu_unpack(LU0, piv0)
    if M.d:
        _check_singular(U0.diagonal(0, -2, -1) == 0, name, M)
    sup = _grid([ZERO], list(M.d.keys()), M.order, name)
    Ls, Us = {ZERO: L0}, {ZERO: U0}
    L0k, U0k = L0[..., :k, :], U0[..., :, :k]
    for q in sup[1:]:
        R = _mT(P0) @ M.p[q] if q in M.p else torch.zeros_like(a0)
        for i, j in _pairs(q, Ls, Us):
            R = R - Ls[i] @ Us[j]
        Rk = R[..., :k, :k]
        F = torch.linalg.solve_triangular(L0k, Rk, upper=False, unitriangular=True)
        F = torch.linalg.solve_triangular(U0k, F, upper=True, left=False)
        Lq = L0k @ F.tril(-1)
        Uq = F.triu() @ U0k
        if m > k:  # tall: the rows below the square block
            below = torch.linalg.solve_triangular(U0k, R[..., k:, :] - L0[..., k:, :] @ Uq, upper=True, left=False)
            Lq = torch.cat([Lq, below], -2)
        if n > k:  # wide: the columns right of the square block
            right = torch.linalg.solve_triangular(L0k, R[..., :, k:] - Lq @ U0[..., :, k:], upper=False,
                                                  unitriangular=True)
            Uq = torch.cat([Uq, right], -1)
        Ls[q], Us[q] = Lq, Uq
    packed = {q: _pack(Ls[q], Us[q]) if q != ZERO else LU0 for q in sup}
    exact = min_exact(M.exact, M.order if M.d else None)
    return _M(packed, M.order, exact), Ls, Us, P0


def _pack(L, U):
    """Packed m×n LU storage: strictly lower part of L (m×k) and the upper part of U (k×n)."""
    m, k = L.shape[-2:]
    n = U.shape[-1]
    out = torch.zeros((*torch.broadcast_shapes(L.shape[:-2], U.shape[:-2]), m, n), dtype=L.dtype, device=L.device)
    out = out.clone()
    out[..., :, :k] += L.tril(-1)
    out[..., :k, :] += U.triu()
    return out


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


def _sym_from(t, lower):
    """The symmetric matrix torch's factorization reads from one triangle."""
    if lower:
        return t.tril() + t.tril(-1).transpose(-2, -1)
    return t.triu() + t.triu(1).transpose(-2, -1)


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
    if M.d:
        E = _gaps(Sv * Sv, name, "singular values")
        if _any(Sv == 0):
            _nie(name, "a zero singular value (|·| kink of the singular values)")
    V = _mT(Vh)
    Uk, Vk = U[..., :, :k], V[..., :, :k]
    for q, dA in M.d.items():
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


# -- pinv and matrix_exp ------------------------------------------------------------------------------


@implements([aten.linalg_pinv.atol_rtol_tensor, aten.linalg_pinv.atol_rtol_float])
def pinv(func, A, atol=None, rtol=None, hermitian=False):
    """Full-rank standard part: pinv is (AᵀA)⁻¹Aᵀ (tall) or Aᵀ(AAᵀ)⁻¹ (wide), exact at every order."""
    name = "linalg_pinv"
    M = _read(A, name)
    # tolerances only decide the rank of the standard part (an infinitesimal change cannot cross them
    # unless a singular value sits exactly at the threshold, which the rank check below refuses)
    atol = series(atol).plane(ZERO) if isinstance(atol, LCTensor) else atol
    rtol = series(rtol).plane(ZERO) if isinstance(rtol, LCTensor) else rtol
    if hermitian:
        M = M.map(lambda t: _sym_from(t, True))
    p0 = torch.linalg.pinv(M.a0, atol=atol, rtol=rtol, hermitian=hermitian)
    m, n = M.a0.shape[-2:]
    if not M.d or M.a0.numel() == 0:
        return _write(_M({ZERO: p0}, M.order, M.exact))
    rank = torch.linalg.matrix_rank(M.a0, atol=atol, rtol=rtol, hermitian=hermitian)
    if _any(rank < min(m, n)):
        _nie(name, "a rank-deficient standard part (pinv is discontinuous there)")
    At = M.map(_mT)
    if m >= n:
        G = _M(_mm(At, M, M.order), M.order, M.exact)
        X = _gen_solve(G, At, name)
    else:
        G = _M(_mm(M, At, M.order), M.order, M.exact)
        X = _gen_solve(G, M, name).map(_mT)
    X.p[ZERO] = p0
    return _write(X)


def _gen_solve(G: _M, B: _M, name):
    LU0, piv0, info = torch.linalg.lu_factor_ex(G.a0)
    _check_singular(info != 0, name, G)
    X = _series_solve(lambda r: torch.linalg.lu_solve(LU0, piv0, r), G.d, B, _order(G, B), True, name)
    return _M(X, _order(G, B), _exact_solve(G, B, bool(G.d)))


def _frac_gcd(qs):
    den = math.lcm(*[q.denominator for q in qs])
    g = math.gcd(*[int(q * den) for q in qs])
    return Fraction(g, den)


@implements([aten.linalg_matrix_exp.default])
def matrix_exp(func, A):
    """exp of the block upper-triangular Toeplitz matrix [[A_0, A_g, A_2g, …], [0, A_0, …], …], whose first
    block row holds the truncated series of exp(A) (the embedding of R[ε]/ε^{N+1} in matrices)."""
    name = "linalg_matrix_exp"
    M = _read(A, name)
    e0 = torch.linalg.matrix_exp(M.a0)
    if not M.d:
        return _write(_M({ZERO: e0}, M.order, M.exact))
    if M.order is None:
        _nie(name, "an untruncated series (no order) with an infinitesimal part")
    g = _frac_gcd(list(M.d.keys()))
    N = int(M.order // g)
    n = M.a0.shape[-1]
    blocks = [M.p.get(k * g) for k in range(N + 1)]
    zero = torch.zeros_like(M.a0)
    rows = []
    for i in range(N + 1):
        rows.append(torch.cat([(blocks[j - i] if j >= i and blocks[j - i] is not None else zero)
                               for j in range(N + 1)], -1))
    big = torch.linalg.matrix_exp(torch.cat(rows, -2))
    out = {k * g: big[..., :n, k * n:(k + 1) * n] for k in range(N + 1)}
    out[ZERO] = e0
    return _write(_M(out, M.order, min_exact(M.exact, M.order)))


_ = Series


@implements([aten.linalg_lstsq.default])
def lstsq(func, A, B, rcond=None, *, driver=None):
    """Full-rank standard part: X = (AᵀA)⁻¹AᵀB (tall) or the minimum-norm Aᵀ(AAᵀ)⁻¹B (wide), exact at
    every order; rank-deficient standard parts (where the solution is discontinuous) are refused."""
    name = "linalg_lstsq"
    M, R = _read(A, name), _read(B, name)
    vec = _is_vector_rhs(A, B)
    if vec:
        R = R.map(lambda t: t.unsqueeze(-1))
    x0, res0, rank, sv = torch.linalg.lstsq(M.a0, R.a0, rcond=rcond, driver=driver)
    m, n = M.a0.shape[-2:]
    if not M.d and not R.d:
        X = _M({ZERO: x0}, _order(M, R), min_exact(M.exact, R.exact))
    else:
        if _any(torch.linalg.matrix_rank(M.a0) < min(m, n)):
            _nie(name, "a rank-deficient standard part (the minimum-norm solution is discontinuous there)")
        At = M.map(_mT)
        if m >= n:  # X = (AᵀA)⁻¹AᵀB
            G = _M(_mm(At, M, M.order), M.order, M.exact)
            AtB = _M(_mm(At, R, _order(M, R)), _order(M, R), min_exact(R.exact, M.exact))
            X = _gen_solve(G, AtB, name)
        else:  # minimum norm: X = Aᵀ(AAᵀ)⁻¹B
            G = _M(_mm(M, At, M.order), M.order, M.exact)
            Y = _gen_solve(G, R, name)
            X = _M(_mm(At, Y, _order(M, R)), _order(M, R), min_exact(Y.exact, M.exact))
        X.p[ZERO] = x0
    if vec:
        X = X.map(lambda t: t.squeeze(-1))
    Xo = _write(X)
    res = res0
    if res0.numel() and (M.d or R.d):
        Xm = Xo if not vec else aten.unsqueeze.default(Xo, -1)
        Bm = B if not vec else aten.unsqueeze.default(B, -1)
        r = aten.sub.Tensor(Bm, aten.matmul.default(A, Xm))
        res = aten.sum.dim_IntList(aten.mul.Tensor(r, r), [-2])
    return Xo, res, rank, sv
