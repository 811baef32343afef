"""GeoSparseNet: pre-norm residual blocks of fixed fan-in geometric layers with a dense head.

Shape conventions: the network takes ``(..., H, W)`` or ``(..., input_dim)`` inputs and returns
``(..., output_dim)``.  Inside, activations are feature-major ``(n, B)`` with ``n = H·W`` neurons in
row-major grid order, which keeps every gather a contiguous row read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._fused_block import FusedBlock
from .activations import build_activation, normalize_activation_config, normalize_activation_name
from .connectivity import build_connectivity
from .layers import COMPUTE_MODES, DropPath, GeoSparseLinear, Norm

__all__ = ["GeoSparseBlock", "GeoSparseConfig", "GeoSparseNet"]


@dataclass
class GeoSparseConfig:
    """Configuration of :class:`GeoSparseNet` (validated on construction).

    Fields: ``shape`` (H, W) of the neuron grid; ``depth`` residual blocks; fan-in ``k``;
    connectivity ``pattern``/``radius``/``offsets``/``wrap_mode``/``include_self``/``allow_repeats``
    (see :func:`torchlc_geo.build_connectivity`); ``activation`` (relu, tanh, gelu, heaviside, psann,
    phase_psann, mixed) and ``activation_config``; ``norm`` (rms, layer, none); ``drop_path_max``
    (linear schedule ``drop_path_max · i/(depth-1)`` over blocks); ``residual_alpha_init``; ``bias``;
    ``compute_mode`` of the sparse layers; ``input_shape`` (grid of the input when it differs from
    ``shape``: a geometric resampling stem; otherwise a dense stem is used whenever
    ``input_dim != H·W``); ``seed`` for connectivity and activation-layout sampling.

    Example:
        >>> cfg = GeoSparseConfig(shape=(8, 8), depth=2, k=4, activation="psann")
        >>> cfg.n
        64
    """

    shape: tuple[int, int] = (16, 16)
    depth: int = 4
    k: int = 8
    pattern: str = "local"
    radius: int | None = None
    offsets: Sequence[Sequence[int]] | None = None
    wrap_mode: str = "clamp"
    include_self: bool | None = None
    allow_repeats: bool = False
    activation: str = "relu"
    activation_config: Mapping[str, Any] | None = None
    norm: str = "rms"
    drop_path_max: float = 0.0
    residual_alpha_init: float = 0.1
    bias: bool = True
    compute_mode: str = "auto"
    input_shape: tuple[int, int] | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if min(self.shape) <= 0 or self.depth < 0 or self.k <= 0:
            raise ValueError("shape, k must be positive and depth non-negative")
        self.activation = normalize_activation_name(self.activation)
        normalize_activation_config(self.activation_config)
        if self.norm not in ("rms", "layer", "none"):
            raise ValueError("norm must be one of 'rms', 'layer', 'none'")
        if self.compute_mode not in COMPUTE_MODES:
            raise ValueError(f"compute_mode must be one of {COMPUTE_MODES}")
        if not 0.0 <= self.drop_path_max < 1.0:
            raise ValueError("drop_path_max must be in [0, 1)")
        if self.input_shape is not None:
            self.input_shape = (int(self.input_shape[0]), int(self.input_shape[1]))

    @property
    def n(self) -> int:
        return self.shape[0] * self.shape[1]

    def replace(self, **changes) -> GeoSparseConfig:
        """A copy with some fields changed.

        Example:
            >>> GeoSparseConfig().replace(depth=8).depth
            8
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the fields.

        Example:
            >>> GeoSparseConfig(shape=(4, 4)).to_dict()["shape"]
            [4, 4]
        """
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def connectivity(self, block: int, layer: int) -> torch.Tensor:
        """The ``(n, k)`` int32 connectivity of sparse layer ``layer`` (0/1) of block ``block``.

        Example:
            >>> GeoSparseConfig(shape=(4, 4), k=4).connectivity(0, 1).shape
            torch.Size([16, 4])
        """
        return build_connectivity(
            self.shape, self.k, self.pattern, radius=self.radius, offsets=self.offsets,
            wrap_mode=self.wrap_mode, include_self=self.include_self, allow_repeats=self.allow_repeats,
            seed=int(self.seed) * 1_000_003 + 2 * block + layer,
        )

    def block_activation_config(self, block: int) -> dict[str, Any]:
        cfg = dict(self.activation_config or {})
        cfg.setdefault("mix_seed", int(self.seed) * 7919 + block)
        cfg.setdefault("seed", int(self.seed) * 7919 + block)
        return cfg


class GeoSparseBlock(nn.Module):
    """Pre-norm residual block ``x + α·DropPath(fc2(act(fc1(norm(x)))))`` on feature-major ``(n, B)``.

    ``α`` is a learnable scalar initialised at ``cfg.residual_alpha_init``.

    Example:
        >>> cfg = GeoSparseConfig(shape=(4, 4), k=4)
        >>> blk = GeoSparseBlock(cfg, 0)
        >>> blk(torch.randn(16, 3)).shape
        torch.Size([16, 3])
    """

    def __init__(self, cfg: GeoSparseConfig, index: int, drop_path: float = 0.0) -> None:
        super().__init__()
        n = cfg.n
        self.norm = Norm(n, cfg.norm, dim=0)
        self.fc1 = GeoSparseLinear(n, n, cfg.connectivity(index, 0), bias=cfg.bias,
                                   compute_mode=cfg.compute_mode)
        self.act = build_activation(cfg.activation, n, cfg.block_activation_config(index), dim=0)
        self.fc2 = GeoSparseLinear(n, n, cfg.connectivity(index, 1), bias=cfg.bias,
                                   compute_mode=cfg.compute_mode)
        self.drop_path = DropPath(drop_path, sample_dim=-1)
        self.alpha = nn.Parameter(torch.full((1,), float(cfg.residual_alpha_init)))

    def _fused_ok(self, h: torch.Tensor) -> bool:
        return (
            self.fc1.resolved_mode(h) == "fused" and self.fc2.resolved_mode(h) == "fused"
            and not h.is_cuda and self.norm.kind in ("rms", "none") and isinstance(self.act, (nn.ReLU, nn.Tanh))
            and (not self.training or self.drop_path.p == 0.0)
            and h.dtype == self.fc1.weight.dtype and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self._fused_ok(h):
            fc1, fc2 = self.fc1, self.fc2
            return FusedBlock.apply(
                h.contiguous(), self.norm.weight if self.norm.kind == "rms" else None, fc1.weight, fc1.bias,
                fc2.weight, fc2.bias, self.alpha, fc1._fused_tables(h.device), fc2._fused_tables(h.device),
                "relu" if isinstance(self.act, nn.ReLU) else "tanh", self.norm.eps)
        # Same maths as h + α·DropPath(fc2(act(fc1(norm(h))))), with the per-feature affine part of
        # the norm folded into fc1's (n, k) weights and α folded into fc2's: this saves full-size
        # (n, B) multiplies forward and backward at the cost of O(n·k) work.
        fc1, fc2 = self.fc1, self.fc2
        w1, b1 = fc1.weight, fc1.bias
        if self.norm.kind != "none":
            idx = fc1.idx.reshape(-1)
            w_n = self.norm.weight.index_select(0, idx).view_as(w1)
            if self.norm.kind == "layer":
                shift = (w1 * self.norm.bias.index_select(0, idx).view_as(w1)).sum(1)
                b1 = shift if b1 is None else b1 + shift
            w1 = w1 * w_n
        z = fc1.forward_fm(self.norm.normalize(h), w1, b1)
        z = fc2.forward_fm(self.act(z), fc2.weight * self.alpha,
                           None if fc2.bias is None else fc2.bias * self.alpha)
        return h + self.drop_path(z)


class GeoSparseNet(nn.Module):
    """Deep geometric sparse network: stem → ``depth`` GeoSparse blocks → dense head.

    ``GeoSparseNet(input_dim, output_dim, cfg)`` or with config fields as keyword overrides.
    The stem is the identity when ``input_dim == H·W``, a resampling :class:`GeoSparseLinear` when
    ``cfg.input_shape`` is a different grid, and a dense ``nn.Linear`` otherwise.

    Example:
        >>> net = GeoSparseNet(64, 3, GeoSparseConfig(shape=(8, 8), depth=2, k=8))
        >>> net(torch.randn(5, 8, 8)).shape, net(torch.randn(2, 5, 64)).shape
        (torch.Size([5, 3]), torch.Size([2, 5, 3]))
        >>> GeoSparseNet(10, 1, shape=(4, 4), depth=1, k=4).stem
        Linear(in_features=10, out_features=16, bias=True)
    """

    def __init__(self, input_dim: int, output_dim: int, cfg: GeoSparseConfig | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        cfg = (cfg or GeoSparseConfig()).replace(**overrides) if overrides else (cfg or GeoSparseConfig())
        self.cfg = cfg
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        n = cfg.n
        self.shape = cfg.shape
        if cfg.input_shape is not None and cfg.input_shape != cfg.shape:
            if cfg.input_shape[0] * cfg.input_shape[1] != self.input_dim:
                raise ValueError("input_shape must have input_dim cells")
            self.stem: nn.Module = GeoSparseLinear(
                self.input_dim, n,
                build_connectivity(cfg.shape, cfg.k, cfg.pattern, radius=cfg.radius, offsets=cfg.offsets,
                                   wrap_mode=cfg.wrap_mode, include_self=cfg.include_self,
                                   allow_repeats=cfg.allow_repeats, seed=int(cfg.seed) * 1_000_003 - 1,
                                   in_shape=cfg.input_shape),
                bias=cfg.bias, compute_mode=cfg.compute_mode)
        elif self.input_dim != n:
            self.stem = nn.Linear(self.input_dim, n)
        else:
            self.stem = nn.Identity()
        d = cfg.depth
        self.blocks = nn.ModuleList(
            GeoSparseBlock(cfg, i, cfg.drop_path_max * (i / (d - 1) if d > 1 else 0.0)) for i in range(d)
        )
        self.head = nn.Linear(n, self.output_dim)

    def _flatten(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        ishape = self.cfg.input_shape or (self.shape if self.input_dim == self.cfg.n else None)
        if ishape is not None and x.ndim >= 3 and tuple(x.shape[-2:]) == tuple(ishape):
            lead = tuple(x.shape[:-2])
        elif x.shape[-1] == self.input_dim:
            lead = tuple(x.shape[:-1])
        else:
            raise ValueError(f"input must have shape (..., {self.input_dim})"
                             + (f" or (..., {ishape[0]}, {ishape[1]})" if ishape else "")
                             + f", got {tuple(x.shape)}")
        return x.reshape(-1, self.input_dim), lead

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-major hidden state ``(n, B)`` after the last block (input as in ``forward``).

        Example:
            >>> GeoSparseNet(16, 1, shape=(4, 4), depth=1, k=4).forward_features(torch.randn(3, 16)).shape
            torch.Size([16, 3])
        """
        x2, _ = self._flatten(x)
        if isinstance(self.stem, GeoSparseLinear):
            h = self.stem.forward_fm(x2.t())
        else:  # one transpose to the feature-major layout; every block then stays contiguous
            h = self.stem(x2).t().contiguous()
        for blk in self.blocks:
            h = blk(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, lead = self._flatten(x)
        h = self.forward_features(x)
        y = F.linear(h.t(), self.head.weight, self.head.bias)
        return y.reshape(*lead, self.output_dim)
