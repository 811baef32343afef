"""The discrete Fourier transforms: ``aten._fft_r2c``, ``aten._fft_c2c`` and ``aten._fft_c2r``.

Every ``torch.fft`` function (fft, ifft, rfft, irfft, hfft, ihfft and their 2-d and n-d forms,
``stft``) reaches one of these three primitives. Each is linear over the reals in its input:

* ``_fft_r2c`` maps a real x to (a onesided half of) F x, F the DFT matrix along ``dim``;
* ``_fft_c2c`` maps a complex z to F z or F⁻¹ z (C-linear);
* ``_fft_c2r`` maps a Hermitian half-spectrum z to the real signal whose spectrum it is: it reads
  z's real and imaginary parts (and ignores the imaginary part of the bins that must be real), which
  is R-linear, not C-linear.

So for x = Σ_q x_q ε^q, T(x) = Σ_q T(x_q) ε^q for each of them (T(λx + μy) = λT(x) + μT(y) for real
λ, μ, and the ε-powers are real scalars): every coefficient plane is transformed on its own, with the
same normalization, and the support, order and exactness carry over unchanged. The planes are
transformed in one call, the plane dimension being one more batch dimension. ``_fft_r2c`` makes an
LCTensor with complex coefficients from a real one; the other two take complex ones (see
:mod:`torchlc.ops.complex`).
"""

from __future__ import annotations

import torch

from .._algebra import Series
from .._dispatch import implements
from .._tensor import series
from ._util import out

aten = torch.ops.aten


@implements([aten._fft_r2c.default, aten._fft_c2c.default, aten._fft_c2r.default], kind="per_plane")
def fft(func, x, dim, *rest):
    s = series(x)
    n = x.dim()
    dims = [(d + n if d < 0 else d) + 1 for d in dim]  # element dims → plane-tensor dims
    return out(Series(func(s.planes, dims, *rest), s.support, s.order, s.exact))
