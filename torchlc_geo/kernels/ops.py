"""Custom ops ``torchlc_geo::{gather_fm, wgrad_fm, wbgrad_fm, geo_sparse_fm}``, their Triton
launchers, and the eager fast path :func:`geo_sparse_fm_eager`.

Two entry points compute the same kernels:

* :func:`geo_sparse_fm` — a ``torch.library`` custom op (fake-tensor rule, autograd rule, LCTensor
  rule): used under ``torch.compile`` and for tensor subclasses;
* :func:`geo_sparse_fm_eager` — a plain ``autograd.Function`` calling the launchers directly.  The
  custom-op dispatcher costs tens of microseconds of host time per call (measured), which
  dominates a whole layer at n = 65,536; eager code on plain tensors therefore takes this path.

Launch configurations come from a small heuristic (:func:`fwd_config`, :func:`wgrad_config`), not
from ``triton.autotune``: nothing benchmarks on a first call, so a first call inside CUDA-graph
capture (``torch.cuda.make_graphed_callables``) or inside a timed region is safe and deterministic.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from torchlc.kernels.launch import launch

__all__ = [
    "LAUNCH_OVERRIDE",
    "bwd_config",
    "bwd_fm",
    "fwd_config",
    "gather_fm",
    "geo_sparse_fm",
    "geo_sparse_fm_eager",
    "triton_available",
    "triton_interpret",
    "wbgrad_fm",
    "wgrad_config",
    "wgrad_fm",
]

LAUNCH_OVERRIDE: dict = {}
"""Force launch configurations: ``{"fwd": (BLOCK_O, BLOCK_B, num_warps), "bwd": (...),
"wgrad": (BLOCK_O, BLOCK_B, num_warps, batch_splits)}`` (used by the tile-sweep benchmark)."""


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def fwd_config(n_out: int, B: int, K: int, which: str = "fwd") -> tuple[int, int, int]:
    """``(BLOCK_O, BLOCK_B, num_warps)`` of the gather kernel (``which``: ``"fwd"`` or ``"bwd"``,
    the input gradient over the fan-out table) for ``n_out`` rows, batch ``B`` and fan-in ``K``.

    From the tile sweep on an H100 (bf16, B = 256, k = 8; ``python -m torchlc_geo.kernels.tune``):
    ``(16, 64, 4)`` is best or within 2% at n = 65,536 for both kernels, ``(8, 256, 8)`` at
    n = 2^20 (4-20% ahead of the others); smaller batches keep 1,024-element tiles.

    Example:
        >>> fwd_config(65536, 256, 8), fwd_config(1 << 20, 256, 8), fwd_config(256, 16, 8)
        ((16, 64, 4), (8, 256, 8), (64, 16, 4))
    """
    if which in LAUNCH_OVERRIDE:
        return LAUNCH_OVERRIDE[which]
    if B >= 256 and n_out * B >= 1 << 26:
        return 8, 256, 8
    bb = min(64, max(16, _pow2(B)))
    return 1024 // bb, bb, 4


def wgrad_config(n_out: int, B: int, K: int, n_sm: int = 132) -> tuple[int, int, int, int]:
    """``(BLOCK_O, BLOCK_B, num_warps, batch_splits)`` of the weight-gradient kernel.

    ``(16, 64, 4)`` was best at both n = 65,536 and n = 2^20 (H100, bf16, B = 256, k = 8).  The
    batch is split (split-K style: per-split partial sums, reduced afterwards) only when there are
    too few row blocks to fill ``n_sm`` multiprocessors twice.

    Example:
        >>> wgrad_config(65536, 256, 8), wgrad_config(256, 4096, 8)[3]
        ((16, 64, 4, 1), 16)
    """
    if "wgrad" in LAUNCH_OVERRIDE:
        return LAUNCH_OVERRIDE["wgrad"]
    bb = min(64, max(16, _pow2(B)))
    bo = 16
    blocks = -(-n_out // bo)
    splits = 1
    while blocks * splits < 2 * n_sm and B >= splits * 8 * bb:
        splits *= 2
    return bo, bb, 4, splits


def bwd_config(n_in: int, n_out: int, B: int, K: int) -> tuple[int, int, int] | None:
    """``(BLOCK_O, BLOCK_B, num_warps)`` of the one-launch backward kernel, or ``None`` to use the
    two separate kernels (input gradient, weight gradient) instead.

    Example:
        >>> bwd_config(65536, 65536, 256, 8)
        (16, 64, 4)
    """
    if "fused_bwd" in LAUNCH_OVERRIDE:
        return LAUNCH_OVERRIDE["fused_bwd"]
    if wgrad_config(n_out, B, K)[3] > 1:  # a split batch needs the separate weight-gradient kernel
        return None
    bb = min(64, max(16, _pow2(B)))
    return 1024 // bb, bb, 4


def triton_interpret() -> bool:
    """Whether ``TRITON_INTERPRET=1`` is set (kernels then run on CPU tensors, slowly).

    Example:
        >>> isinstance(triton_interpret(), bool)
        True
    """
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_HAS_TRITON = importlib.util.find_spec("triton") is not None


def _triton_importable() -> bool:
    return _HAS_TRITON


def triton_available(device: str | torch.device | None = None) -> bool:
    """Whether the Triton kernels can run for tensors on ``device`` (default: CUDA).

    True when ``triton`` is importable and either the device is CUDA (and available) or the
    Triton interpreter is enabled for CPU tensors.

    Example:
        >>> triton_available("cpu") in (True, False)
        True
    """
    if not _triton_importable():
        return False
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type == "cuda":
        return torch.cuda.is_available()
    return triton_interpret()


@functools.cache
def _kernels():
    """The jitted (forward/input-gradient, weight-gradient) kernels."""
    import triton

    from . import _triton_src as src

    return triton.jit(src.geo_gather_fwd), triton.jit(src.geo_wgrad), triton.jit(src.geo_bwd)


@functools.cache
def _n_sm(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


_CUDA_OK: list[bool] = []


def _use_triton(t: Tensor) -> bool:
    if t.is_cuda:
        if not _CUDA_OK:  # evaluated once: the hot path then reads a cached flag
            _CUDA_OK.append(_HAS_TRITON and torch.cuda.is_available())
        return _CUDA_OK[0]
    return _HAS_TRITON and triton_interpret()


def _launch_gather(xT: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None,
                   eid: Tensor | None = None) -> Tensor:
    fwd = _kernels()[0]
    xT = xT.contiguous()
    n_out, k = idx.shape
    B = xT.shape[1]
    y = torch.empty((n_out, B), dtype=xT.dtype, device=xT.device)
    bo, bb, nw = fwd_config(n_out, B, k, "fwd" if eid is None else "bwd")
    w = weight.contiguous()
    grid = (-(-n_out // bo), -(-B // bb))
    launch(fwd, grid, xT, idx.contiguous(), w, w if eid is None else eid.contiguous(),
           w if bias is None else bias, y, n_out, B, xT.stride(0), y.stride(0), K=k,
           HAS_BIAS=bias is not None, W_EID=eid is not None, BLOCK_O=bo, BLOCK_B=bb, num_warps=nw)
    return y


def _launch_wgrad(xT: Tensor, idx: Tensor, gyT: Tensor, out_dtype: torch.dtype,
                  with_bias: bool) -> tuple[Tensor, Tensor | None]:
    wg = _kernels()[1]
    xT, gyT = xT.contiguous(), gyT.contiguous()
    n_out, k = idx.shape
    B = gyT.shape[1]
    n_sm = _n_sm(xT.device.index or 0) if xT.is_cuda else 132
    bo, bb, nw, splits = wgrad_config(n_out, B, k, n_sm)
    per = -(-B // splits)
    per = -(-per // bb) * bb  # whole tiles per split
    splits = max(1, -(-B // per))
    acc_dtype = out_dtype if splits == 1 else torch.float32
    gw = torch.empty((splits, n_out, k), dtype=acc_dtype, device=xT.device)
    gb = torch.empty((splits, n_out), dtype=acc_dtype, device=xT.device) if with_bias else gw
    launch(wg, (-(-n_out // bo), splits), xT, idx.contiguous(), gyT, gw, gb, n_out, B, per, xT.stride(0),
           gyT.stride(0), K=k, K_P2=_pow2(k), HAS_BIAS=with_bias, BLOCK_O=bo, BLOCK_B=bb, num_warps=nw)
    if splits == 1:
        return gw[0], (gb[0] if with_bias else None)
    return gw.sum(0).to(out_dtype), (gb.sum(0).to(out_dtype) if with_bias else None)


def _launch_bwd(gyT: Tensor, xT: Tensor, idx: Tensor, rev_idx: Tensor, rev_eid: Tensor, weight: Tensor,
                need_gx: bool, need_gw: bool, need_gb: bool) -> tuple[Tensor | None, ...]:
    """``(gx, gw, gb)`` of the layer (``None`` where not needed), in one launch where possible."""
    n_in, f = rev_idx.shape
    n_out, k = idx.shape
    B = gyT.shape[1]
    cfg = bwd_config(n_in, n_out, B, k) if (need_gx and (need_gw or need_gb)) else None
    if cfg is None:
        gx = _launch_gather(gyT, rev_idx, weight, None, rev_eid) if need_gx else None
        gw = gb = None
        if need_gw or need_gb:
            gw, gb = _launch_wgrad(xT, idx, gyT, weight.dtype, need_gb)
        return gx, (gw if need_gw else None), gb
    bwd = _kernels()[2]
    bo, bb, nw = cfg
    gyT, xT, w = gyT.contiguous(), xT.contiguous(), weight.contiguous()
    gx = torch.empty((n_in, B), dtype=gyT.dtype, device=gyT.device)
    gw = torch.empty((n_out, k), dtype=weight.dtype, device=gyT.device)
    gb = torch.empty((n_out,), dtype=weight.dtype, device=gyT.device) if need_gb else gw
    n_a, n_b = -(-n_in // bo), -(-n_out // bo)
    launch(bwd, (n_a + n_b,), gyT, xT, rev_idx, rev_eid, w, gx, idx, gw, gb, n_in, n_out, B, n_a, n_b,
           gyT.stride(0), xT.stride(0), gx.stride(0), F=f, K=k, K_P2=_pow2(k), HAS_GX=True, HAS_GW=True,
           HAS_BIAS=need_gb, BLOCK_O=bo, BLOCK_B=bb, num_warps=nw)
    return gx, (gw if need_gw else None), (gb if need_gb else None)


def _ref_gather(xT, idx, weight, bias, eid):
    valid = idx >= 0
    if eid is not None:
        weight = weight.reshape(-1)[eid.clamp(min=0).to(torch.int64)]
    w = torch.where(valid, weight, 0).to(xT.dtype)
    y = F.embedding_bag(idx.clamp(min=0).to(torch.int64), xT, per_sample_weights=w, mode="sum")
    return y if bias is None else y + bias[:, None].to(y.dtype)


def _ref_wgrad(xT, idx, gyT):
    n_out, k = idx.shape
    g = xT.index_select(0, idx.reshape(-1)).reshape(n_out, k, -1).float()
    return (g * gyT.float()[:, None, :]).sum(-1).to(gyT.dtype)


@torch.library.custom_op("torchlc_geo::gather_fm", mutates_args=())
def gather_fm(xT: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None = None,
              eid: Tensor | None = None) -> Tensor:
    """``y[o, b] = Σ_j weight[o, j]·xT[idx[o, j], b] (+ bias[o])``; ``idx < 0`` entries are skipped.

    With ``eid`` (same shape as ``idx``) the weight of slot ``(o, j)`` is
    ``weight.flatten()[eid[o, j]]`` — the input gradient over the fan-out table.  Not
    differentiable by itself (it is the forward and input-gradient kernel of
    :func:`geo_sparse_fm`).

    Example:
        >>> xT = torch.arange(6.).reshape(3, 2)
        >>> idx = torch.tensor([[0, 2], [1, -1]], dtype=torch.int32)
        >>> gather_fm(xT, idx, torch.ones(2, 2)).tolist()
        [[4.0, 6.0], [2.0, 3.0]]
    """
    if _use_triton(xT):
        return _launch_gather(xT, idx, weight, bias, eid)
    return _ref_gather(xT, idx, weight, bias, eid)


@gather_fm.register_fake
def _(xT, idx, weight, bias=None, eid=None):
    return xT.new_empty((idx.shape[0], xT.shape[1]))


@torch.library.custom_op("torchlc_geo::wgrad_fm", mutates_args=())
def wgrad_fm(xT: Tensor, idx: Tensor, gyT: Tensor) -> Tensor:
    """Weight gradient ``gw[o, j] = Σ_b gyT[o, b]·xT[idx[o, j], b]`` (fp32 accumulation).

    Example:
        >>> xT = torch.ones(3, 2); idx = torch.tensor([[0, 2]], dtype=torch.int32)
        >>> wgrad_fm(xT, idx, torch.ones(1, 2)).tolist()
        [[2.0, 2.0]]
    """
    if _use_triton(xT):
        return _launch_wgrad(xT, idx, gyT, gyT.dtype, False)[0]
    return _ref_wgrad(xT, idx, gyT)


@wgrad_fm.register_fake
def _(xT, idx, gyT):
    return gyT.new_empty(idx.shape)


@torch.library.custom_op("torchlc_geo::wbgrad_fm", mutates_args=())
def wbgrad_fm(xT: Tensor, idx: Tensor, gyT: Tensor) -> tuple[Tensor, Tensor]:
    """Weight and bias gradients in one pass over ``gyT``: ``(wgrad_fm(xT, idx, gyT), gyT.sum(1))``.

    Example:
        >>> xT = torch.ones(3, 2); idx = torch.tensor([[0, 2]], dtype=torch.int32)
        >>> [t.tolist() for t in wbgrad_fm(xT, idx, torch.ones(1, 2))]
        [[[2.0, 2.0]], [2.0]]
    """
    if _use_triton(xT):
        return _launch_wgrad(xT, idx, gyT, gyT.dtype, True)
    return _ref_wgrad(xT, idx, gyT), gyT.float().sum(1).to(gyT.dtype)


@wbgrad_fm.register_fake
def _(xT, idx, gyT):
    return gyT.new_empty(idx.shape), gyT.new_empty(idx.shape[:1])


@torch.library.custom_op("torchlc_geo::bwd_fm", mutates_args=())
def bwd_fm(gyT: Tensor, xT: Tensor, idx: Tensor, rev_idx: Tensor, rev_eid: Tensor, weight: Tensor,
           with_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The layer's whole backward ``(gx, gw, gb)`` (``gb`` empty without bias), one launch on CUDA.

    Example:
        >>> from torchlc_geo import reverse_connectivity
        >>> idx = torch.tensor([[0, 2], [1, 1]], dtype=torch.int32)
        >>> ro, re = reverse_connectivity(idx, 3)
        >>> gx, gw, gb = bwd_fm(torch.ones(2, 1), torch.ones(3, 1), idx, ro, re, torch.ones(2, 2), True)
        >>> gx.tolist(), gw.tolist(), gb.tolist()
        ([[1.0], [2.0], [1.0]], [[1.0, 1.0], [1.0, 1.0]], [1.0, 1.0])
    """
    if _use_triton(xT):
        gx, gw, gb = _launch_bwd(gyT, xT, idx, rev_idx, rev_eid, weight, True, True, with_bias)
    else:
        gx = _ref_gather(gyT, rev_idx, weight, None, rev_eid)
        gw = _ref_wgrad(xT, idx, gyT).to(weight.dtype)
        gb = gyT.float().sum(1).to(weight.dtype) if with_bias else None
    return gx, gw, (gb if gb is not None else gw.new_empty((0,)))


