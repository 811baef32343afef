"""max_pool's windows copied from a strided view (``ops.pool._window_max`` given strides, the CPU path)
against the index-gathered windows (the CUDA path, and adaptive pooling's): the same values
and indices for every kernel, stride, padding, dilation and ceil_mode, on inputs full of ties (small
integers in both planes) and with ±inf and NaN; and the ε⁰ plane equal to torch's max_pool. Every
window-max op (max pooling, adaptive and fractional max pooling, embedding_bag's max) against torch
on inputs with NaN: the NaN that wins in torch wins in LC, and indices are torch's."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import torchlc
from torchlc.ops import pool

CONFIGS = [
    # (input shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 3, 9, 8), 3, 2, 1, 1, False),  # a ResNet stem
    ((2, 3, 9, 8), (3, 2), (2, 1), (1, 0), (1, 2), True),
    ((1, 2, 7, 7), 2, 2, 0, 1, True),
    ((2, 2, 5, 6), 3, 1, 1, 2, False),
    ((3, 5, 5), 2, 2, 1, 1, True),  # unbatched
    ((1, 2, 5, 4, 5), 2, 2, 0, 1, True),  # 3-d
    ((2, 1, 6, 6, 6), 3, 2, 1, 1, False),
]


def _per_dim(v, n, default):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    v = v or list(default)
    return v * n if len(v) == 1 else v


@pytest.mark.parametrize("config,specials", list(itertools.product(CONFIGS, [False, True])))
def test_strided_windows_equal_gathered_windows(config, specials):
    shape, k, s, p, d, ceil_mode = config
    n = 3 if len(shape) == 5 else 2
    g = torch.Generator().manual_seed(len(shape) + 7 * specials)
    x = torch.randint(-2, 3, shape, generator=g).double()
    v = torch.randint(-2, 3, shape, generator=g).double()
    if specials:
        x.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -float("inf")])
        v.view(-1)[2:5] = torch.tensor([float("inf"), -float("inf"), float("nan")])
    xs = x.nonstd(v)
    ks = _per_dim(k, n, ())
    st, pd, dl = _per_dim(s, n, ks), _per_dim(p, n, (0,)), _per_dim(d, n, (1,))
    windows = [pool._pool_windows(L, *a, ceil_mode, x.device) for L, *a in zip(x.shape[-n:], ks, st, pd, dl)]
    got_v, got_i = pool._window_max(xs, windows, list(zip(st, pd, dl)))
    want_v, want_i = pool._window_max(xs, windows)
    torch.testing.assert_close(torchlc.coeffs(got_v), torchlc.coeffs(want_v), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(got_i, want_i)
    if not specials:  # torch's max_pool: the same ε⁰ values (torch's ties pick the first maximum)
        mp = F.max_pool2d if n == 2 else F.max_pool3d
        torch.testing.assert_close(torchlc.coeff(got_v, 0), mp(x, k, s, p, d, ceil_mode), rtol=0, atol=0)


def _specials(shape, seed, nan_in_eps=False):
    """Small integers (ties everywhere), ±inf, and NaN in a third of the windows, in the ε⁰ plane (and,
    with ``nan_in_eps``, in the ε¹ plane: a NaN coefficient makes the element NaN)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, shape, generator=g).double()
    v = torch.randint(-2, 3, shape, generator=g).double()
    flat = x.view(-1)
    pick = torch.randperm(flat.numel(), generator=g)
    flat[pick[: flat.numel() // 6]] = float("nan")
    flat[pick[flat.numel() // 6 : flat.numel() // 5]] = float("inf")
    flat[pick[flat.numel() // 5 : flat.numel() // 4]] = -float("inf")
    if nan_in_eps:
        v.view(-1)[pick[flat.numel() // 4 : flat.numel() // 3]] = float("nan")
    return x, v


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("reader", ["strided", "gathered"])
@pytest.mark.parametrize("nan_search", ["windows", "native pool"])
def test_max_pool_nan_and_ties_as_torch(config, reader, nan_search):
    """An element with a NaN coefficient wins its window, the last such one, as NaN does in torch's
    max pooling; with an ε¹ plane of zeros the field's order is torch's order, so values and indices
    are torch's bit for bit, ties included. Both NaN searches: window by window (lex_argmax) and from
    torch's pooling of the NaN positions (_nan_wins)."""
    shape, k, s, p, d, ceil_mode = config
    n = 3 if len(shape) == 5 else 2
    x, v = _specials(shape, len(shape))
    ks = _per_dim(k, n, ())
    st, pd, dl = _per_dim(s, n, ks), _per_dim(p, n, (0,)), _per_dim(d, n, (1,))
    windows = [pool._pool_windows(L, *a, ceil_mode, x.device) for L, *a in zip(x.shape[-n:], ks, st, pd, dl)]
    strides = list(zip(st, pd, dl)) if reader == "strided" else None
    mp = F.max_pool2d if n == 2 else F.max_pool3d
    native = (lambda t: mp(t, k, s, p, d, ceil_mode, return_indices=True)) if nan_search == "native pool" else None
    want_v, want_i = mp(x, k, s, p, d, ceil_mode, return_indices=True)
    got_v, got_i = pool._window_max(x.nonstd(torch.zeros_like(v)), windows, strides, native)
    torch.testing.assert_close(torchlc.coeff(got_v, 0), want_v, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(got_i, want_i)
    # any ε¹ plane: the ε⁰ values are still torch's
    got_v, got_i = pool._window_max(x.nonstd(v), windows, strides, native)
    torch.testing.assert_close(torchlc.coeff(got_v, 0), want_v, rtol=0, atol=0, equal_nan=True)
    # NaN in the ε¹ plane too: the element is NaN, so torch's pooling of the elements' NaN pattern
    # gives the windows NaN wins and their indices; elsewhere LC's values are torch's ε⁰ maxima
    x2, v2 = _specials(shape, len(shape) + 1, nan_in_eps=True)
    is_nan = torch.isnan(x2) | torch.isnan(v2)
    want_v, want_i = mp(torch.where(is_nan, float("nan"), x2), k, s, p, d, ceil_mode, return_indices=True)
    got_v, got_i = pool._window_max(x2.nonstd(v2), windows, strides, native)
    won = torch.isnan(want_v)
    assert torch.equal(torch.isnan(torchlc.coeffs(got_v)).any(0), won)
    assert torch.equal(got_i[won], want_i[won])
    torch.testing.assert_close(torchlc.coeff(got_v, 0)[~won], want_v[~won], rtol=0, atol=0)


@pytest.mark.parametrize("out_size", [(1, 1), (2, 3), (4, 4)])
def test_adaptive_max_pool_nan_and_ties_as_torch(out_size):
    x, _ = _specials((2, 3, 7, 5), 3)
    want_v, want_i = F.adaptive_max_pool2d(x, out_size, return_indices=True)
    got_v, got_i = F.adaptive_max_pool2d(x.nonstd(torch.zeros_like(x)), out_size, return_indices=True)
    torch.testing.assert_close(torchlc.coeff(got_v, 0), want_v, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(got_i, want_i)


@pytest.mark.parametrize("seed", range(4))
def test_embedding_bag_max_nan_and_ties_as_torch(seed):
    """embedding_bag's max mode scans each bag with ``val > max``: a NaN in a bag's first row wins,
    later NaNs never do; ties keep the first row. With an ε¹ plane of zeros LC gives torch's values
    and max indices bit for bit (bags of several sizes, one empty)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randint(-2, 3, (6, 5), generator=g).double()
    W.view(-1)[torch.randperm(30, generator=g)[:8]] = float("nan")
    idx = torch.randint(0, 6, (12,), generator=g)
    offsets = torch.tensor([0, 1, 4, 4, 9])
    want = torch.ops.aten._embedding_bag(W, idx, offsets, False, 2)
    got = torch.ops.aten._embedding_bag(W.nonstd(torch.zeros_like(W)), idx, offsets, False, 2)
    torch.testing.assert_close(torchlc.coeff(got[0], 0), want[0], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(got[3], want[3])


def test_fractional_max_pool_nan_as_torch():
    x, _ = _specials((2, 3, 8, 8), 5)
    samples = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(0)).double()
    want_v, want_i = F.fractional_max_pool2d(x, 3, output_size=4, return_indices=True, _random_samples=samples)
    got_v, got_i = F.fractional_max_pool2d(x.nonstd(torch.zeros_like(x)), 3, output_size=4, return_indices=True,
                                           _random_samples=samples)
    torch.testing.assert_close(torchlc.coeff(got_v, 0), want_v, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(got_i, want_i)


def _lex_argmax_reference(w, valid):
    """pool.lex_argmax by a loop over positions: the last valid element with a NaN coefficient wins;
    else plane by plane the candidates narrow to those at the maximum; then the first candidate."""
    T, B, K = w.shape
    out = []
    for b in range(B):
        cand = [k for k in range(K) if valid[b, k]]
        nans = [k for k in cand if any(math.isnan(w[t, b, k]) for t in range(T))]
        if nans:
            out.append(nans[-1])
            continue
        for t in range(T):
            top = max(w[t, b, k] for k in cand)
            cand = [k for k in cand if w[t, b, k] == top]
        out.append(cand[0])
    return torch.tensor(out).unsqueeze(-1)


@pytest.mark.parametrize("seed", range(6))
def test_lex_argmax_against_a_loop(seed):
    g = torch.Generator().manual_seed(seed)
    T, B, K = 1 + seed % 3, 64, 5
    w = torch.randint(-1, 2, (T, B, K), generator=g).double()
    w[torch.rand(T, B, K, generator=g) < 0.08] = float("nan")
    w[torch.rand(T, B, K, generator=g) < 0.05] = float("inf")
    w[torch.rand(T, B, K, generator=g) < 0.15] = -float("inf")  # ties with the -inf fill of non-candidates
    valid = torch.rand(B, K, generator=g) < 0.8
    valid[:, 0] = True
    assert torch.equal(pool.lex_argmax(w, valid), _lex_argmax_reference(w, valid))
