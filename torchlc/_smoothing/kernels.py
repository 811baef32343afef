"""Kernels and the jump structure of every discontinuous primitive (semantics §6).

The smoothed derivative of a primitive at z is g(z) = Σ_k J_k · K_h(z − z_k): z_k its jump points near
z, J_k the exact jumps there, K_h(u) = K(u/h)/h a unit-mass kernel. This module knows the kernels K
(with their derivatives, for higher ε-orders) and the jumps of each primitive; it works on plain
tensors only.

Jumps: heaviside 1 at 0; sign 2 at 0; floor/ceil 1 at every integer; round 1 at every half-integer;
trunc 1 at every nonzero integer; ``round(x, decimals=k)`` 10⁻ᵏ at (n + ½)·10⁻ᵏ; a comparison
``a > b`` (``>=``, ``<``, ``<=``) is a step of height ±1 in a − b at 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import _taylor as TY

__all__ = ["Kernel", "KERNELS", "SINGLE_JUMPS", "SQRT2PI", "get_kernel", "jump_density", "taylor_coeffs"]

SQRT2PI = math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class Kernel:
    """A unit-mass kernel K(u) in standard units (K_h(z) = K(z/h)/h).

    ``derivs(u, n)`` returns [K(u), K'(u), …, K^{(n-1)}(u)] (used for higher ε-orders);
    ``radius``: |u| beyond which K is (numerically) zero, for summing periodic jump lattices;
    ``peak``: K(0)."""

    name: str
    density: Callable
    derivs: Callable
    radius: float
    peak: float


def _gauss_density(u):
    return torch.exp(-0.5 * u * u) / SQRT2PI


def _gauss_derivs(u, n):
    # K^{(j)}(u) = (−1)^j He_j(u) φ(u), He_{j+1} = u He_j − j He_{j−1}
    phi = _gauss_density(u)
    out, he_prev, he = [], torch.zeros_like(u), torch.ones_like(u)
    for j in range(n):
        out.append((-1) ** j * he * phi)
        he_prev, he = he, u * he - j * he_prev
    return out


def _logistic_density(u):
    s = torch.sigmoid(u)
    return s * (1 - s)


def _logistic_derivs(u, n):
    # Taylor series of σ at u via 1/(1 + exp(−u − t)); K^{(j)} = (j+1)!·[t^{j+1}]σ
    if n == 0:
        return []
    # K is even: K^{(j)}(u) = (−1)^j K^{(j)}(|u|), and exp(−|u|) cannot overflow
    K = n + 1
    au = u.abs()
    negu = TY.identity_series(-au, K)
    negu = [negu[0]] + [-c for c in negu[1:]]
    e = TY.t_exp(negu)
    sig = TY.t_recip([1 + e[0]] + e[1:])
    flip = torch.where(u < 0, -1.0, 1.0).to(u.dtype)
    return [sig[j + 1] * math.factorial(j + 1) * (flip if j % 2 else 1) for j in range(n)]


def _compact(poly, dpolys):
    """A kernel supported on |u| ≤ 1: density and derivatives from the polynomial and its derivatives."""

    def density(u):
        return torch.where(u.abs() <= 1, poly(u), torch.zeros_like(u))

    def derivs(u, n):
        inside = u.abs() <= 1
        fs = [poly, *dpolys]
        out = []
        for j in range(n):
            v = fs[j](u) if j < len(fs) else torch.zeros_like(u)
            out.append(torch.where(inside, v, torch.zeros_like(u)))
        return out

    return density, derivs


_tri = _compact(lambda u: 1 - u.abs(), [lambda u: -torch.sign(u)])
_uni = _compact(lambda u: torch.full_like(u, 0.5), [])
_epa = _compact(lambda u: 0.75 * (1 - u * u), [lambda u: -1.5 * u, lambda u: torch.full_like(u, -1.5)])

KERNELS = {
    "gaussian": Kernel("gaussian", _gauss_density, _gauss_derivs, 8.6, 1 / SQRT2PI),
    "logistic": Kernel("logistic", _logistic_density, _logistic_derivs, 37.0, 0.25),
    "triangle": Kernel("triangle", _tri[0], _tri[1], 1.0, 1.0),
    "uniform": Kernel("uniform", _uni[0], _uni[1], 1.0, 0.5),
    "epanechnikov": Kernel("epanechnikov", _epa[0], _epa[1], 1.0, 0.75),
}
# aliases: the sigmoid-relaxation surrogate is the logistic kernel; the clipped straight-through
# estimator of sign (hardtanh STE) is 2 × uniform of width 1, i.e. sign's jump 2 times K = ½ on |u| ≤ 1
KERNELS["sigmoid"] = KERNELS["logistic"]
KERNELS["ste"] = KERNELS["uniform"]
KERNELS["normal"] = KERNELS["gaussian"]


def get_kernel(k) -> Kernel:
    """A :class:`Kernel` or the kernel registered under the name ``k``."""
    if isinstance(k, Kernel):
        return k
    try:
        return KERNELS[k]
    except KeyError:
        raise ValueError(f"torchlc.smoothing: unknown kernel {k!r}; choose one of {sorted(KERNELS)} "
                         "or pass a torchlc.smoothing.Kernel") from None


# -- jump structure of each primitive -------------------------------------------------------------

# primitives with a single jump at 0: the jump's height
SINGLE_JUMPS = {"heaviside": 1.0, "step": 1.0, "gt": 1.0, "ge": 1.0, "lt": -1.0, "le": -1.0, "sign": 2.0}
_MAX_LATTICE = 256  # at most 2·256+1 jump points of floor/round/… are summed per element


def _lattice_terms(z, h, kern, offset, skip_zero=False):
    """(z_k, J_k) pairs of a unit-jump lattice n + offset within the kernel's reach of z."""
    M = min(int(math.ceil(kern.radius * h)) + 1, _MAX_LATTICE)
    n0 = torch.round(z - offset)
    for j in range(-M, M + 1):
        zk = n0 + (j + offset)
        if skip_zero:
            yield zk, (zk != 0).to(z.dtype)
        else:
            yield zk, None


def _jumps(name, z, h, kern):
    """(z_k, J_k) of the primitive ``name`` near argument z; J_k: None = 1, or a tensor/number."""
    if name in ("heaviside", "step", "gt", "ge"):
        return [(0.0, None)]
    if name in ("lt", "le"):
        return [(0.0, -1.0)]
    if name == "sign":
        return [(0.0, 2.0)]
    if name in ("floor", "ceil"):
        return _lattice_terms(z, h, kern, 0.0)
    if name in ("round", "round_decimals"):
        return _lattice_terms(z, h, kern, 0.5)
    if name == "trunc":
        return _lattice_terms(z, h, kern, 0.0, skip_zero=True)
    raise KeyError(name)


def _rescale(name, z, h, decimals):
    """round to ``decimals``: the argument becomes y = z·10^k and the width h·10^k."""
    if name == "round_decimals" and decimals:
        p = 10.0**decimals
        return z * p, h * p
    return z, h


def jump_density(name, z, width, kernel="gaussian", decimals=0):
    """g(z) = Σ_k J_k K_h(z − z_k): the smoothed derivative of primitive ``name`` at plain tensor z."""
    kern = get_kernel(kernel)
    z, h = _rescale(name, z, width, decimals)
    acc = None
    for zk, J in _jumps(name, z, h, kern):
        t = kern.density((z - zk) / h) if not (isinstance(zk, float) and zk == 0.0) else kern.density(z / h)
        if J is not None:
            t = t * J
        acc = t if acc is None else acc + t
    return acc / h


def taylor_coeffs(name, z, width, kern, K, decimals=0):
    """Taylor coefficients c_0..c_{K-1} (c_0 = 0) of the smoothed increment F_h(z + t) − F_h(z)."""
    coeffs = [torch.zeros_like(z) for _ in range(K)]
    if K == 1:
        return coeffs
    z, h = _rescale(name, z, width, decimals)
    p = 10.0**decimals if name == "round_decimals" else 1.0
    for zk, J in _jumps(name, z, h, kern):
        ds = kern.derivs((z - zk) / h, K - 1)
        for m in range(1, K):
            t = ds[m - 1] * (p ** (m - 1) / (h**m * math.factorial(m)))  # J = 1/p, h here is h·p
            if J is not None:
                t = t * J
            coeffs[m] = coeffs[m] + t
    return coeffs
