"""The FFTs (aten._fft_r2c/_fft_c2c/_fft_c2r, per plane) against torch.func.jvp (float64)."""

import pytest
import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def _check(f, x, v):
    """f(x + vε) has the value f(x) and the ε¹ coefficient ∂f(x)[v] (f linear: f(v))."""
    y = f(x.nonstd(v))
    p, t = jvp(f, (x,), (v,))
    assert y.dtype == p.dtype
    assert_close(torchlc.coeff(y, 0), p, **TOL)
    assert_close(torchlc.coeff(y, 1), t, **TOL)


FFTS = {
    "fft": lambda x: torch.fft.fft(x),
    "ifft_norm": lambda x: torch.fft.ifft(x, norm="ortho"),
    "rfft_n": lambda x: torch.fft.rfft(x, n=10),
    "irfft": lambda x: torch.fft.irfft(x),
    "hfft": lambda x: torch.fft.hfft(x, n=7),
    "ihfft": lambda x: torch.fft.ihfft(x),
    "fft2": lambda x: torch.fft.fft2(x),
    "rfftn": lambda x: torch.fft.rfftn(x, dim=(0, 2)),
    "irfftn": lambda x: torch.fft.irfftn(torch.fft.rfftn(x), s=x.shape),
    "ifftn_roundtrip_real": lambda x: torch.fft.ifftn(torch.fft.fftn(x)).real,
    "fftshift": lambda x: torch.fft.fftshift(torch.fft.fft(x, dim=1), dim=1),
    "stft": lambda x: torch.stft(x.reshape(-1), n_fft=8, hop_length=2, window=torch.hann_window(8, dtype=f64),
                                 return_complex=True),
}


@pytest.mark.parametrize("name", sorted(FFTS))
def test_fft_family_matches_jvp(name):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, 5, dtype=f64, generator=g)
    v = torch.randn(3, 6, 5, dtype=f64, generator=g)
    _check(FFTS[name], x, v)


def test_fft_keeps_support_order_and_exactness():
    # T(Σ x_q ε^q) = Σ T(x_q) ε^q: every plane transformed alike, metadata unchanged
    x = torchlc.from_terms({0: torch.randn(8, dtype=f64), "1/2": torch.randn(8, dtype=f64),
                            2: torch.randn(8, dtype=f64)}, order=2)
    y = torch.fft.rfft(x)
    assert torchlc.support(y) == torchlc.support(x) and y.dtype == torch.complex128
    for q in torchlc.support(x):
        assert_close(torchlc.coeff(y, q), torch.fft.rfft(torchlc.coeff(x, q)), **TOL)
    back = torch.fft.irfft(y, n=8)
    for q in torchlc.support(x):
        assert_close(torchlc.coeff(back, q), torchlc.coeff(x, q), **TOL)


def test_fft_of_complex_point():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, dtype=torch.complex128, generator=g)
    v = torch.randn(4, 6, dtype=torch.complex128, generator=g)
    _check(lambda z: torch.fft.fft(z, dim=0), x, v)
    _check(lambda z: torch.fft.irfft(z), x, v)


def test_fft_based_convolution_matches_jvp():
    # a typical model use: circular convolution through the FFT, with an LC signal and a plain kernel
    g = torch.Generator().manual_seed(3)
    x, v, k = (torch.randn(16, dtype=f64, generator=g) for _ in range(3))

    def conv(s):
        return torch.fft.irfft(torch.fft.rfft(s) * torch.fft.rfft(k), n=16)

    _check(conv, x, v)
