"""Fused Triton kernels for the fixed fan-in layer, exposed as ``torch.library`` custom ops.

``torch.ops.torchlc_geo.geo_sparse_fm(xT, idx, weight, bias, rev_idx, rev_eid)`` is the
differentiable layer op on a feature-major input; ``gather_fm`` and ``wgrad_fm`` are its forward /
input-gradient and weight-gradient kernels (``wbgrad_fm``: weight and bias gradients in one pass);
``geo_sparse_fm_eager`` runs the same kernels from a plain ``autograd.Function`` (less host time).  On CUDA they launch Triton kernels; on the CPU they
run the Triton interpreter when ``TRITON_INTERPRET=1`` and a plain-torch reference otherwise.
"""

from .ops import (
    gather_fm,
    geo_sparse_fm,
    geo_sparse_fm_eager,
    triton_available,
    triton_interpret,
    wbgrad_fm,
    wgrad_fm,
)

__all__ = ["gather_fm", "geo_sparse_fm", "geo_sparse_fm_eager", "triton_available", "triton_interpret",
           "wbgrad_fm", "wgrad_fm"]
