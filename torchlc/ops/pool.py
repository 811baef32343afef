"""Pooling windows: average pooling is linear (one call over all planes); max pooling and adaptive max
pooling select each window's maximum in the field's order (lexicographic over the planes)."""

from __future__ import annotations

import math

import torch

from .. import kernels
from .._algebra import Series
from .._context import inner_is_plain, is_wrapped, tracing
from .._dispatch import implements
from .._tensor import LCTensor, series
from ..kernels import jets as _jet_kernels
from ._util import check_on_meta, fold_batch, out
from .order import nan_elements
from .shape import per_plane

aten = torch.ops.aten


# -- average pooling: linear, once on all planes -------------------------------------------------------


@implements([aten.avg_pool2d.default, aten.avg_pool3d.default], kind="per_plane")
def avg_pool(func, x, *args, **kwargs):
    nd = 4 if func is aten.avg_pool2d.default else 5
    return out(fold_batch(lambda p: func(p, *args, **kwargs), series(x), nd))


@implements([aten.max_pool2d_with_indices_backward.default, aten.max_pool3d_with_indices_backward.default],
            kind="per_plane")
def max_pool_backward(func, grad_output, x, *args):
    """The gradient of max pooling through its given indices: grad_output scattered to the argmax
    positions, linear in grad_output (once per plane); of ``x`` torch reads the shape and memory format
    only, which any of its planes has (torch 2.13 decomposes this op; 2.11 has no decomposition)."""
    shape_of_x = series(x).planes[0] if isinstance(x, LCTensor) else x
    if not isinstance(grad_output, LCTensor):
        return func(grad_output, shape_of_x, *args)
    return per_plane(func, (grad_output, shape_of_x, *args), {}, (0,))


# -- max pooling: a selection by the field's order ----------------------------------------------------


