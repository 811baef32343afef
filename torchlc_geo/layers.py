"""Fixed fan-in sparse linear layer, DropPath and norms.

Layouts: a layer maps ``(..., in_features) -> (..., out_features)``; internally (and in
:meth:`GeoSparseLinear.forward_fm`) it works feature-major, ``xT`` of shape ``(in_features, B)``,
so that the gather reads whole contiguous rows of length ``B``.

Compute modes of :class:`GeoSparseLinear` (all compute ``y[o] = Σ_j w[o, j]·x[idx[o, j]] + b[o]``):

* ``"gather"``: ``index_select`` + ``mul`` + ``sum``, autograd-derived.  Plain aten ops only, so it
  runs unchanged on tensor subclasses (``torchlc.LCTensor``), under ``torch.func`` transforms,
  forward-mode AD and double backward.
* ``"embedding_bag"``: ``F.embedding_bag(idx, xT, per_sample_weights=w)``, autograd-derived.
* ``"scatter"``: ``index_add`` over the edge list (the transposed formulation).
* ``"fused"``: embedding-bag forward with a hand-written backward that gathers over the reverse
  (fan-out) table instead of scattering; fastest eager CPU path.  First-order only.
* ``"triton"``: the fused Triton kernels of :mod:`torchlc_geo.kernels` (CUDA; CPU under
  ``TRITON_INTERPRET=1``), a ``torch.library`` custom op with an LCTensor rule.
* ``"auto"`` (default): ``"gather"`` for tensor subclasses and inside ``torch.func`` transforms,
  ``"triton"`` on CUDA when Triton is importable, else ``"fused"``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .connectivity import build_connectivity, reverse_connectivity
from .kernels.ops import _use_triton, geo_sparse_fm_eager, triton_available

__all__ = ["COMPUTE_MODES", "DropPath", "GeoSparseLinear", "Norm", "geo_sparse_linear_fm"]

COMPUTE_MODES = ("auto", "gather", "embedding_bag", "scatter", "fused", "triton")

_A = torch.ops.aten


def _functorch_active() -> bool:
    try:
        return bool(torch._C._are_functorch_transforms_active())
    except AttributeError:  # pragma: no cover - older torch
        return False


def _is_plain(t: torch.Tensor) -> bool:
    return type(t) is torch.Tensor or type(t) is nn.Parameter


class _FusedGeo(torch.autograd.Function):
    """Embedding-bag forward; backward gathers over the reverse table (no sort, no scatter)."""

    @staticmethod
    def forward(xT, weight, bias, idx_flat, offsets, offset2bag, rev_idx_flat, rev_eid_flat, rev_offsets):
        y = _A._embedding_bag_forward_only(xT, idx_flat, offsets, False, 0, False, weight.reshape(-1))[0]
        return y if bias is None else y.add_(bias[:, None])

    @staticmethod
    def setup_context(ctx, inputs, output):
        xT, weight, bias, idx_flat, offsets, offset2bag, rev_idx_flat, rev_eid_flat, rev_offsets = inputs
        ctx.save_for_backward(xT, weight, idx_flat, offsets, offset2bag, rev_idx_flat, rev_eid_flat,
                              rev_offsets)
        ctx.has_bias = bias is not None
        ctx.set_materialize_grads(True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        xT, weight, idx_flat, offsets, offset2bag, rev_idx_flat, rev_eid_flat, rev_offsets = ctx.saved_tensors
        gy = gy.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            # padding slots of the fan-out table point at an appended zero weight
            w_ext = torch.cat([weight.reshape(-1), weight.new_zeros(1)])
            w_rev = w_ext.index_select(0, rev_eid_flat).to(gy.dtype)
            gx = _A._embedding_bag_forward_only(gy, rev_idx_flat, rev_offsets, False, 0, False, w_rev)[0]
        if ctx.needs_input_grad[1]:
            gw = _A._embedding_bag_per_sample_weights_backward(
                gy, xT.contiguous(), idx_flat, offsets, offset2bag, 0
            ).view(weight.shape).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(1)
        return gx, gw, gb, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, xT_t, w_t, b_t, *_):  # pragma: no cover - the auto mode never reaches here
        raise RuntimeError("compute_mode='fused' does not support forward AD; use 'gather'")


def geo_sparse_linear_fm(xT: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None = None, mode: str = "gather") -> torch.Tensor:
    """Functional fixed fan-in layer on a feature-major input with a plain-aten compute mode.

    ``xT``: ``(n_in, B)``; ``idx``: ``(n_out, k)`` integer; ``weight``: ``(n_out, k)``;
    ``bias``: ``(n_out,)`` or ``None``.  Returns ``(n_out, B)`` with
    ``y[o] = Σ_j weight[o, j] · xT[idx[o, j]] + bias[o]``.  ``mode`` is ``"gather"``,
    ``"embedding_bag"`` or ``"scatter"`` (the modes needing no precomputed tables).

    Example:
        >>> xT = torch.arange(6.).reshape(3, 2)
        >>> idx = torch.tensor([[0, 2], [1, 1]], dtype=torch.int32)
        >>> geo_sparse_linear_fm(xT, idx, torch.ones(2, 2)).tolist()
        [[4.0, 6.0], [4.0, 6.0]]
    """
    n_out, k = idx.shape
    if mode == "gather":
        g = xT.index_select(0, idx.reshape(-1)).reshape(n_out, k, xT.shape[1])
        y = (g * weight[:, :, None]).sum(1)
    elif mode == "embedding_bag":
        y = F.embedding_bag(idx.to(torch.int64), xT, per_sample_weights=weight, mode="sum")
    elif mode == "scatter":
        src = idx.reshape(-1)
        dst = torch.arange(n_out, device=idx.device).repeat_interleave(k)
        contrib = xT.index_select(0, src) * weight.reshape(-1, 1)
        y = torch.zeros((n_out, xT.shape[1]), dtype=contrib.dtype, device=xT.device).index_add(0, dst, contrib)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return y if bias is None else y + bias[:, None]


class GeoSparseLinear(nn.Module):
    """Sparse linear layer where output ``o`` reads the ``k`` inputs ``idx[o, :]``.

    Parameters: ``weight`` ``(out, k)`` and ``bias`` ``(out,)``, both initialised ``U(±1/√k)``;
    ``idx`` is an int32 buffer built once.  Parameter count ``out·k + out·bias``.

    Example:
        >>> from torchlc_geo import build_connectivity
        >>> layer = GeoSparseLinear(64, 64, build_connectivity((8, 8), k=8))
        >>> layer(torch.randn(5, 64)).shape
        torch.Size([5, 64])
        >>> sum(p.numel() for p in layer.parameters())
        576
    """

    def __init__(self, in_features: int, out_features: int, idx: torch.Tensor, bias: bool = True,
                 compute_mode: str = "auto", *, device=None, dtype=None) -> None:
        super().__init__()
        idx = torch.as_tensor(idx)
        if idx.ndim != 2 or idx.shape[0] != out_features:
            raise ValueError(f"idx must have shape (out_features={out_features}, k), got {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= in_features):
            raise ValueError(f"idx entries must lie in [0, {in_features})")
        if compute_mode not in COMPUTE_MODES:
            raise ValueError(f"compute_mode must be one of {COMPUTE_MODES}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.k = int(idx.shape[1])
        self.compute_mode = compute_mode
        self.register_buffer("idx", idx.to(device=device, dtype=torch.int32).contiguous())
        rev_o, rev_e = reverse_connectivity(self.idx, self.in_features)
        self.register_buffer("rev_idx", rev_o.to(device), persistent=False)
        self.register_buffer("rev_eid", rev_e.to(device), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_features, self.k, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self._tables: dict = {}
        self.reset_parameters()

    @classmethod
    def from_grid(cls, shape, k: int, *, in_shape=None, bias: bool = True, compute_mode: str = "auto",
                  **conn_kwargs) -> GeoSparseLinear:
        """Build the layer and its connectivity from grid shapes (see :func:`build_connectivity`).

        Example:
            >>> GeoSparseLinear.from_grid((4, 4), k=4, in_shape=(8, 8)).idx.shape
            torch.Size([16, 4])
        """
        idx = build_connectivity(shape, k, in_shape=in_shape, **conn_kwargs)
        n_in = int(torch.tensor(in_shape if in_shape is not None else shape).prod())
        n_out = int(torch.tensor(shape).prod()) if not isinstance(shape, int) else shape
        return cls(n_in, n_out, idx, bias=bias, compute_mode=compute_mode)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # the fan-out tables are derived from idx: rebuild them if a different idx was loaded
        rev_o, rev_e = reverse_connectivity(self.idx, self.in_features)
        self.rev_idx = rev_o.to(self.idx.device)
        self.rev_eid = rev_e.to(self.idx.device)
        self._tables = {}

    def reset_parameters(self) -> None:
        """Re-draw ``weight`` and ``bias`` from ``U(-1/√k, 1/√k)``.

        Example:
            >>> layer = GeoSparseLinear(4, 2, torch.tensor([[0, 1], [2, 3]]))
            >>> layer.reset_parameters(); bool(layer.weight.abs().max() <= 2 ** -0.5)
            True
        """
        bound = 1.0 / math.sqrt(self.k)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}, "
                f"bias={self.bias is not None}, compute_mode={self.compute_mode!r}")

    def resolved_mode(self, xT: torch.Tensor) -> str:
        """The compute mode ``"auto"`` resolves to for input ``xT``.

        Example:
            >>> layer = GeoSparseLinear(4, 2, torch.tensor([[0, 1], [2, 3]]))
            >>> layer.resolved_mode(torch.randn(4, 3))
            'fused'
        """
        mode = self.compute_mode
        if mode != "auto":
            return mode
        if torch.compiler.is_compiling():
            # inductor fuses the gather-multiply-reduce itself; on CUDA keep the Triton custom op
            return "triton" if xT.is_cuda and triton_available() else "gather"
        if not _is_plain(xT) or _functorch_active():
            return "gather"
        return "triton" if xT.is_cuda and _use_triton(xT) else "fused"

    def _fused_tables(self, device):
        key = (str(device), self.idx.data_ptr())
        t = self._tables.get(key)
        if t is None:
            n_out, k = self.idx.shape
            f = self.rev_idx.shape[1]
            t = (
                self.idx.reshape(-1).to(torch.int64),
                torch.arange(0, n_out * k, k, device=device),
                torch.arange(n_out, device=device).repeat_interleave(k),
                self.rev_idx.reshape(-1).to(torch.int64).clamp(min=0),
                torch.where(self.rev_eid >= 0, self.rev_eid, n_out * k).reshape(-1).to(torch.int64),
                torch.arange(0, self.in_features * f, f, device=device),
            )
            self._tables = {key: t}
        return t

    def forward_fm(self, xT: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None | bool = True) -> torch.Tensor:
        """Feature-major forward: ``(in_features, B) -> (out_features, B)``.

        ``weight``/``bias`` override the layer's own (same shapes), e.g. with weights into which
        a preceding per-feature scale has been folded; ``bias=True`` uses the layer bias.

        Example:
            >>> layer = GeoSparseLinear(4, 2, torch.tensor([[0, 1], [2, 3]]))
            >>> layer.forward_fm(torch.randn(4, 7)).shape
            torch.Size([2, 7])
        """
        mode = self.resolved_mode(xT)
        w = self.weight if weight is None else weight
        b = self.bias if bias is True else bias
        if mode in ("gather", "embedding_bag", "scatter"):
            return geo_sparse_linear_fm(xT, self.idx, w, b, mode)
        if mode == "fused":
            if w.dtype != xT.dtype:
                xT = xT.to(w.dtype)
            return _FusedGeo.apply(xT.contiguous(), w, b, *self._fused_tables(xT.device))
        if mode == "triton":
            dev = xT.device.type
            if torch.is_autocast_enabled(dev):  # custom ops have no autocast rule: cast here
                dt = torch.get_autocast_dtype(dev)
                xT, w = xT.to(dt), w.to(dt)
                b = None if b is None else b.to(dt)
            elif w.dtype != xT.dtype:
                xT = xT.to(w.dtype)
            return geo_sparse_fm_eager(xT, self.idx, w, b, self.rev_idx, self.rev_eid)
        raise ValueError(f"unknown compute_mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features) -> (..., out_features)``."""
        lead = x.shape[:-1]
        xT = x.reshape(-1, self.in_features).t()
        return self.forward_fm(xT).t().reshape(*lead, self.out_features)


