"""Parameter and FLOP accounting of GeoSparseNet, exact against ``sum(p.numel())``.

Equations (``n = H·W``, fan-in ``k``, ``b = 1`` with bias else 0, ``depth`` blocks):

* sparse layer: ``n_out·k + b·n_out``
* norm: ``rms → n``, ``layer → 2n``, ``none → 0``
* activation: ``0`` (relu, tanh, gelu, heaviside); ``psann → n·|learnable|``;
  ``phase_psann → n·(|learnable| + phase_trainable)``; ``mixed → Σ_t`` over its neuron groups
* block: ``norm + 2·(n·k + b·n) + activation + 1`` (the residual scale ``α``)
* stem: ``0`` (identity), ``n·k + b·n`` (resampling sparse stem), ``input_dim·n + n`` (dense)
* head: ``n·output_dim + output_dim``

FLOPs are ``2 ×`` multiply-accumulates of the linear maps per sample (norm, activation and bias
work not included): ``2·(stem_macs + depth·2·n·k + n·output_dim)``.
"""

from __future__ import annotations

from torch import nn

from .activations import activation_param_count
from .model import GeoSparseConfig

__all__ = [
    "count_params",
    "geo_flops",
    "geo_macs",
    "geo_param_breakdown",
    "geo_param_count",
    "norm_param_count",
    "sparse_linear_param_count",
]


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Empirical parameter count ``sum(p.numel())`` (optionally only ``requires_grad`` ones).

    Example:
        >>> count_params(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def sparse_linear_param_count(n_out: int, k: int, bias: bool = True) -> int:
    """Parameters of a :class:`GeoSparseLinear`: ``n_out·k + n_out·bias``.

    Example:
        >>> sparse_linear_param_count(256, 8)
        2304
    """
    return n_out * k + (n_out if bias else 0)


def norm_param_count(n: int, kind: str) -> int:
    """Parameters of :class:`torchlc_geo.Norm`: rms ``n``, layer ``2n``, none ``0``.

    Example:
        >>> norm_param_count(10, "layer")
        20
    """
    return {"rms": n, "layer": 2 * n, "none": 0}[kind]


def _stem(input_dim: int, cfg: GeoSparseConfig) -> tuple[int, int]:
    n = cfg.n
    if cfg.input_shape is not None and tuple(cfg.input_shape) != tuple(cfg.shape):
        return sparse_linear_param_count(n, cfg.k, cfg.bias), n * cfg.k
    if input_dim != n:
        return input_dim * n + n, input_dim * n
    return 0, 0


def geo_param_breakdown(input_dim: int, output_dim: int, cfg: GeoSparseConfig) -> dict[str, int]:
    """Analytic parameter counts per part: stem, norm, sparse, activation, alpha, head, total.

    Example:
        >>> b = geo_param_breakdown(256, 1, GeoSparseConfig(shape=(16, 16), depth=8, k=8))
        >>> b["sparse"], b["norm"], b["head"], b["total"]
        (36864, 2048, 257, 39177)
    """
    n = cfg.n
    stem, _ = _stem(input_dim, cfg)
    act = sum(activation_param_count(cfg.activation, n, cfg.block_activation_config(i))
              for i in range(cfg.depth))
    out = {
        "stem": stem,
        "norm": cfg.depth * norm_param_count(n, cfg.norm),
        "sparse": cfg.depth * 2 * sparse_linear_param_count(n, cfg.k, cfg.bias),
        "activation": act,
        "alpha": cfg.depth,
        "head": n * output_dim + output_dim,
    }
    out["total"] = sum(out.values())
    return out


def geo_param_count(input_dim: int, output_dim: int, cfg: GeoSparseConfig) -> int:
    """Analytic total parameter count of ``GeoSparseNet(input_dim, output_dim, cfg)``.

    Equals ``sum(p.numel() for p in net.parameters())`` exactly.

    Example:
        >>> from torchlc_geo import GeoSparseNet
        >>> cfg = GeoSparseConfig(shape=(8, 8), depth=3, k=4, activation="psann", norm="layer")
        >>> geo_param_count(10, 2, cfg) == count_params(GeoSparseNet(10, 2, cfg))
        True
    """
    return geo_param_breakdown(input_dim, output_dim, cfg)["total"]


def geo_macs(input_dim: int, output_dim: int, cfg: GeoSparseConfig) -> int:
    """Multiply-accumulates of the linear maps per sample.

    Example:
        >>> geo_macs(256, 1, GeoSparseConfig(shape=(16, 16), depth=8, k=8))
        33024
    """
    _, stem_macs = _stem(input_dim, cfg)
    return stem_macs + cfg.depth * 2 * cfg.n * cfg.k + cfg.n * output_dim


def geo_flops(input_dim: int, output_dim: int, cfg: GeoSparseConfig) -> int:
    """FLOPs per sample of the linear maps (``2 · geo_macs``).

    Example:
        >>> geo_flops(256, 1, GeoSparseConfig(shape=(16, 16), depth=8, k=8))
        66048
    """
    return 2 * geo_macs(input_dim, output_dim, cfg)