@bwd_fm.register_fake
def _(gyT, xT, idx, rev_idx, rev_eid, weight, with_bias):
    return (gyT.new_empty((rev_idx.shape[0], gyT.shape[1])), weight.new_empty(idx.shape),
            weight.new_empty((idx.shape[0] if with_bias else 0,)))


@torch.library.custom_op("torchlc_geo::geo_sparse_fm", mutates_args=())
def geo_sparse_fm(xT: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None, rev_idx: Tensor,
                  rev_eid: Tensor) -> Tensor:
    """Differentiable fixed fan-in layer on a feature-major input (``(n_in, B) -> (n_out, B)``).

    ``rev_idx``/``rev_eid`` are the padded fan-out table of ``idx``
    (:func:`torchlc_geo.reverse_connectivity`); the input gradient is the same gather kernel run
    over that table (weights read through ``rev_eid``), so the backward needs no atomics and is
    deterministic; the weight and bias gradients come from one pass over the output gradient.

    Example:
        >>> from torchlc_geo import reverse_connectivity
        >>> idx = torch.tensor([[0, 2], [1, 1]], dtype=torch.int32)
        >>> ro, re = reverse_connectivity(idx, 3)
        >>> geo_sparse_fm(torch.ones(3, 2), idx, torch.ones(2, 2), None, ro, re).tolist()
        [[2.0, 2.0], [2.0, 2.0]]
    """
    return gather_fm(xT, idx, weight, bias)


