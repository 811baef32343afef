"""Linear algebra on LC matrices A = A0 + D (A0 the ε⁰ plane, D the infinitesimal part): the series
machinery (shared with the factorizations in :mod:`torchlc.ops.linalg_decomp`) and the solves.

Solves and inverses are computed order by order with the factorization of A0 only: A X = B gives
A0 X_q = B_q − Σ_{p>0} D_p X_{q−p}, which is the exact series Σ_k (−A0⁻¹D)^k A0⁻¹ B truncated at the
order. pinv and lstsq (full-rank standard part) solve the normal equations the same way; matrix_exp
is the exponential of a block Toeplitz matrix. When A0 is singular (where the standard part does not
determine the solution), the op raises NotImplementedError naming itself. Infinite entries (negative
exponents) are not supported.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from .. import _support as S
from .._algebra import min_exact
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


def _constant(M: _M) -> bool:
    """Whether the infinitesimal part of M is exactly zero (then a factorization of A0 is one of A,
    with zero infinitesimal terms, where A0's would be refused as degenerate). False where data cannot
    be read (vmap, tracing), as :func:`_any` is."""
    d = list(M.d.values())
    return all(_inner_is_plain(t) for t in d) and not any(_any(t != 0) for t in d)


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


def _sym_from(t, lower):
    """The symmetric matrix torch's factorization reads from one triangle."""
    if lower:
        return t.tril() + t.tril(-1).transpose(-2, -1)
    return t.triu() + t.triu(1).transpose(-2, -1)


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



# -- LU series: the solve's factorization (the LU ops are in linalg_decomp) --------------------------


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
        return _pinv_kept(M, p0, atol, rtol, hermitian, name)
    At = M.map(_mT)
    if m >= n:
        G = _M(_mm(At, M, M.order), M.order, M.exact)
        X = _gen_solve(G, At, name)
    else:
        G = _M(_mm(M, At, M.order), M.order, M.exact)
        X = _gen_solve(G, M, name).map(_mT)
    X.p[ZERO] = p0
    return _write(X)


def _pinv_kept(M: _M, p0, atol, rtol, hermitian, name):
    """pinv where the tolerances drop singular values of the standard part (first order).

    torch's pinv keeps the singular values σ > tol = max(atol, rtol·σ_max) and inverts only those:
    pinv(A) = f(G) Aᵀ with G = AᵀA and f(λ) = 1/λ on the kept eigenvalues λ = σ², 0 on the dropped
    ones. In the field an infinitesimal singular value is below every positive standard tolerance, so
    the kept set is the standard part's, and f is analytic on a neighbourhood of G's spectrum (the
    tolerance separates kept from dropped values). Then, with G0 = W diag(λ) Wᵀ (W the full right
    singular basis of A0) and dG = dAᵀA0 + A0ᵀdA, the Daleckii–Krein formula gives
    d f(G) = W (F ∘ Wᵀ dG W) Wᵀ, F_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j) (f'(λ_i) = −1/λ_i² for two kept
    equal ones, 0 for two dropped ones), and d pinv = d f(G)·A0ᵀ + f(G0)·dAᵀ. Along perturbations
    that keep the rank (A = a·bᵀ with both factors perturbed) this is the derivative of pinv itself;
    a perturbation that raises the rank adds only infinitesimal singular values, which the (standard,
    positive) tolerance drops, as the field's order decides σ > tol.
    A zero tolerance (nothing can separate an infinitesimal singular value) or a singular value exactly
    at the tolerance refuses, as does a higher order; a matrix without infinitesimal terms has A0's
    pinv."""
    if _constant(M):  # A is exactly A0 (a zero matrix, say): A0's pinv, exactly
        P = {q: p0 if q == ZERO else torch.zeros_like(p0) for q in M.p}
        return _write(_M(P, M.order, M.exact))
    if M.order is None or any(2 * p <= M.order for p in M.d):
        _nie(name, "a rank-deficient standard part at orders where products of infinitesimal terms "
                   "survive (only the first-order formula is implemented; use order=1)")
    A0 = M.a0
    m, n = A0.shape[-2:]
    _, S, Vh = torch.linalg.svd(A0, full_matrices=True)
    smax = S.amax(-1, keepdim=True) if S.shape[-1] else S.new_zeros((*S.shape[:-1], 1))
    a_ = torch.as_tensor(0.0 if atol is None else atol, dtype=S.dtype, device=S.device)
    if rtol is None:
        r_ = torch.as_tensor(0.0 if atol is not None and _any(a_ > 0) else torch.finfo(S.dtype).eps * max(m, n),
                             dtype=S.dtype, device=S.device)
    else:
        r_ = torch.as_tensor(rtol, dtype=S.dtype, device=S.device)
    tol = torch.maximum(a_.unsqueeze(-1) if a_.dim() else a_, r_.unsqueeze(-1) * smax if r_.dim() else r_ * smax)
    if _any(tol <= 0):
        _nie(name, "a rank-deficient standard part with zero tolerances (pinv is discontinuous there)")
    # σ_max = rtol·σ_max with rtol = 1 holds for every ε (dropped, as torch drops σ = tol); any other
    # singular value at the tolerance is decided by infinitesimal terms that this order lacks
    always = (S == smax) & (tol == r_ * smax) & (r_ == 1)
    if _any((S == tol) & ~always):
        _nie(name, "a singular value exactly at the tolerance (the rank is undecided)")
    W = Vh.mT  # (n, n): the full right singular basis
    lam = torch.zeros((*S.shape[:-1], n), dtype=S.dtype, device=S.device)
    lam[..., : S.shape[-1]] = S * S
    kept = torch.zeros_like(lam, dtype=torch.bool)
    kept[..., : S.shape[-1]] = S > tol
    f = torch.where(kept, 1 / torch.where(kept, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
    fi, fj = f.unsqueeze(-1), f.unsqueeze(-2)
    ki, kj = kept.unsqueeze(-1), kept.unsqueeze(-2)
    diff = li - lj
    safe = torch.where(diff == 0, torch.ones_like(diff), diff)
    F = torch.where(ki & kj, -fi * fj, torch.where(ki | kj, (fi - fj) / safe, torch.zeros_like(diff)))
    f0 = W @ (f.unsqueeze(-1) * W.mT)  # f(G0)
    AW = A0 @ W
    P = {ZERO: p0}
    for q, dA in M.d.items():
        dAW = dA @ W
        K = AW.mT @ dAW
        K = K + K.mT  # Wᵀ dG W
        dF = W @ (F * K) @ W.mT
        P[q] = dF @ A0.mT + f0 @ dA.mT
    return _write(_M(P, M.order, min_exact(M.exact, M.order)))


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