def _adaptive_windows(L, n_out, device):
    i = torch.arange(n_out, device=device)
    start = torch.div(i * L, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * L + n_out - 1, n_out, rounding_mode="floor")
    # the widest window, from the integers alone (no host read of a tensor: traceable)
    K = max(((j + 1) * L + n_out - 1) // n_out - j * L // n_out for j in range(n_out)) if n_out else 0
    k = torch.arange(K, device=device)
    idx = start[:, None] + k
    valid = idx < end[:, None]
    return idx.clamp(max=L - 1), valid


def lex_argmax(w, valid, nan="last"):
    """w (T, *B, K): K candidates per position, T planes; valid broadcasts to w's (*B, K). The
    position (keepdim, into K) of each first maximum in the field's order (lexicographic over the
    planes), among the valid candidates.

    NaN candidates (elements with a NaN coefficient, in any plane) as torch treats NaN: ``"last"``,
    the last one wins (max pooling's ``val > max || isnan(val)``); ``"leading"``, one in the first
    valid position wins and later ones are skipped (embedding_bag's ``val > max`` scan); ``None``, no
    NaN search (the caller knows there is none, or overrides NaN windows itself: see
    :func:`_nan_wins`)."""
    cand = valid.expand(w.shape[1:])
    if nan is not None:
        is_nan = nan_elements(w) & cand
    if nan == "leading":
        first = cand.to(torch.uint8).argmax(-1, keepdim=True)
        nan_wins, nan_at = is_nan.gather(-1, first), first
        cand = cand & ~is_nan
    elif nan is not None:
        K = w.shape[-1]
        rank = torch.arange(1, K + 1, device=w.device, dtype=torch.uint8 if K < 256 else torch.int32)
        nan_wins = is_nan.any(-1, keepdim=True)
        nan_at = (is_nan * rank).argmax(-1, keepdim=True)  # the largest 1-based position: the last
    for t in range(w.shape[0]):
        pm = torch.where(cand, w[t], float("-inf"))
        m = pm.amax(-1, keepdim=True)
        cand = cand & (pm == m)
    first = cand.to(torch.uint8).argmax(-1, keepdim=True)
    return first if nan is None else torch.where(nan_wins, nan_at, first)


def _nan_wins(p, vals, ind, native_pool):
    """Max pooling's NaN rule applied to its lexicographic result (values (T, N, C, *O), indices
    (N, C, *O)) of planes p (T, N, C, *spatial): where a window holds an element with a NaN
    coefficient, the last such element wins, as in torch. Found with torch's own pooling
    (``native_pool``: the op with the same windows, on a plain (N, C, *spatial) tensor) over the map
    of 1-based flat positions of the NaN elements (0 elsewhere): the window maximum is positive
    exactly where the window holds one, and its index is the last. Input-sized work instead of
    window-sized work in every plane (resnet50's stem at batch 32: ~0.3 against ~2 ms on an H100)."""
    T, N, C = p.shape[:3]
    L = math.prod(p.shape[3:])
    dt = torch.float32 if L < 2**24 else torch.float64  # positions exact
    pos = torch.arange(1, L + 1, device=p.device, dtype=dt).view(p.shape[3:])
    wmax, widx = native_pool(nan_elements(p) * pos)
    found = wmax > 0
    picked = torch.gather(p.reshape(T, N, C, L), -1, widx.reshape(1, N, C, -1).expand(T, N, C, -1))
    return torch.where(found, picked.view(vals.shape), vals), torch.where(found, widx, ind)


def _may_hold_nan(p) -> bool:
    """Whether planes p may hold a NaN: False only where seen not to, which costs one pass over the
    planes and is only asked on CPU, where reading the answer on the host waits for no device."""
    return not (p.device.type == "cpu" and not tracing() and inner_is_plain(p) and not bool(torch.isnan(p).any()))


def lex_window_argmax(planes, flat_idx, valid, nan="last"):
    """planes (T, B, L); flat_idx/valid (*O, K) index windows of the last dim. Returns the index (into
    L) of each window's first maximum in the field's order (lexicographic over the planes; NaN as
    :func:`lex_argmax`)."""
    w = planes[:, :, flat_idx]  # (T, B, *O, K)
    k = lex_argmax(w, valid, nan)
    return torch.gather(flat_idx.expand(w.shape[1:]), -1, k).squeeze(-1)


def _pool_out_size(L, k, stride, pad, dil, ceil_mode) -> int:
    """max_pool's output length along one dim, by torch's rule (ceil_mode: the last window must start
    inside the input or its left padding)."""
    span = L + 2 * pad - dil * (k - 1) - 1
    n_out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (n_out - 1) * stride >= L + pad:
        n_out -= 1
    return n_out


def _pool_windows(L, k, stride, pad, dil, ceil_mode, device):
    """Input positions (O, k) of max_pool's windows along one dim, clamped, and which are real (not
    padding): o·stride − pad + j·dil, with torch's output-size rule."""
    n_out = _pool_out_size(L, k, stride, pad, dil, ceil_mode)
    idx = torch.arange(n_out, device=device)[:, None] * stride - pad + torch.arange(k, device=device) * dil
    valid = (idx >= 0) & (idx < L)
    return idx.clamp(0, L - 1), valid


def pool_planes(x, n):
    """``(series, planes, batched)`` of x for pooling over its n trailing dims: planes shaped
    (T, N, C, *spatial), an unbatched (C, *spatial) input given N = 1."""
    s = series(x)
    p = s.planes
    batched = p.dim() - 1 == n + 2
    return s, (p if batched else p.unsqueeze(1)), batched


def _window_max(x, windows, strides=None, native_pool=None):
    """Max in the field's order over per-dim windows (``windows[d]`` = (idx (O_d, K_d), valid)) of the
    trailing spatial dims of x, (N, C, *spatial) or (C, *spatial): values and torch-style indices
    (flattened spatial position of each window's first maximum).

    The windows are read by advanced indexing, or, given ``strides`` (max_pool's (stride, padding,
    dilation) per dim: evenly spaced windows), copied from a strided view of the planes padded by
    edge replication (:func:`_strided_windows`): the same tensor, since replication pads with the
    clamped positions the index reads (resnet50's stem on CPU, 2×64×32×32, one thread: 7.0 → 4.2 ms).
    ``native_pool`` (torch's pooling op with these windows, on a plain tensor) finds the windows NaN
    wins (:func:`_nan_wins`); without it they are searched window by window."""
    s, p, batched = pool_planes(x, len(windows))
    if native_pool is None:
        vals, ind = window_max_planes(p, windows, strides, "last" if _may_hold_nan(p) else None)
    else:
        vals, ind = window_max_planes(p, windows, strides, None)
        if _may_hold_nan(p):
            vals, ind = _nan_wins(p, vals, ind, native_pool)
    return _pooled(s, vals, ind, batched)


def _pooled(s, vals, ind, batched):
    if not batched:
        vals, ind = vals.squeeze(1), ind.squeeze(0)
    return out(Series(vals, s.support, s.order, s.exact)), ind


def window_max_planes(p, windows, strides, nan):
    """:func:`_window_max` on plain planes p (T, N, C, *spatial): (values (T, N, C, *O), indices
    (N, C, *O)); ``nan`` is :func:`lex_argmax`'s policy."""
    n = len(windows)
    T, N, C = p.shape[:3]
    spatial = p.shape[3:]
    # on a (O_0..O_{n-1}, K_0..K_{n-1}) grid by broadcasting: each dim's window positions, their
    # flattened spatial index and validity
    idxs, flat, valid = [], None, None
    for d, (idx, ok) in enumerate(windows):
        shp = [1] * (2 * n)
        shp[d], shp[n + d] = idx.shape
        idx, ok = idx.reshape(shp), ok.reshape(shp)
        idxs.append(idx)
        term = idx * math.prod(spatial[d + 1 :])
        flat = term if flat is None else flat + term
        valid = ok if valid is None else valid & ok
    Os, K = flat.shape[:n], math.prod(flat.shape[n:])
    if math.prod(Os) == 0:  # no windows (an output size of 0): nothing to reduce
        return p.new_empty(T, N, C, *Os), torch.empty(N, C, *Os, dtype=torch.long, device=p.device)
    flat = flat.reshape(*Os, K)
    valid = valid.expand(*Os, *valid.shape[n:]).reshape(*Os, K)
    if strides is not None and p.numel():
        w = _strided_windows(p, windows, strides).reshape(T, N, C, *Os, K)
    else:
        # each spatial dim indexed by its own positions: the planes' spatial dims are never merged by a
        # view before an indexed load (Inductor in torch 2.13 cannot compile such a load after a
        # pointwise op: "vr must not be None for symbol q2", which broke torchlc.compile of every CNN
        # with max_pool)
        w = p[(slice(None),) * 3 + tuple(idxs)].reshape(T, N, C, *Os, K)  # explicit sizes: any may be 0
    # (N, C, *O, 1); clamped: without a NaN search a window that NaN emptied of candidates has no
    # answer (its caller overrides it), and Inductor may then compute any index for it, which its
    # bounds check on the gather would turn into an abort
    k = lex_argmax(w, valid, nan).clamp(0, K - 1)
    vals = torch.gather(w, -1, k.unsqueeze(0).expand(T, *k.shape)).squeeze(-1)  # (T, N, C, *O)
    ind = torch.gather(flat.expand(*k.shape[:-1], K), -1, k).squeeze(-1)  # (N, C, *O)
    return vals, ind


def max_pool_planes(p, ks, st, pd, dl, ceil_mode, nan, strided=True):
    """max_pool of plain planes p (T, N, C, *spatial) from its integer arguments (per dim), the
    windows read strided (:func:`_strided_windows`) or gathered: the function the CPU compiles
    (Dynamo sees only p and Python values) and the eager formula."""
    n = len(ks)
    windows = [_pool_windows(L, k, s_, p_, d_, ceil_mode, p.device)
               for L, k, s_, p_, d_ in zip(p.shape[-n:], ks, st, pd, dl, strict=True)]
    return window_max_planes(p, windows, list(zip(st, pd, dl)) if strided else None, nan)


def _strided_windows(p, windows, strides):
    """The windows of planes p (T, N, C, *spatial) as (T, N, C, *O, *K), the tensor the index of
    :func:`_window_max` reads: offset j of window o along dim d at o·stride − pad + j·dilation, clamped
    into the input (``strides[d]`` = (stride, pad, dilation)). Padding by edge replication is that
    clamp and ``unfold`` lays the windows out; then one copy, since passes over the overlapping
    strided view cost several times a pass over the copy."""
    n = len(windows)
    lead, spatial = p.shape[:-n], p.shape[-n:]
    needs = [(idx.shape[0] - 1) * st + (idx.shape[1] - 1) * dil + 1
             for (idx, _), (st, _, dil) in zip(windows, strides, strict=True)]
    pads = [(pad, max(need - L - pad, 0)) for (_, pad, _), need, L in zip(strides, needs, spatial, strict=True)]
    # replication pads the trailing dims of a (batch, channel, *spatial) tensor
    w = torch.nn.functional.pad(p.reshape(-1, *p.shape[-n - 1 :]), [v for lr in reversed(pads) for v in lr],
                                mode="replicate")
    w = w.reshape(*lead, *w.shape[-n:])
    for d, ((idx, _), (st, _, dil), need) in enumerate(zip(windows, strides, needs)):
        w = w.narrow(3 + d, 0, need).unfold(3 + d, (idx.shape[1] - 1) * dil + 1, st)[..., ::dil]
    return w.contiguous()


@implements([aten.adaptive_max_pool2d.default, aten.adaptive_max_pool3d.default], kind="decision")
def adaptive_max_pool(func, x, output_size):
    check_on_meta(func, x, output_size)  # the windows below are computed from any sizes torch refuses
    n = 2 if func is aten.adaptive_max_pool2d.default else 3
    spatial = x.shape[-n:]
    windows = [_adaptive_windows(L, L if o is None else o, x.device) for L, o in zip(spatial, output_size)]
    return _window_max(x, windows, native_pool=lambda t: func(t, output_size))


@implements([aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default], kind="decision")
def max_pool_with_indices(func, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """max_pool by the field's order (torch ≥ 2.13 decomposes these ops; 2.11 does not)."""
    # torch's checks: the window arithmetic below would accept a padding, stride or size torch refuses
    check_on_meta(func, x, kernel_size, stride, padding, dilation, ceil_mode)
    n = 2 if func is aten.max_pool2d_with_indices.default else 3

    def per_dim(v, default):
        v = list(v) if isinstance(v, (list, tuple)) else [v]
        v = v or list(default)
        return v * n if len(v) == 1 else v

    ks = per_dim(kernel_size, ())
    st, pd, dl = per_dim(stride, ks), per_dim(padding, (0,)), per_dim(dilation, (1,))
    s, p, batched = pool_planes(x, n)
    if n == 2 and p.shape[0] == 2 and (x.device.type != "cpu" or kernels.elementwise.INTERPRET):
        # two planes on a GPU: one pass, NaN rule included (resnet50's stem: the formulas below gather
        # every 3×3 window, reduce it in further passes and search NaN with torch's pooling of a map)
        if tracing():
            if x.device.type in OPAQUE_POOL_DEVICES and torch.is_inference_mode_enabled() and not is_wrapped(p):
                return _pooled(s, *torch.ops.torchlc.max_pool2d_jet(p, ks, st, pd, dl, bool(ceil_mode)), batched)
        elif (res := _jet_kernels.max_pool2d_jet(p, ks, st, pd, dl, _out_hw(p, ks, st, pd, dl, ceil_mode))) is not None:
            return _pooled(s, *res, batched)
    may_nan = _may_hold_nan(p)
    # strided windows on CPU only: on CUDA the gathered ones measured faster under torchlc.compile
    # (resnet50 bf16 on an H100, batch 32: 6.71 against 7.38 ms of GPU time per forward; Inductor
    # fuses the strided view's reads worse), and a gather is one kernel in eager mode
    cpu = x.device.type == "cpu"
    res = None
    # large CPU planes: the same function compiled by Inductor (one loop over the windows instead of
    # a copy of them and ~10 passes; resnet50's stem, 2×64×32×32, one thread: 6.4 → 1.5 ms), batch
    # and channels merged into one dynamic dim so a new batch size does not recompile; never with
    # NaN: Inductor's C++ for this formula computed an out-of-range gather index in a window whose
    # candidates NaN eliminated, and its bounds check aborts the process
    if cpu and not may_nan and kernels.cpu.usable(p):
        T, N, C = p.shape[:3]
        res = kernels.cpu.compiled(max_pool_planes, p.reshape(T, 1, N * C, *p.shape[3:]), tuple(ks), tuple(st),
                                   tuple(pd), tuple(dl), bool(ceil_mode), None, dynamic=((0, 2),))
        if res is not None:
            res = res[0].reshape(T, N, C, *res[0].shape[3:]), res[1].reshape(N, C, *res[1].shape[2:])
    vals, ind = res if res is not None else max_pool_planes(p, ks, st, pd, dl, ceil_mode, None, strided=cpu)
    if may_nan:
        vals, ind = _max_pool_nan_wins(p, vals, ind, ks, st, pd, dl, ceil_mode)
    return _pooled(s, vals, ind, batched)


def _max_pool_nan_wins(p, vals, ind, ks, st, pd, dl, ceil_mode):
    """:func:`_nan_wins` for max_pool's result, with torch's own max_pool of the same windows."""
    native = aten.max_pool2d_with_indices.default if len(ks) == 2 else aten.max_pool3d_with_indices.default
    return _nan_wins(p, vals, ind, lambda t: native(t, ks, st, pd, dl, ceil_mode))


def _out_hw(p, ks, st, pd, dl, ceil_mode):
    return [_pool_out_size(L, *a, ceil_mode) for L, *a in zip(p.shape[-2:], ks, st, pd, dl, strict=True)]


@torch.library.custom_op("torchlc::max_pool2d_jet", mutates_args=())
def max_pool2d_jet(p: torch.Tensor, ks: list[int], st: list[int], pd: list[int], dl: list[int],
                   ceil_mode: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order 2-d max pooling as one opaque op in graphs traced with grad off on CUDA (the
    one-pass kernel), where Inductor would otherwise compile the window formulas: planes p (2, N, C,
    H, W); returns value planes (2, N, C, OH, OW) and torch's indices (N, C, OH, OW), channels-last
    where p's planes are (Inductor's layout optimisation lays convolutional graphs out so), as torch's
    pooling returns them, and contiguous otherwise."""
    res = _jet_kernels.max_pool2d_jet(p, ks, st, pd, dl, _out_hw(p, ks, st, pd, dl, ceil_mode))
    if res is not None:
        return res
    # inputs the kernel does not take at run time (it was chosen from the traced metadata): the
    # formulas, in the layout the fake promised
    vals, ind = max_pool_planes(p, ks, st, pd, dl, ceil_mode, None, strided=False)
    vals, ind = _max_pool_nan_wins(p, vals, ind, ks, st, pd, dl, ceil_mode)
    out_v, out_i, _ = _jet_kernels.max_pool2d_outputs(p, vals.shape[-2:])
    return out_v.copy_(vals), out_i.copy_(ind)


@max_pool2d_jet.register_fake
def _max_pool2d_jet_fake(p, ks, st, pd, dl, ceil_mode):
    return _jet_kernels.max_pool2d_outputs(p, _out_hw(p, ks, st, pd, dl, ceil_mode))[:2]


# devices on which graphs traced with grad off call the max-pool jet as the opaque op above
OPAQUE_POOL_DEVICES = {"cuda"}