class DropPath(nn.Module):
    """Stochastic depth on a feature-major tensor ``(n, B)``: drops whole samples (columns).

    Identity in eval mode or with ``p == 0``; kept samples are rescaled by ``1/(1-p)``.

    Example:
        >>> dp = DropPath(0.5).eval()
        >>> torch.equal(dp(torch.ones(3, 4)), torch.ones(3, 4))
        True
    """

    def __init__(self, p: float = 0.0, sample_dim: int = -1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError("drop-path probability must be in [0, 1)")
        self.p = float(p)
        self.sample_dim = sample_dim

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = [1] * x.ndim
        shape[self.sample_dim] = x.shape[self.sample_dim]
        keep = (torch.rand(shape, device=x.device) >= self.p).to(x.dtype)
        return x * (keep / (1.0 - self.p))


class Norm(nn.Module):
    """RMS or layer norm over the feature dimension ``dim`` (default 0: feature-major).

    ``kind``: ``"rms"`` (learnable scale, ``n`` parameters), ``"layer"`` (scale and shift, ``2n``)
    or ``"none"``.  Plain tensors use the fused ``F.rms_norm``/``F.layer_norm`` kernels when the
    feature dim is last; everything else uses elementary ops (so LCTensor inputs work).

    Example:
        >>> y = Norm(4, "rms", dim=-1)(torch.tensor([[3.0, -3.0, 3.0, -3.0]]))
        >>> [round(v, 4) for v in y[0].tolist()]
        [1.0, -1.0, 1.0, -1.0]
    """

    def __init__(self, features: int, kind: str = "rms", dim: int = 0, eps: float = 1e-6) -> None:
        super().__init__()
        if kind not in ("rms", "layer", "none"):
            raise ValueError("norm must be one of 'rms', 'layer', 'none'")
        self.kind, self.dim, self.eps, self.features = kind, dim, eps, features
        if kind != "none":
            self.weight = nn.Parameter(torch.ones(features))
        if kind == "layer":
            self.bias = nn.Parameter(torch.zeros(features))

    def extra_repr(self) -> str:
        return f"{self.features}, kind={self.kind!r}, dim={self.dim}"

    def _shape(self, x):
        s = [1] * x.ndim
        s[self.dim] = self.features
        return s

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The norm without its affine part (``x/rms(x)`` or ``(x-μ)/σ``; identity for ``none``).

        Example:
            >>> Norm(2, "layer", dim=-1).normalize(torch.tensor([[1.0, 3.0]])).tolist()
            [[-0.9999995231628418, 0.9999995231628418]]
        """
        if self.kind == "none":
            return x
        if self.kind == "layer":
            x = x - x.mean(self.dim, keepdim=True)
        return x * torch.rsqrt((x * x).mean(self.dim, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        last = self.dim in (-1, x.ndim - 1)
        if last and _is_plain(x) and not _functorch_active():
            if self.kind == "rms":
                return F.rms_norm(x, (self.features,), self.weight, self.eps)
            return F.layer_norm(x, (self.features,), self.weight, self.bias, self.eps)
        if self.kind == "rms":
            r = torch.rsqrt((x * x).mean(self.dim, keepdim=True) + self.eps)
            return x * r * self.weight.reshape(self._shape(x))
        mu = x.mean(self.dim, keepdim=True)
        xc = x - mu
        r = torch.rsqrt((xc * xc).mean(self.dim, keepdim=True) + self.eps)
        return xc * r * self.weight.reshape(self._shape(x)) + self.bias.reshape(self._shape(x))
