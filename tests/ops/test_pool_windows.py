"""max_pool's windows copied from a strided view (``ops.pool._window_max`` given strides, the CPU path)
against the index-gathered windows (the CUDA path, and adaptive pooling's): the same values
and indices for every kernel, stride, padding, dilation and ceil_mode, on inputs full of ties (small
integers in both planes) and with ±inf and NaN; and the ε⁰ plane equal to torch's max_pool."""

from __future__ import annotations

import itertools

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