@geo_sparse_fm.register_fake
def _(xT, idx, weight, bias, rev_idx, rev_eid):
    return xT.new_empty((idx.shape[0], xT.shape[1]))


def _setup_context(ctx, inputs, output):
    xT, idx, weight, bias, rev_idx, rev_eid = inputs
    ctx.save_for_backward(xT, idx, weight, rev_idx, rev_eid)
    ctx.has_bias = bias is not None


def _backward(ctx, gy):
    xT, idx, weight, rev_idx, rev_eid = ctx.saved_tensors
    gy = gy.contiguous()
    gx = gw = gb = None
    need_gb = ctx.has_bias and ctx.needs_input_grad[3]
    if ctx.needs_input_grad[0] and ctx.needs_input_grad[2]:
        gx, gw, gb = bwd_fm(gy, xT, idx, rev_idx, rev_eid, weight, need_gb)
        gb = gb if need_gb else None
        return gx, None, gw, gb, None, None
    if ctx.needs_input_grad[0]:
        gx = gather_fm(gy, rev_idx, weight, None, rev_eid)
    if need_gb:
        gw, gb = wbgrad_fm(xT, idx, gy)
        gw = gw.to(weight.dtype) if ctx.needs_input_grad[2] else None
    elif ctx.needs_input_grad[2]:
        gw = wgrad_fm(xT, idx, gy).to(weight.dtype)
    return gx, None, gw, gb, None, None


