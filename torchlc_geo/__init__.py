"""torchlc_geo: geometric fixed-fan-in sparse networks (GeoSparseNet).

See docs/geosparse.md.  Main entry points: :func:`build_connectivity`, :class:`GeoSparseLinear`,
:class:`GeoSparseConfig`, :class:`GeoSparseNet`, :func:`geo_param_count`, :func:`dense_baselines`,
``torchlc_geo.sklearn.GeoSparseRegressor`` and the CLIs ``python -m torchlc_geo.bench`` /
``python -m torchlc_geo.sweep``.
"""

from .activations import (
    ACTIVATIONS,
    Heaviside,
    MixedActivation,
    PSANNActivation,
    activation_param_count,
    build_activation,
)
from .baselines import (
    DenseMLP,
    ResidualMLP,
    dense_baselines,
    match_mlp,
    match_residual_mlp,
    mlp_cost,
    residual_mlp_cost,
)
from .connectivity import (
    ConnectivityWarning,
    build_connectivity,
    candidate_offsets,
    connectivity_stats,
    connectivity_to_edges,
    edges_to_connectivity,
    local_offsets,
    resample_connectivity,
    reverse_connectivity,
)
from .layers import COMPUTE_MODES, DropPath, GeoSparseLinear, Norm, geo_sparse_linear_fm
from .model import GeoSparseBlock, GeoSparseConfig, GeoSparseNet
from .params import (
    count_params,
    geo_flops,
    geo_macs,
    geo_param_breakdown,
    geo_param_count,
    norm_param_count,
    sparse_linear_param_count,
)
from .utils import environment, seed_all

__all__ = [
    "ACTIVATIONS",
    "COMPUTE_MODES",
    "ConnectivityWarning",
    "DenseMLP",
    "DropPath",
    "GeoSparseBlock",
    "GeoSparseConfig",
    "GeoSparseLinear",
    "GeoSparseNet",
    "Heaviside",
    "MixedActivation",
    "Norm",
    "PSANNActivation",
    "ResidualMLP",
    "activation_param_count",
    "build_activation",
    "build_connectivity",
    "candidate_offsets",
    "connectivity_stats",
    "connectivity_to_edges",
    "count_params",
    "dense_baselines",
    "edges_to_connectivity",
    "environment",
    "geo_flops",
    "geo_macs",
    "geo_param_breakdown",
    "geo_param_count",
    "geo_sparse_linear_fm",
    "local_offsets",
    "match_mlp",
    "match_residual_mlp",
    "mlp_cost",
    "norm_param_count",
    "resample_connectivity",
    "residual_mlp_cost",
    "reverse_connectivity",
    "seed_all",
    "sparse_linear_param_count",
]
