"""Geometric fixed-fan-in connectivity on H×W grids.

Neurons live on a row-major grid (``idx = row * W + col``).  Every output neuron reads exactly
``k`` inputs chosen from a neighbourhood of its position in the input grid.  All builders here are
vectorised tensor code (no Python loop over neurons), return ``int32`` index tensors of shape
``(n_out, k)`` and are deterministic: the indices are computed on the CPU with integer arithmetic
(or a seeded CPU generator) and only then moved to the requested device.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

__all__ = [
    "ConnectivityWarning",
    "build_connectivity",
    "candidate_offsets",
    "connectivity_stats",
    "connectivity_to_edges",
    "edges_to_connectivity",
    "local_offsets",
    "resample_connectivity",
    "reverse_connectivity",
]

PATTERNS = ("local", "random", "hash")
WRAP_MODES = ("clamp", "wrap", "shift")
_MASK32 = 0xFFFFFFFF


class ConnectivityWarning(UserWarning):
    """Warning raised when a connectivity request cannot be met exactly (repeats, asymmetry)."""


def _as_shape(shape: Sequence[int] | int) -> tuple[int, int]:
    if isinstance(shape, int):
        shape = (1, shape)
    h, w = (int(s) for s in shape)
    if h <= 0 or w <= 0:
        raise ValueError(f"grid shape must be positive, got {(h, w)}")
    return h, w


def candidate_offsets(radius: int, include_self: bool = True) -> torch.Tensor:
    """All offsets of the Chebyshev window of ``radius``, ordered by distance then angle.

    Returns an ``(C, 2)`` int64 tensor of ``(drow, dcol)`` pairs, ``C = (2r+1)² - (not include_self)``,
    sorted by squared Euclidean distance, ties broken by angle ``atan2(-drow, dcol)`` in ``[0, 2π)``.

    Example:
        >>> candidate_offsets(1, include_self=False).tolist()[:4]
        [[0, 1], [-1, 0], [0, -1], [1, 0]]
    """
    r = int(radius)
    if r < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    ar = torch.arange(-r, r + 1)
    dr, dc = torch.meshgrid(ar, ar, indexing="ij")
    off = torch.stack([dr.reshape(-1), dc.reshape(-1)], dim=1)
    if not include_self:
        off = off[(off != 0).any(dim=1)]
    d2 = (off * off).sum(1)
    ang = torch.atan2(-off[:, 0].double(), off[:, 1].double()) % (2 * math.pi)
    # lexicographic (d2, angle): angles are in [0, 2π) < 8, so d2 * 8 + angle is an exact key order
    order = torch.argsort(d2.double() * 8.0 + ang, stable=True)
    return off[order]


def _auto_include_self(pattern: str, k: int) -> bool:
    # a point-symmetric set of non-zero offsets has even size, so the local pattern includes the
    # centre exactly when k is odd; the sampled patterns keep the centre as a candidate.
    return (k % 2 == 1) if pattern == "local" else True


def _auto_radius(k: int, include_self: bool) -> int:
    r = 0
    while (2 * r + 1) ** 2 - (0 if include_self else 1) < k:
        r += 1
    return r


def local_offsets(k: int, radius: int | None = None, include_self: bool | None = None,
                  *, allow_repeats: bool = False) -> torch.Tensor:
    """The symmetric default local stencil: ``k`` offsets taken shell by shell around the centre.

    Offsets are grouped into shells of equal distance.  Whole shells are taken while they fit; the
    last, partial shell is filled with ``±offset`` pairs evenly spread in angle, so the stencil is
    point-symmetric (its mean offset is zero) whenever the number of non-centre offsets is even.
    ``include_self=None`` includes the centre exactly when ``k`` is odd, which makes every ``k``
    symmetric; an explicit choice that breaks the symmetry gives a :class:`ConnectivityWarning`.
    ``radius=None`` picks the smallest window holding ``k`` distinct offsets.

    Example:
        >>> local_offsets(8).tolist()   # the full 3×3 ring, no centre
        [[0, 1], [-1, 0], [0, -1], [1, 0], [-1, 1], [-1, -1], [1, -1], [1, 1]]
        >>> local_offsets(5).sum(0).tolist()   # centre + cross, mean offset zero
        [0, 0]
    """
    k = int(k)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    inc = _auto_include_self("local", k) if include_self is None else bool(include_self)
    r = _auto_radius(k, inc) if radius is None else int(radius)
    cand = candidate_offsets(r, include_self=inc)
    if k > cand.shape[0]:
        return _repeat_or_raise(cand, k, allow_repeats, f"radius={r}, include_self={inc}")
    chosen: list[torch.Tensor] = []
    if inc:
        chosen.append(cand[:1])
        cand = cand[1:]
    need = k - (1 if inc else 0)
    d2 = (cand * cand).sum(1)
    pos = 0
    while need > 0:
        shell = cand[d2 == d2[pos]]
        pos += shell.shape[0]
        if shell.shape[0] <= need:
            chosen.append(shell)
            need -= shell.shape[0]
            continue
        # partial shell: representatives of ±pairs in the upper half plane, evenly spaced in angle
        half = shell.shape[0] // 2
        reps = shell[:half]  # angles in [0, π): the first half of the angle-sorted shell
        npairs = need // 2
        sel = (torch.arange(npairs) * half) // max(npairs, 1)
        picked = reps[sel]
        chosen.append(torch.cat([picked, -picked]) if npairs else picked[:0])
        need -= 2 * npairs
        if need:  # odd remainder: one unpaired offset, the stencil cannot be symmetric
            rest = [o for o in reps.tolist() if o not in picked.tolist()]
            chosen.append(torch.tensor([rest[0]], dtype=cand.dtype))
            need = 0
            warnings.warn(
                f"local pattern with k={k}, include_self={inc} cannot be point-symmetric; "
                "use include_self=None (auto) for a symmetric stencil",
                ConnectivityWarning,
                stacklevel=2,
            )
    return torch.cat(chosen)


def _repeat_or_raise(cand: torch.Tensor, k: int, allow_repeats: bool, what: str) -> torch.Tensor:
    msg = (f"k={k} exceeds the {cand.shape[0]} distinct candidates ({what}); "
           "increase radius or pass more offsets")
    if not allow_repeats:
        raise ValueError(msg + " (or allow_repeats=True to repeat candidates)")
    warnings.warn(msg + "; candidates are repeated (duplicate edges)", ConnectivityWarning, stacklevel=3)
    reps = -(-k // cand.shape[0])
    return cand.repeat(reps, 1)[:k]


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    h = h & _MASK32
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def _centres(n_out_axis: int, n_in_axis: int) -> torch.Tensor:
    # centre of output cell i mapped to the input axis: floor((i + 0.5) * n_in / n_out), exact ints
    i = torch.arange(n_out_axis, dtype=torch.int64)
    return ((2 * i + 1) * n_in_axis) // (2 * n_out_axis)


def build_connectivity(
    shape: Sequence[int] | int,
    k: int,
    pattern: str = "local",
    *,
    radius: int | None = None,
    offsets: Sequence[Sequence[int]] | torch.Tensor | None = None,
    wrap_mode: str = "clamp",
    include_self: bool | None = None,
    allow_repeats: bool = False,
    seed: int = 0,
    in_shape: Sequence[int] | int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fixed fan-in geometric connectivity: an ``(n_out, k)`` int32 tensor of input indices.

    Output neuron ``o = row * W + col`` of the ``shape = (H, W)`` grid reads inputs at
    ``centre(o) + offset`` of the input grid (``in_shape``, default ``shape``; a different input
    shape resamples: the centre is ``floor((row + ½)·H_in/H)``, likewise for columns).

    Patterns:
        * ``"local"`` — the same stencil for every neuron: the first ``k`` of ``offsets`` if given,
          else the symmetric :func:`local_offsets` stencil.
        * ``"random"`` — ``k`` distinct picks per neuron from the window (or ``offsets``), drawn
          from a CPU generator seeded with ``seed``.
        * ``"hash"`` — ``k`` distinct picks per neuron ranked by an integer hash of
          ``(seed, neuron, candidate)``; independent of generator state and device.

    ``radius=None`` picks the smallest Chebyshev window with at least ``k`` distinct candidates.
    ``wrap_mode``: ``"clamp"`` clamps coordinates to the border (border neurons may see repeated
    inputs), ``"wrap"`` is periodic (torus), ``"shift"`` shifts the window inside the grid so that
    every neuron sees ``k`` distinct inputs.  ``k`` larger than the number of distinct candidates
    raises ``ValueError`` unless ``allow_repeats=True`` (then a :class:`ConnectivityWarning`).

    Example:
        >>> idx = build_connectivity((4, 4), k=8)
        >>> idx.shape, idx.dtype
        (torch.Size([16, 8]), torch.int32)
        >>> sorted(idx[5].tolist())    # neuron (1, 1): its 3×3 ring
        [0, 1, 2, 4, 6, 8, 9, 10]
        >>> build_connectivity((8, 8), k=4, pattern="hash", seed=3).shape
        torch.Size([64, 4])
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    if wrap_mode not in WRAP_MODES:
        raise ValueError(f"wrap_mode must be one of {WRAP_MODES}, got {wrap_mode!r}")
    k = int(k)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    ho, wo = _as_shape(shape)
    hi, wi = _as_shape(in_shape) if in_shape is not None else (ho, wo)

    inc = _auto_include_self(pattern, k) if include_self is None else bool(include_self)
    if offsets is not None:
        cand = torch.as_tensor(offsets, dtype=torch.int64).reshape(-1, 2)
        if cand.shape[0] == 0:
            raise ValueError("offsets must not be empty")
        if (torch.unique(cand, dim=0).shape[0]) != cand.shape[0]:
            warnings.warn("offsets contain duplicates", ConnectivityWarning, stacklevel=2)
        what = f"{cand.shape[0]} explicit offsets"
    elif pattern == "local":
        cand = local_offsets(k, radius, include_self, allow_repeats=allow_repeats)
        what = "local stencil"
    else:
        r = _auto_radius(k, inc) if radius is None else int(radius)
        cand = candidate_offsets(r, include_self=inc)
        what = f"radius={r}, include_self={inc}"

    if pattern == "local":
        if k > cand.shape[0]:
            cand = _repeat_or_raise(cand, k, allow_repeats, what)
        cand = cand[:k]

    reach_r = int(cand[:, 0].abs().max())
    reach_c = int(cand[:, 1].abs().max())
    if wrap_mode == "shift" and (hi < 2 * reach_r + 1 or wi < 2 * reach_c + 1):
        raise ValueError(f"wrap_mode='shift' needs an input grid of at least "
                         f"{2 * reach_r + 1}x{2 * reach_c + 1}, got {hi}x{wi}")
    if wrap_mode == "wrap":
        distinct = torch.unique(torch.stack([cand[:, 0] % hi, cand[:, 1] % wi], 1), dim=0).shape[0]
        if distinct < min(k, cand.shape[0]) and distinct < torch.unique(cand, dim=0).shape[0]:
            warnings.warn(f"the {hi}x{wi} torus aliases the offsets: only {distinct} distinct "
                          f"inputs per neuron", ConnectivityWarning, stacklevel=2)

    cr = _centres(ho, hi)
    cc = _centres(wo, wi)
    if wrap_mode == "shift":
        cr = cr.clamp(reach_r, hi - 1 - reach_r)
        cc = cc.clamp(reach_c, wi - 1 - reach_c)
    n_out = ho * wo

    # coordinates of every candidate for every output row / column, wrapped or clamped: (Ho, C), (Wo, C)
    rr = cr[:, None] + cand[None, :, 0]
    cl = cc[:, None] + cand[None, :, 1]
    if wrap_mode == "wrap":
        rr, cl = rr % hi, cl % wi
    else:  # clamp; a no-op for "shift"
        rr, cl = rr.clamp(0, hi - 1), cl.clamp(0, wi - 1)
    c = cand.shape[0]
    if pattern == "local":
        idx = (rr[:, None, :] * wi + cl[None, :, :]).to(torch.int32).reshape(n_out, c)
        return idx.to(device) if device is not None else idx
    if k > c and not allow_repeats:
        raise ValueError(f"k={k} exceeds the {c} distinct candidates ({what}); increase "
                         "radius or pass more offsets (or allow_repeats=True)")
    table = (rr[:, None, :].to(torch.int32) * wi + cl[None, :, :].to(torch.int32)).reshape(n_out, c)
    if pattern == "random":
        g = torch.Generator().manual_seed(int(seed))
        keys = torch.rand(n_out, c, generator=g)
    else:
        # integer hash of (seed, neuron, candidate): a full mix per neuron, a cheap one per slot
        s0 = _fmix32(torch.tensor(int(seed), dtype=torch.int64) * 0x9E3779B1 + 0x7F4A7C15)
        hrow = _fmix32(torch.arange(n_out, dtype=torch.int64) * 0x27D4EB2F + s0)
        hcol = _fmix32(torch.arange(c, dtype=torch.int64) * 0x165667B1 + s0 + 1)
        keys = ((hrow[:, None] ^ hcol[None, :]) * 0x2C1B3C6D) & _MASK32
    # stable ranking: ties (rare for hash keys) resolve by candidate order, identical on every run
    order = torch.argsort(keys, dim=1, stable=True)
    if k > c:  # allow_repeats: cycle through the ranked candidates
        warnings.warn(f"k={k} exceeds the {c} distinct candidates ({what}); "
                      "candidates are repeated (duplicate edges)", ConnectivityWarning, stacklevel=2)
        order = order.repeat(1, -(-k // c))
    pick = order[:, :k]
    idx = table.gather(1, pick)
    return idx.to(device) if device is not None else idx


def resample_connectivity(in_shape: Sequence[int], out_shape: Sequence[int], k: int,
                          **kwargs) -> torch.Tensor:
    """Connectivity from an ``in_shape`` grid to an ``out_shape`` grid (up- or down-sampling).

    Same as ``build_connectivity(out_shape, k, in_shape=in_shape, **kwargs)``.

    Example:
        >>> idx = resample_connectivity((8, 8), (4, 4), k=4)
        >>> idx.shape, int(idx.max()) < 64
        (torch.Size([16, 4]), True)
    """
    return build_connectivity(out_shape, k, in_shape=in_shape, **kwargs)


def connectivity_to_edges(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge-list form ``(src, dst)`` of an ``(n_out, k)`` connectivity, both int32 of length n_out·k.

    Edge ``e = o * k + j`` goes from input ``idx[o, j]`` to output ``o``.

    Example:
        >>> src, dst = connectivity_to_edges(torch.tensor([[0, 1], [1, 2]], dtype=torch.int32))
        >>> src.tolist(), dst.tolist()
        ([0, 1, 1, 2], [0, 0, 1, 1])
    """
    n_out, k = idx.shape
    dst = torch.arange(n_out, dtype=torch.int32, device=idx.device).repeat_interleave(k)
    return idx.reshape(-1).to(torch.int32), dst