geo_sparse_fm.register_autograd(_backward, setup_context=_setup_context)


class _GeoSparseEager(torch.autograd.Function):
    """The Triton layer without the custom-op dispatcher (same launchers, same backward)."""

    @staticmethod
    def forward(ctx, xT, idx, weight, bias, rev_idx, rev_eid):
        xT = xT.contiguous()
        ctx.save_for_backward(xT, idx, weight, rev_idx, rev_eid)
        ctx.has_bias = bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype
        return _launch_gather(xT, idx, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        xT, idx, weight, rev_idx, rev_eid = ctx.saved_tensors
        need_gb = ctx.has_bias and ctx.needs_input_grad[3]
        gx, gw, gb = _launch_bwd(gy, xT, idx, rev_idx, rev_eid, weight, ctx.needs_input_grad[0],
                                 ctx.needs_input_grad[2], need_gb)
        if gb is not None and gb.dtype != ctx.bias_dtype:
            gb = gb.to(ctx.bias_dtype)
        return gx, None, gw, gb, None, None


def _eager_ok(*ts) -> bool:
    return all(t is None or type(t) is Tensor or type(t) is torch.nn.Parameter for t in ts)


def geo_sparse_fm_eager(xT: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None, rev_idx: Tensor,
                        rev_eid: Tensor) -> Tensor:
    """:func:`geo_sparse_fm` with less host overhead for eager code on plain tensors.

    Calls the Triton launchers from a plain ``autograd.Function``; falls back to the custom op
    under ``torch.compile``, ``torch.func`` transforms, for tensor subclasses, and where the Triton
    kernels cannot run (CPU without the interpreter).

    Example:
        >>> from torchlc_geo import reverse_connectivity
        >>> idx = torch.tensor([[0, 2], [1, 1]], dtype=torch.int32)
        >>> ro, re = reverse_connectivity(idx, 3)
        >>> geo_sparse_fm_eager(torch.ones(3, 2), idx, torch.ones(2, 2), None, ro, re).tolist()
        [[2.0, 2.0], [2.0, 2.0]]
    """
    if (not torch.compiler.is_compiling() and _use_triton(xT) and _eager_ok(xT, weight, bias)
            and not torch._C._are_functorch_transforms_active()):
        return _GeoSparseEager.apply(xT, idx, weight, bias, rev_idx, rev_eid)
    return geo_sparse_fm(xT, idx, weight, bias, rev_idx, rev_eid)


def _register_lc_rule() -> bool:
    """Register the LCTensor rule (linear: per coefficient plane, bias on the ε⁰ plane) if possible."""
    try:
        import torchlc  # noqa: PLC0415
    except Exception:  # torchlc not importable yet
        return False
    if not hasattr(torchlc, "register_linear_op"):
        return False
    for op in (torch.ops.torchlc_geo.geo_sparse_fm.default, torch.ops.torchlc_geo.gather_fm.default):
        torchlc.register_linear_op(op, lc_arg=0, bias_arg=3)
    return True


LC_RULE_REGISTERED = _register_lc_rule()
