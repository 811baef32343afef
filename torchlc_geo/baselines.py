"""Dense baselines (MLP and residual MLP) matched to a GeoSparseNet.

Three matchings are provided (all within 1% where the size grid allows, found by a search over
the width of the hidden layers plus one last width that fine-tunes the count):

* **equal parameters** — ``sum(p.numel())`` matched;
* **equal FLOPs** — linear-map multiply-accumulates per sample matched (:func:`geo_macs`);
* **equal neurons** — the same width ``n = H·W`` and the same number of blocks / hidden layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .activations import build_activation
from .layers import Norm
from .model import GeoSparseConfig
from .params import count_params, geo_macs, geo_param_count, norm_param_count

__all__ = [
    "DenseMLP",
    "ResidualMLP",
    "dense_baselines",
    "match_mlp",
    "match_residual_mlp",
    "mlp_cost",
    "residual_mlp_cost",
]


class DenseMLP(nn.Module):
    """Plain MLP ``input → widths[0] → … → widths[-1] → output`` with an activation between layers.

    Example:
        >>> m = DenseMLP(4, 1, [8, 3])
        >>> m(torch.randn(2, 4)).shape, count_params(m)
        (torch.Size([2, 1]), 71)
    """

    def __init__(self, input_dim: int, output_dim: int, widths: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        dims = [int(input_dim), *[int(w) for w in widths], int(output_dim)]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(build_activation(activation, dims[i + 1], dim=-1))
        self.net = nn.Sequential(*layers)
        self.widths = list(dims[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.net[0].in_features:  # (..., H, W) input
            x = x.flatten(-2)
        return self.net(x)


class _ResBlock(nn.Module):
    def __init__(self, width: int, hidden: int, norm: str, activation: str, alpha: float) -> None:
        super().__init__()
        self.norm = Norm(width, norm, dim=-1)
        self.fc1 = nn.Linear(width, hidden)
        self.act = build_activation(activation, hidden, dim=-1)
        self.fc2 = nn.Linear(hidden, width)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))

    def forward(self, x):
        return x + self.alpha * self.fc2(self.act(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    """Dense counterpart of GeoSparseNet: stem → ``depth`` pre-norm residual blocks → head.

    Block ``i`` is ``x + α·fc2(act(fc1(norm(x))))`` with ``fc1: width → hidden[i]``; the stem is the
    identity when ``input_dim == width`` and dense otherwise (as in GeoSparseNet).

    Example:
        >>> m = ResidualMLP(16, 1, width=16, depth=2)
        >>> m(torch.randn(3, 16)).shape
        torch.Size([3, 1])
    """

    def __init__(self, input_dim: int, output_dim: int, width: int, depth: int,
                 hidden: Sequence[int] | int | None = None, norm: str = "rms", activation: str = "relu",
                 residual_alpha_init: float = 0.1) -> None:
        super().__init__()
        hidden = [width] * depth if hidden is None else ([hidden] * depth if isinstance(hidden, int) else list(hidden))
        self.input_dim, self.width, self.hidden = int(input_dim), int(width), hidden
        self.stem = nn.Identity() if input_dim == width else nn.Linear(input_dim, width)
        self.blocks = nn.Sequential(*[_ResBlock(width, h, norm, activation, residual_alpha_init) for h in hidden])
        self.head = nn.Linear(width, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_dim:
            x = x.flatten(-2)
        return self.head(self.blocks(self.stem(x)))


def mlp_cost(input_dim: int, output_dim: int, widths: Sequence[int], what: str = "params") -> int:
    """Parameters (``what="params"``) or MACs (``"macs"``) of :class:`DenseMLP`.

    Example:
        >>> mlp_cost(4, 1, [8, 3]), mlp_cost(4, 1, [8, 3], "macs")
        (71, 59)
    """
    dims = [input_dim, *widths, output_dim]
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return macs if what == "macs" else macs + sum(dims[1:])


def residual_mlp_cost(input_dim: int, output_dim: int, width: int, hidden: Sequence[int], norm: str = "rms",
                      what: str = "params") -> int:
    """Parameters or MACs of :class:`ResidualMLP` (exact, including norms and ``α``).

    Example:
        >>> m = ResidualMLP(10, 2, width=6, depth=3, hidden=[6, 6, 4], norm="layer")
        >>> residual_mlp_cost(10, 2, 6, [6, 6, 4], "layer") == count_params(m)
        True
    """
    stem_macs = 0 if input_dim == width else input_dim * width
    macs = stem_macs + sum(2 * width * h for h in hidden) + width * output_dim
    if what == "macs":
        return macs
    params = macs + (0 if input_dim == width else width) + output_dim
    params += sum(h + width + norm_param_count(width, norm) + 1 for h in hidden)
    return params


def _best(cands, target):
    return min(cands, key=lambda c: (abs(c[0] - target), -len(c[1]) if isinstance(c[1], list) else 0))


def match_mlp(target: int, input_dim: int, output_dim: int, hidden_layers: int, what: str = "params") -> list[int]:
    """Hidden widths ``[w]*(L-1) + [w_last]`` of a :class:`DenseMLP` whose cost is closest to ``target``.

    Searches ``w`` around the analytic solution and, for each, the best last width.

    Example:
        >>> w = match_mlp(39177, 256, 1, 8)
        >>> abs(mlp_cost(256, 1, w) - 39177) / 39177 < 0.01
        True
    """
    L = int(hidden_layers)
    if L <= 0:
        return []
    b = 1 if what == "params" else 0
    # (L-1)·w² + (input + L + output·0)·w ≈ target  → approximate w
    a2 = max(L - 1, 0)
    a1 = input_dim + output_dim + b * L
    w0 = (target / a1) if a2 == 0 else (-a1 + math.sqrt(a1 * a1 + 4 * a2 * target)) / (2 * a2)
    cands = []
    for w in range(max(1, int(w0) - 3), int(w0) + 4):
        base = [w] * (L - 1)
        prev = base[-1] if base else input_dim
        fixed = mlp_cost(input_dim, output_dim, base + [0], what)
        per = prev + output_dim + b
        wl = max(1, round((target - fixed) / per))
        for x in (wl - 1, wl, wl + 1):
            if x >= 1:
                cands.append((mlp_cost(input_dim, output_dim, base + [x], what), base + [x]))
    return _best(cands, target)[1]


def match_residual_mlp(target: int, input_dim: int, output_dim: int, depth: int, norm: str = "rms",
                       what: str = "params") -> tuple[int, list[int]]:
    """``(width, hidden)`` of a :class:`ResidualMLP` whose cost is closest to ``target``.

    The residual width ``w`` is searched; the last block's hidden width fine-tunes the count.

    Example:
        >>> w, h = match_residual_mlp(39177, 256, 1, 8)
        >>> abs(residual_mlp_cost(256, 1, w, h) - 39177) / 39177 < 0.01
        True
    """
    d = max(int(depth), 1)
    cands = []
    for w in range(1, 4097):
        full = residual_mlp_cost(input_dim, output_dim, w, [w] * d, norm, what)
        base = residual_mlp_cost(input_dim, output_dim, w, [w] * (d - 1) + [1], norm, what)
        if base > target * 1.02 and cands:
            break
        per = 2 * w + (1 if what == "params" else 0)
        h = max(1, round((target - base) / per) + 1)
        for x in (h - 1, h, h + 1):
            if 1 <= x:
                hid = [w] * (d - 1) + [x]
                cands.append((residual_mlp_cost(input_dim, output_dim, w, hid, norm, what), (w, hid)))
        if full > target * 4:
            break
    return _best(cands, target)[1]


def dense_baselines(input_dim: int, output_dim: int, cfg: GeoSparseConfig, kind: str = "resmlp",
                    activation: str | None = None) -> dict[str, tuple[nn.Module, dict]]:
    """Dense baselines of ``GeoSparseNet(input_dim, output_dim, cfg)``: equal params/FLOPs/neurons.

    ``kind`` is ``"resmlp"`` (pre-norm residual MLP, the default) or ``"mlp"`` (plain MLP with
    ``cfg.depth`` hidden layers).  Returns ``{name: (model, info)}`` with ``info`` holding the
    widths, parameter count, MACs and relative mismatch against the sparse net.  Parametric
    activations (psann) are replaced by ``relu`` in the baselines unless ``activation`` is given.

    Example:
        >>> b = dense_baselines(256, 1, GeoSparseConfig(shape=(16, 16), depth=8, k=8))
        >>> sorted(b), abs(b["equal_params"][1]["rel_diff"]) < 0.01
        (['equal_flops', 'equal_neurons', 'equal_params'], True)
    """
    act = activation or (cfg.activation if cfg.activation in ("relu", "tanh", "gelu") else "relu")
    target_p = geo_param_count(input_dim, output_dim, cfg)
    target_m = geo_macs(input_dim, output_dim, cfg)
    out: dict[str, tuple[nn.Module, dict]] = {}
    for name, what, target in (("equal_params", "params", target_p), ("equal_flops", "macs", target_m)):
        if kind == "mlp":
            widths = match_mlp(target, input_dim, output_dim, cfg.depth, what)
            model: nn.Module = DenseMLP(input_dim, output_dim, widths, act)
            info = {"widths": widths}
        else:
            w, hid = match_residual_mlp(target, input_dim, output_dim, cfg.depth, cfg.norm, what)
            model = ResidualMLP(input_dim, output_dim, w, cfg.depth, hid, cfg.norm, act, cfg.residual_alpha_init)
            info = {"width": w, "hidden": hid}
        out[name] = (model, info)
    n = cfg.n
    if kind == "mlp":
        model = DenseMLP(input_dim, output_dim, [n] * cfg.depth, act)
        info = {"widths": [n] * cfg.depth}
    else:
        model = ResidualMLP(input_dim, output_dim, n, cfg.depth, None, cfg.norm, act, cfg.residual_alpha_init)
        info = {"width": n, "hidden": [n] * cfg.depth}
    out["equal_neurons"] = (model, info)
    for name, (model, info) in out.items():
        p = count_params(model)
        macs = (mlp_cost(input_dim, output_dim, info["widths"], "macs") if kind == "mlp"
                else residual_mlp_cost(input_dim, output_dim, info["width"], info["hidden"], cfg.norm, "macs"))
        ref = target_m if name == "equal_flops" else target_p
        val = macs if name == "equal_flops" else p
        info.update(kind=kind, params=p, macs=macs, sparse_params=target_p, sparse_macs=target_m,
                    rel_diff=(val - ref) / ref)
    return out