def edges_to_connectivity(src: torch.Tensor, dst: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
    """Inverse of :func:`connectivity_to_edges`: a fixed fan-in edge list → ``(n_out, k)`` int32.

    Edges are grouped by ``dst`` (stable, so the slot order of each output follows the list order).
    Raises ``ValueError`` if the outputs do not all have the same fan-in.

    Example:
        >>> edges_to_connectivity(torch.tensor([2, 0, 1, 1]), torch.tensor([1, 0, 0, 1])).tolist()
        [[0, 1], [2, 1]]
    """
    src = torch.as_tensor(src).reshape(-1)
    dst = torch.as_tensor(dst).reshape(-1).to(torch.int64)
    if src.shape != dst.shape:
        raise ValueError("src and dst must have the same length")
    n_out = int(dst.max()) + 1 if n_out is None else int(n_out)
    counts = torch.bincount(dst, minlength=n_out)
    if n_out == 0 or not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
        raise ValueError("edge list does not have a fixed, non-zero fan-in per output")
    order = torch.argsort(dst, stable=True)
    return src[order].to(torch.int32).reshape(n_out, int(counts[0]))


def reverse_connectivity(idx: torch.Tensor, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Transposed (fan-out) table of a connectivity, padded to the maximum fan-out.

    Returns ``(rev_out, rev_edge)``, both int32 of shape ``(n_in, F)``: for input ``i`` the outputs
    it feeds and the flat edge ids ``o * k + j``; padding slots hold ``-1``.

    Example:
        >>> ro, re = reverse_connectivity(torch.tensor([[0, 1], [1, 1]], dtype=torch.int32), 3)
        >>> ro.tolist(), re.tolist()
        ([[0, -1, -1], [0, 1, 1], [-1, -1, -1]], [[0, -1, -1], [1, 2, 3], [-1, -1, -1]])
    """
    n_out, k = idx.shape
    src = idx.reshape(-1).to(torch.int64).cpu()
    eid = torch.arange(n_out * k, dtype=torch.int64)
    order = torch.argsort(src, stable=True)
    src_s, eid_s = src[order], eid[order]
    counts = torch.bincount(src_s, minlength=int(n_in))
    f = max(int(counts.max()) if counts.numel() else 0, 1)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(src_s.numel()) - starts[src_s]
    rev_e = torch.full((int(n_in), f), -1, dtype=torch.int64)
    rev_e[src_s, slot] = eid_s
    rev_o = torch.where(rev_e >= 0, rev_e // k, -1)
    return rev_o.to(torch.int32).to(idx.device), rev_e.to(torch.int32).to(idx.device)


def connectivity_stats(idx: torch.Tensor, n_in: int | None = None) -> dict[str, float]:
    """Summary numbers of a connectivity: fan-in, distinct inputs per neuron, fan-out range.

    Example:
        >>> s = connectivity_stats(build_connectivity((6, 6), 8, wrap_mode="wrap"))
        >>> s["fan_in"], s["min_distinct"], s["fan_out_min"], s["fan_out_max"]
        (8, 8, 8, 8)
    """
    n_out, k = idx.shape
    n_in = int(idx.max()) + 1 if n_in is None else int(n_in)
    s, _ = torch.sort(idx.to(torch.int64), dim=1)
    distinct = 1 + (s[:, 1:] != s[:, :-1]).sum(1)
    fan_out = torch.bincount(idx.reshape(-1).to(torch.int64), minlength=n_in)
    return {
        "n_out": n_out,
        "n_in": n_in,
        "fan_in": k,
        "min_distinct": int(distinct.min()),
        "mean_distinct": float(distinct.double().mean()),
        "fan_out_min": int(fan_out.min()),
        "fan_out_max": int(fan_out.max()),
        "fan_out_mean": float(fan_out.double().mean()),
    }
