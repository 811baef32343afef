"""torchlc_geo: geometric fixed-fan-in sparse networks (GeoSparseNet)."""

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

__all__ = [
    "COMPUTE_MODES",
    "ConnectivityWarning",
    "DropPath",
    "GeoSparseLinear",
    "Norm",
    "build_connectivity",
    "candidate_offsets",
    "connectivity_stats",
    "connectivity_to_edges",
    "edges_to_connectivity",
    "geo_sparse_linear_fm",
    "local_offsets",
    "resample_connectivity",
    "reverse_connectivity",
]
from .activations import (  # noqa: E402
    ACTIVATIONS,
    Heaviside,
    MixedActivation,
    PSANNActivation,
    activation_param_count,
    build_activation,
)
from .model import GeoSparseBlock, GeoSparseConfig, GeoSparseNet  # noqa: E402
from .params import (  # noqa: E402
    count_params,
    geo_flops,
    geo_macs,
    geo_param_breakdown,
    geo_param_count,
    norm_param_count,
    sparse_linear_param_count,
)
from .baselines import (  # noqa: E402
    DenseMLP,
    ResidualMLP,
    dense_baselines,
    match_mlp,
    match_residual_mlp,
    mlp_cost,
    residual_mlp_cost,
)
from .utils import seed_all  # noqa: E402

__all__ += [
    "ACTIVATIONS", "Heaviside", "MixedActivation", "PSANNActivation", "activation_param_count",
    "build_activation", "GeoSparseBlock", "GeoSparseConfig", "GeoSparseNet", "count_params",
    "geo_flops", "geo_macs", "geo_param_breakdown", "geo_param_count", "norm_param_count",
    "sparse_linear_param_count", "DenseMLP", "ResidualMLP", "dense_baselines", "match_mlp",
    "match_residual_mlp", "mlp_cost", "residual_mlp_cost", "seed_all",
]
