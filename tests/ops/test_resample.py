"""adaptive_avg_pool3d, anti-aliased bilinear upsampling and fractional max pooling on LC tensors
(torchlc.ops.resample) against torch.func.jvp (float64)."""

import torch
import torch.nn.functional as F
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64


def _check(f, x, v, seed=None):
    if seed is not None:
        torch.manual_seed(seed)
    y = f(x.nonstd(v))
    if seed is not None:
        torch.manual_seed(seed)
    p, t = jvp(f, (x,), (v,))
    ys, ps, ts = ((o,) if isinstance(o, torch.Tensor) else tuple(o) for o in (y, p, t))
    for y_, p_, t_ in zip(ys, ps, ts):
        if not p_.dtype.is_floating_point:
            assert torch.equal(y_, p_)
            continue
        assert_close(torchlc.coeff(y_, 0), p_, rtol=1e-10, atol=1e-10)
        assert_close(torchlc.coeff(y_, 1), t_, rtol=1e-10, atol=1e-10)


def _rand(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=torch.Generator().manual_seed(seed))


def test_adaptive_avg_pool3d_is_linear():
    _check(lambda x: F.adaptive_avg_pool3d(x, (2, 3, 1)), _rand(2, 3, 5, 6, 4), _rand(2, 3, 5, 6, 4, seed=1))
    _check(lambda x: F.adaptive_avg_pool3d(x, 2), _rand(3, 5, 6, 4), _rand(3, 5, 6, 4, seed=1))  # unbatched


def test_antialiased_bilinear_is_linear():
    x, v = _rand(2, 3, 9, 7), _rand(2, 3, 9, 7, seed=1)
    _check(lambda x: F.interpolate(x, size=(4, 3), mode="bilinear", antialias=True), x, v)
    _check(lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear", antialias=True, align_corners=True), x, v)


def test_fractional_max_pool_takes_windows_from_the_samples_and_maxima_in_the_field():
    x, v = _rand(2, 3, 9, 8), _rand(2, 3, 9, 8, seed=1)
    _check(lambda x: F.fractional_max_pool2d(x, 3, output_size=(4, 5), return_indices=True), x, v, seed=2)
    _check(lambda x: F.fractional_max_pool2d(x, (2, 3), output_ratio=(0.5, 0.5), return_indices=True), x[0], v[0], seed=3)
    y, z = _rand(2, 2, 7, 6, 8), _rand(2, 2, 7, 6, 8, seed=4)
    _check(lambda x: F.fractional_max_pool3d(x, 2, output_size=(3, 4, 5), return_indices=True), y, z, seed=5)


def test_fractional_max_pool_breaks_a_tie_by_the_infinitesimal_part():
    # two equal standard parts in one window: the larger ε coefficient wins (jvp would take the first)
    x = torch.zeros(1, 1, 2, 2, dtype=f64)
    v = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]], dtype=f64)
    s = torch.full((1, 1, 2), 0.5, dtype=f64)
    y, idx = F.fractional_max_pool2d(x.nonstd(v), 2, output_size=1, return_indices=True, _random_samples=s)
    assert idx.item() == 1 and torchlc.coeff(y, 1).item() == 1.0
