"""The general eigendecomposition (``linalg_eig``, and ``linalg_eigvals`` through it) and the
product of Householder reflectors (``linalg_householder_product``).

**eig, first order.** A = A0 + Σ_q D_q ε^q with A0 = V diag(λ) V⁻¹ (distinct eigenvalues, complex in
general). Products of infinitesimal terms are truncated at order 1, so each term is a derivative:
with P = V⁻¹ D_q V,

* λ_q = diag(P) (first-order perturbation of a simple eigenvalue);
* V_q = V X − V diag(Re diag(Vᴴ V X)), X = P ∘ E, E_ij = 1/(λ_j − λ_i) off the diagonal, 0 on it.

An eigenvector is only determined up to a complex factor: torch normalizes every column to norm 1,
and the second term keeps that norm to first order (Re(v̄ᵀ v_q) = 0); the remaining freedom, a phase
i·θ·v, is fixed as torch's forward AD fixes it (no such term), so |V| and VΛV⁻¹ are gauge-free.
Repeated eigenvalues (where the derivative of the eigenvectors is not determined) and higher orders
raise NotImplementedError; a matrix without infinitesimal terms has A0's decomposition. The results
are LCTensors with complex coefficients (:mod:`torchlc.ops.complex`).

**householder_product(A, τ)** = the first n columns of H_1 H_2 ⋯ H_k, H_i = I − τ_i v_i v_iᵀ, v_i the
i-th column of A below the diagonal with a 1 on it and zeros above (LAPACK's convention). It is a
polynomial in (A, τ), written with the LC ring operations (Q ← Q − τ_i v_i (v_iᵀ Q), from H_k down),
so it is exact at every order.
"""

from __future__ import annotations

import torch

from .._algebra import min_exact
from .._dispatch import implements
from .linalg import _M, ZERO, _any, _constant, _nie, _read, _write

aten = torch.ops.aten


@implements([aten.linalg_eig.default])
def eig(func, A):
    name = "linalg_eig"
    M = _read(A, name)
    L, V = torch.linalg.eig(M.a0)
    Ls, Vs = {ZERO: L}, {ZERO: V}
    if M.d and _constant(M):
        Ls.update({q: torch.zeros_like(L) for q in M.d})
        Vs.update({q: torch.zeros_like(V) for q in M.d})
    elif M.d:
        if M.order is None or any(2 * p <= M.order for p in M.d):
            _nie(name, "orders where products of infinitesimal terms survive (only first-order formulas "
                       "are implemented; use order=1)")
        diff = L.unsqueeze(-2) - L.unsqueeze(-1)  # [i, j] = λ_j − λ_i
        n = L.shape[-1]
        off = ~torch.eye(n, dtype=torch.bool, device=L.device)
        if _any((diff == 0) & off):
            _nie(name, "repeated eigenvalues (the derivative of the eigenvectors is not determined)")
        E = torch.where(off, 1 / torch.where(off, diff, torch.ones_like(diff)), torch.zeros_like(diff))
        for q, D in M.d.items():
            P = torch.linalg.solve(V, D.to(V.dtype) @ V)
            Ls[q] = P.diagonal(0, -2, -1)
            VX = V @ (P * E)
            Vs[q] = VX - V * (V.mH @ VX).diagonal(0, -2, -1).real.unsqueeze(-2)
    exact = min_exact(M.exact, M.order if M.d else None)
    return _write(_M(Ls, M.order, exact)), _write(_M(Vs, M.order, exact))


@implements([aten.linalg_householder_product.default])
def householder_product(func, A, tau):
    m, n = A.shape[-2:]
    k = tau.shape[-1]
    batch = torch.broadcast_shapes(A.shape[:-2], tau.shape[:-1])
    Q = torch.eye(m, n, dtype=A.dtype, device=A.device).expand(*batch, m, n)
    rows = torch.arange(m, device=A.device)
    for i in reversed(range(k)):
        col = aten.select.int(A, -1, i)  # (*batch, m)
        v = aten.where.self(rows > i, col, (rows == i).to(A.dtype))
        v = aten.unsqueeze.default(v, -1)  # (*batch, m, 1)
        t = aten.unsqueeze.default(aten.unsqueeze.default(aten.select.int(tau, -1, i), -1), -1)
        Q = aten.sub.Tensor(Q, aten.mul.Tensor(t, aten.matmul.default(v, aten.matmul.default(aten.transpose.int(v, -2, -1), Q))))
    return Q
