"""Custom ops ``torchlc_geo::{gather_fm, wgrad_fm, geo_sparse_fm}`` and their Triton launchers."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gather_fm", "geo_sparse_fm", "triton_available", "triton_interpret", "wgrad_fm"]

BLOCK_O = 16
BLOCK_B = 64


def triton_interpret() -> bool:
    """Whether ``TRITON_INTERPRET=1`` is set (kernels then run on CPU tensors, slowly).

    Example:
        >>> isinstance(triton_interpret(), bool)
        True
    """
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available(device: str | torch.device | None = None) -> bool:
    """Whether the Triton kernels can run for tensors on ``device`` (default: CUDA).

    True when ``triton`` is importable and either the device is CUDA (and available) or the
    Triton interpreter is enabled for CPU tensors.

    Example:
        >>> triton_available("cpu") in (True, False)
        True
    """
    if importlib.util.find_spec("triton") is None:
        return False
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type == "cuda":
        return torch.cuda.is_available()
    return triton_interpret()


@functools.cache
def _kernels(interpret: bool):
    """(forward kernel, weight-grad kernel, autotuned?) — autotuned over tile shapes on the GPU."""
    import triton

    from . import _triton_src as src

    fwd, wg = triton.jit(src.geo_gather_fwd), triton.jit(src.geo_wgrad)
    if interpret:
        return fwd, wg, False
    fcfg = [triton.Config({"BLOCK_O": bo, "BLOCK_B": bb}, num_warps=nw)
            for bo, bb, nw in [(16, 64, 4), (32, 64, 4), (16, 128, 4), (32, 128, 8), (64, 64, 8),
                               (8, 256, 4), (16, 256, 8), (4, 256, 4)]]
    wcfg = [triton.Config({"BLOCK_O": bo, "BLOCK_B": bb}, num_warps=nw)
            for bo, bb, nw in [(16, 64, 4), (32, 128, 4), (64, 64, 8), (16, 256, 8), (128, 64, 8)]]
    return (triton.autotune(fcfg, key=["n_out", "B", "K"])(fwd),
            triton.autotune(wcfg, key=["n_out", "B", "K"])(wg), True)


def _use_triton(t: Tensor) -> bool:
    return (t.is_cuda or triton_interpret()) and triton_available(t.device)


def _launch_gather(xT, idx, weight, bias):
    import triton

    fwd, _, tuned = _kernels(triton_interpret())
    xT = xT.contiguous()
    n_out, k = idx.shape
    B = xT.shape[1]
    y = torch.empty((n_out, B), dtype=xT.dtype, device=xT.device)
    has_bias = bias is not None
    args = (xT, idx.contiguous(), weight.contiguous(), bias if has_bias else weight, y, n_out, B,
            xT.stride(0), y.stride(0))
    if tuned:
        grid = lambda m: (triton.cdiv(n_out, m["BLOCK_O"]), triton.cdiv(B, m["BLOCK_B"]))
        fwd[grid](*args, K=k, HAS_BIAS=has_bias)
    else:
        grid = (triton.cdiv(n_out, BLOCK_O), triton.cdiv(B, BLOCK_B))
        fwd[grid](*args, K=k, HAS_BIAS=has_bias, BLOCK_O=BLOCK_O, BLOCK_B=BLOCK_B)
    return y


def _launch_wgrad(xT, idx, gyT, out_dtype):
    import triton

    _, wg, tuned = _kernels(triton_interpret())
    xT, gyT = xT.contiguous(), gyT.contiguous()
    n_out, k = idx.shape
    gw = torch.empty((n_out, k), dtype=out_dtype, device=xT.device)
    args = (xT, idx.contiguous(), gyT, gw, n_out, xT.shape[1], xT.stride(0), gyT.stride(0))
    if tuned:
        wg[lambda m: (triton.cdiv(n_out, m["BLOCK_O"]), k)](*args, K=k)
    else:
        wg[(triton.cdiv(n_out, BLOCK_O), k)](*args, K=k, BLOCK_O=BLOCK_O, BLOCK_B=BLOCK_B)
    return gw


@torch.library.custom_op("torchlc_geo::gather_fm", mutates_args=())
def gather_fm(xT: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y[o, b] = Σ_j weight[o, j]·xT[idx[o, j], b] (+ bias[o])``; ``idx < 0`` entries are skipped.

    Not differentiable by itself (it is the forward and input-gradient kernel of
    :func:`geo_sparse_fm`).

    Example:
        >>> xT = torch.arange(6.).reshape(3, 2)
        >>> idx = torch.tensor([[0, 2], [1, -1]], dtype=torch.int32)
        >>> gather_fm(xT, idx, torch.ones(2, 2)).tolist()
        [[4.0, 6.0], [2.0, 3.0]]
    """
    if _use_triton(xT):
        return _launch_gather(xT, idx, weight, bias)
    valid = idx >= 0
    w = torch.where(valid, weight, 0).to(xT.dtype)
    y = F.embedding_bag(idx.clamp(min=0).to(torch.int64), xT, per_sample_weights=w, mode="sum")
    return y if bias is None else y + bias[:, None].to(y.dtype)


@gather_fm.register_fake
def _(xT, idx, weight, bias=None):
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
        return _launch_wgrad(xT, idx, gyT, gyT.dtype)
    n_out, k = idx.shape
    g = xT.index_select(0, idx.reshape(-1)).reshape(n_out, k, -1).float()
    return (g * gyT.float()[:, None, :]).sum(-1).to(gyT.dtype)


@wgrad_fm.register_fake
def _(xT, idx, gyT):
    return gyT.new_empty(idx.shape)


@torch.library.custom_op("torchlc_geo::geo_sparse_fm", mutates_args=())
def geo_sparse_fm(xT: Tensor, idx: Tensor, weight: Tensor, bias: Tensor | None, rev_idx: Tensor,
                  rev_eid: Tensor) -> Tensor:
    """Differentiable fixed fan-in layer on a feature-major input (``(n_in, B) -> (n_out, B)``).

    ``rev_idx``/``rev_eid`` are the padded fan-out table of ``idx``
    (:func:`torchlc_geo.reverse_connectivity`); the input gradient is the same gather kernel run
    over that table, so the backward needs no atomics and is deterministic.

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
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        w_rev = torch.where(rev_eid >= 0, weight.reshape(-1)[rev_eid.clamp(min=0).to(torch.int64)], 0)
        gx = gather_fm(gy.contiguous(), rev_idx, w_rev, None)
    if ctx.needs_input_grad[2]:
        gw = wgrad_fm(xT, idx, gy.contiguous()).to(weight.dtype)
    if ctx.has_bias and ctx.needs_input_grad[3]:
        gb = gy.sum(1)
    return gx, None, gw, gb, None, None


geo_sparse_fm.register_autograd(_backward, setup_context=_setup_context)


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
