"""NaN-boxed monomials: one 64-bit word per element.

An element c·ε^q is stored as
* the float64 value of c when q = 0 (plain reals, including real NaN/inf, canonicalised) or c = 0;
* otherwise a quiet-NaN word ``0x7FF8_0000_0000_0000 | (t+1) << 32 | bits(float32(c))`` whose 19-bit
  payload ``t+1`` indexes the tensor's static support (so any rational exponent is stored exactly) and
  whose low 32 bits are the float32 coefficient.

Only float32/bfloat16/float16 coefficients are boxed (they convert to float32 and back exactly);
float64 coefficients stay on planes. Boxed words must never pass through a float cast: ``.to`` of a
boxed tensor decodes first. Sign bit set or payload zero means a real NaN.
"""

from __future__ import annotations

import torch

from ._base import Layout, register

QNAN = 0x7FF8000000000000
TAG_BITS = 19
MAX_TERMS = (1 << TAG_BITS) - 1
BOXABLE = (torch.float32, torch.bfloat16, torch.float16)


def can_box(dtype, support) -> bool:
    return dtype in BOXABLE and len(support) <= MAX_TERMS


def encode(planes: torch.Tensor, support) -> torch.Tensor:
    """Encode monomial planes (T, *shape) (at most one nonzero term per element) as float64 words."""
    nz = planes != 0
    t = nz.to(torch.uint8).argmax(0)  # first nonzero plane (0 if none)
    if 0 in support and support[0] != 0:  # an all-zero element keeps its ε⁰ plane (sign of -0.0)
        t = torch.where(nz.any(0), t, support.index(0))
    c = planes.gather(0, t.unsqueeze(0)).squeeze(0).to(torch.float32)
    real = c.to(torch.float64)
    real = torch.where(torch.isnan(real), torch.full_like(real, float("nan")), real)
    zero_exp = torch.tensor([q == 0 for q in support], device=planes.device)[t.long()]
    bits = c.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    word = (t.to(torch.int64) + 1).bitwise_left_shift(32) | bits | QNAN
    keep_real = zero_exp | (c == 0)
    return torch.where(keep_real, real.view(torch.int64), word).view(torch.float64)


def decode(boxed: torch.Tensor, support, dtype) -> torch.Tensor:
    """Planes (T, *shape) of ``dtype`` from boxed words."""
    w = boxed.view(torch.int64)
    tag = w.bitwise_right_shift(32) & MAX_TERMS
    is_box = (w >= 0) & ((w & QNAN) == QNAN) & (tag != 0)
    coeff = w.bitwise_left_shift(32).bitwise_right_shift(32).to(torch.int32).view(torch.float32)
    zero_pos = support.index(0) if 0 in support else 0
    t = torch.where(is_box, tag - 1, torch.full_like(tag, zero_pos))
    vals = torch.where(is_box, coeff.to(torch.float64), boxed).to(dtype)
    planes = vals.new_zeros((len(support), *boxed.shape))
    return planes.scatter_(0, t.unsqueeze(0), vals.unsqueeze(0))


class Boxed(Layout):
    name = "boxed"
    inner_names = ("_t0",)
    element_dims_offset = 0  # one word per element: views and joins run on the words
    monomial_only = True

    def encode(self, planes, support):
        # "monomial" is static; an element outside the field can still hold several non-finite terms
        # (NaN · LC, 1/0): a boxed word keeps one term, so such a tensor stays on planes (one sync,
        # on this eager-only compact path)
        if planes.shape[0] > 1 and bool(((planes != 0).sum(0) > 1).any()):
            return None
        return (encode(planes, support),)

    def decode(self, inner, support, shape, dtype):
        return decode(inner[0], support, dtype)

    def strides(self, inner):
        return inner[0].stride()

    def fits(self, planes, support, monomial, forced):
        return monomial and can_box(planes.dtype, support) and (len(support) >= 2 or forced)


BOXED = register(Boxed())
