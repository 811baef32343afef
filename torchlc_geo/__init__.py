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
