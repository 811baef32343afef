"""Variance and normalization: var/std as LC arithmetic; batch and group norm through the same formulas
(running statistics keep the ε⁰ plane, as jvp keeps the primal); layer norm as a first-order jet
(torchlc._jet), general inputs through the decomposition."""

from __future__ import annotations

import collections

import torch
from torch._decomp.decompositions import native_batch_norm_helper

from .. import _algebra as A
from .. import _jet
from .. import _support as S
from .._algebra import Series
from .._context import grad_free
from .._dispatch import composite, decompose_composite, implements
from .._tensor import series
from ._util import check_as_torch, decomposed, first_order, is_lc, out
from .reductions import reduced_dims

aten = torch.ops.aten
prims = torch.ops.prims


# -- variance ----------------------------------------------------------------------------------------


def _var(x, dim, correction, keepdim):
    dims = reduced_dims(x, dim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    c = 1 if correction is None else correction
    m = x.mean(dims, keepdim=True)
    xm = x - m
    v = (xm * xm).sum(dims, keepdim=keepdim)
    return v / max(n - c, 0), (m if keepdim else m.squeeze(dims) if dims else m)


@implements([aten.var.correction])
def var(func, x, dim=None, *, correction=None, keepdim=False):
    return _var(x, dim, correction, keepdim)[0]


@implements([aten.var_mean.correction])
def var_mean(func, x, dim=None, *, correction=None, keepdim=False):
    return _var(x, dim, correction, keepdim)


@implements([aten.std.correction])
def std(func, x, dim=None, *, correction=None, keepdim=False):
    return _var(x, dim, correction, keepdim)[0].sqrt()


@implements([aten.std_mean.correction])
def std_mean(func, x, dim=None, *, correction=None, keepdim=False):
    v, m = _var(x, dim, correction, keepdim)
    return v.sqrt(), m


@implements([prims.var.default])
def prims_var(func, x, dims, correction=1, *, output_dtype=None):
    return _var(x, dims, correction, False)[0]


# -- normalization -----------------------------------------------------------------------------------


def _standard(x):
    """ε⁰ plane of x (x itself when plain): what running statistics keep, as jvp keeps the primal."""
    return series(x).plane(S.ZERO) if is_lc(x) else x


def _update_running(buf, new):
    if buf is None or new is None:
        return
    with torch.no_grad():
        if is_lc(buf):
            buf.copy_(new)
        else:
            buf.copy_(_standard(new).detach().to(buf.dtype))


def _eval_affine(x, weight, bias, rm, rv, eps):
    """Batch norm with running statistics as one affine map per channel, y = α·x + β with
    α = w/√(var + ε) and β = b − mean·α (torch's CPU kernel's formula), on every plane in one pass:
    α scales all planes, β joins the ε⁰ plane only. None when it does not apply (LC statistics or
    parameters, no ε⁰ plane): the general formula runs."""
    if any(is_lc(t) for t in (weight, bias, rm, rv)) or rm is None or rv is None:
        return None
    s = series(x)
    if S.ZERO not in s.support or s.planes.dim() < 3:
        return None
    alpha, shift, sm, sr = _affine_coeffs(s, weight, bias, rm, rv, eps)
    if s.planes.device.type == "cpu":
        # α·x, then β added to the ε⁰ plane: on CPU a broadcasting addcmul runs ~3× slower than the
        # two passes (resnet50's 256×16×16 activations: 121 against 37 µs, one thread)
        i = s.support.index(S.ZERO)
        planes = _jet.add_to_plane(s.planes * alpha, i, shift[i])
    else:
        planes = torch.addcmul(shift, s.planes, alpha)
    return out(Series(planes, s.support, s.order, s.exact)), sm, sr


# (α, β on the ε⁰ plane, the saved statistics) of recent eval batch norms, by the identity and version of their parameters
# and statistics: an eval network computes them once instead of in ~10 small kernels per call. An
# entry holds its tensors, so their ids stay theirs while it exists; in-place updates (optimizer
# steps, load_state_dict) bump the versions. Bounded; bypassed when autograd records or code is traced.
_AFFINE: collections.OrderedDict = collections.OrderedDict()
_AFFINE_MAX = 256


def _affine_coeffs(s: Series, weight, bias, rm, rv, eps):
    ts = (weight, bias, rm, rv)
    key = None
    if grad_free(*(t for t in ts if t is not None)) and not is_lc(s.planes):
        try:
            # the support enters as its length and the ε⁰ plane's place (hashing its Fractions cost ~6 µs)
            key = (len(s.support), s.support.index(S.ZERO), s.planes.dtype, s.planes.dim(), eps) + tuple(
                (id(t), t._version) if t is not None else None for t in ts)
        except RuntimeError:  # inference tensors have no version counter
            key = None
        hit = _AFFINE.get(key) if key is not None else None
        if hit is not None:
            _AFFINE.move_to_end(key)
            return hit[1]
    res = _affine_formula(s, weight, bias, rm, rv, eps)
    if key is not None:
        _AFFINE[key] = (ts, res)
        if len(_AFFINE) > _AFFINE_MAX:
            _AFFINE.popitem(last=False)
    return res


def _affine_formula(s: Series, weight, bias, rm, rv, eps):
    alpha = _jet.upcast(rv).add(eps).rsqrt()
    if weight is not None:
        alpha = alpha * _jet.upcast(weight)
    beta = -_jet.upcast(rm) * alpha
    if bias is not None:
        beta = beta + _jet.upcast(bias)
    dt = s.planes.dtype
    bshape = (1, alpha.shape[0]) + (1,) * (s.planes.dim() - 3)
    alpha, beta = alpha.to(dt).view(bshape), beta.to(dt).view(bshape)
    zero = torch.zeros_like(beta)
    shift = torch.stack([beta if q == 0 else zero for q in s.support])
    if s.planes.device.type == "cpu":  # the saved statistics of an eval batch norm, as torch returns them
        sm = sr = torch.zeros(0, dtype=dt, device=s.planes.device)
    else:
        sm, sr = _jet.upcast(rm), _jet.upcast(rv).add(eps).rsqrt()
    return alpha, shift, sm, sr


def _batch_norm(x, weight, bias, rm, rv, training, momentum, eps):
    if not training and is_lc(x) and (res := _eval_affine(x, weight, bias, rm, rv, eps)) is not None:
        return res
    o, sm, sr, nrm, nrv = native_batch_norm_helper(x, weight, bias, rm, rv, training, momentum, eps, True)
    if training:
        _update_running(rm, nrm)
        _update_running(rv, nrv)
    return o, sm, sr


@implements([aten.native_batch_norm.default, aten._native_batch_norm_legit.default])
def native_batch_norm(func, x, weight, bias, rm, rv, training, momentum, eps):
    return _batch_norm(x, weight, bias, rm, rv, training, momentum, eps)


@implements([aten._native_batch_norm_legit.no_stats])
def native_batch_norm_no_stats(func, x, weight, bias, training, momentum, eps):
    return _batch_norm(x, weight, bias, None, None, training, momentum, eps)


@implements([aten._native_batch_norm_legit_no_training.default])
def native_batch_norm_no_training(func, x, weight, bias, rm, rv, momentum, eps):
    return _batch_norm(x, weight, bias, rm, rv, False, momentum, eps)


@implements([aten._batch_norm_with_update.default])
def batch_norm_with_update(func, x, weight, bias, rm, rv, momentum, eps):
    o, sm, sr = _batch_norm(x, weight, bias, rm, rv, True, momentum, eps)
    return o, sm, sr, torch.empty(0, dtype=torch.uint8, device=x.device)


@implements([aten._batch_norm_no_update.default])
def batch_norm_no_update(func, x, weight, bias, rm, rv, momentum, eps):
    o, sm, sr = _batch_norm(x, weight, bias, rm, rv, False, momentum, eps)
    return o, sm, sr, torch.empty(0, dtype=torch.uint8, device=x.device)


@implements([aten.cudnn_batch_norm.default])
def cudnn_batch_norm(func, x, weight, bias, rm, rv, training, momentum, eps):
    """cuDNN's entry, which ``torch.batch_norm`` picks for CUDA float32/float16 inputs: the same batch
    norm, here directly (through PyTorch's decomposition it cost two more LC dispatches per layer);
    its reserve space is empty."""
    o, sm, sr = _batch_norm(x, weight, bias, rm, rv, training, momentum, eps)
    return o, sm, sr, torch.empty(0, dtype=torch.uint8, device=x.device)


@implements([aten.miopen_batch_norm.default])
def miopen_batch_norm(func, x, weight, bias, rm, rv, training, momentum, eps):
    """MIOpen's entry (ROCm): the same batch norm."""
    return _batch_norm(x, weight, bias, rm, rv, training, momentum, eps)


@implements([aten.native_group_norm.default])
def native_group_norm(func, x, weight, bias, N, C, HxW, group, eps):
    shape = x.shape
    xg = x.reshape(N, group, (C // group) * HxW)  # explicit: -1 is ambiguous for an empty batch
    v, m = _var(xg, [-1], 0, True)
    rstd = (v + eps).rsqrt()
    o = ((xg - m) * rstd).reshape(shape)
    bshape = (1, C) + (1,) * (x.dim() - 2)
    if weight is not None:
        o = o * weight.reshape(bshape)
    if bias is not None:
        o = o + bias.reshape(bshape)
    return o, m.reshape(N, group), rstd.reshape(N, group)


# -- layer norm: a first-order jet (torchlc._jet), general inputs through the decomposition -------------


def _check_normalized_shape(func, x, normalized_shape, weight, bias, eps):
    """torch's error when x does not end in ``normalized_shape`` or the affine parameters have
    another shape (the jet reads the shape off x and would normalise the wrong dims silently)."""
    n, shape = len(normalized_shape), tuple(normalized_shape)
    if (x.dim() < n or tuple(x.shape[x.dim() - n:]) != shape
            or any(t is not None and tuple(t.shape) != shape for t in (weight, bias))):
        check_as_torch(func, x, normalized_shape, weight, bias, eps)
        raise RuntimeError(f"torchlc: {func.name()}: normalized_shape {list(shape)} does not match the input "
                           f"{list(x.shape)} and the weight/bias shapes")


@composite([aten.layer_norm.default])
def layer_norm(func, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """F.layer_norm whole: the output planes of the jet alone (native_layer_norm, which the
    decomposition calls, also returns the mean and rstd planes, 7 more kernels on CPU that F.layer_norm
    drops). Other inputs through the decomposition."""
    _check_normalized_shape(func, x, normalized_shape, weight, bias, eps)
    s = first_order(x)
    if s is None or not eps > 0 or is_lc(weight) or is_lc(bias):
        return decompose_composite(func, x, normalized_shape, weight, bias, eps, cudnn_enable)
    o = _jet.layer_norm(s.planes, len(normalized_shape), weight, bias, eps)
    return out(Series(o.to(s.planes.dtype), s.support, s.order, A.min_exact(s.exact, s.order)))


@implements([aten.native_layer_norm.default], kind="jet")
def native_layer_norm(func, x, normalized_shape, weight, bias, eps):
    _check_normalized_shape(func, x, normalized_shape, weight, bias, eps)
    s = first_order(x)
    if s is None or not eps > 0 or is_lc(weight) or is_lc(bias):  # eps = 0: the variance may start at ε²
        return decomposed(func, x, normalized_shape, weight, bias, eps)
    o, mean, rstd = _jet.layer_norm(s.planes, len(normalized_shape), weight, bias, eps, stats=True)
    dt = s.planes.dtype
    stats_dt = dt if x.device.type in ("cpu", "mtia") else mean.dtype  # as torch's reference
    exact = A.min_exact(s.exact, s.order)
    return (out(Series(o.to(dt), s.support, s.order, exact)),
            out(Series(mean.to(stats_dt), s.support, s.order, s.exact)),
            out(Series(rstd.to(stats_dt), s.support, s.order, exact)))
