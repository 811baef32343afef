"""Compressed sparse rows over elements, with exact per-element exponents (see :mod:`torchlc._ragged`).

For the flattened tensor: ``row_ptr`` (numel+1,) int64, ``num`` (nnz,) int64 exponent numerators,
``vals`` (nnz,) coefficients, and ``meta`` = [den, lo, hi] (a 3-element int64 tensor on the CPU: the
common denominator of the exponents and bounds on the numerators). Element i holds
Σ vals[k] ε^{num[k]/den} for k in row_ptr[i]:row_ptr[i+1], exponents strictly increasing. Only the
terms are stored, so ragged or very wide supports cost O(nnz), and the exponents need not come from
one short static support: each element has its own.

The support of a CSR tensor is *lazy*: a tensor built by the native CSR rules (``torchlc.ops.ragged``)
or by :func:`torchlc.from_csr` has none until something asks for it (``lc_support``, or a rule without
a native CSR version, which decodes to planes); it is then the set of exponents the tensor stores.
Encoding from planes needs the data-dependent nnz (one host sync).
"""

from __future__ import annotations

import torch

from .. import _ragged as R
from ._base import NATIVE_SEEN, Layout, register

# The storage policy (measured crossover in docs/layouts.md, "When CSR pays"). Planes cost T cells
# per element (T = distinct exponents); CSR one (exponent, coefficient) pair per stored term plus a
# row pointer, and its ops sort. A planes result moves to CSR when its support is wider than
# CSR_MIN_TERMS exponents *and* it has more than SPARSE_RATIO plane cells per stored term; a CSR
# result moves back to planes when at most SPARSE_RATIO cells per term would do (its exponents span
# at most SPARSE_RATIO·nnz/numel values).
CSR_MIN_TERMS = 32
SPARSE_RATIO = 4


def ragged(inner, shape, order=None, exact=None) -> R.Ragged:
    """The :class:`~torchlc._ragged.Ragged` view of CSR inner tensors."""
    ptr, num, vals, meta = inner
    den, lo, hi = meta.tolist()
    return R.Ragged(ptr, num, vals, den, lo, hi, shape, order, exact)


def inner_of(r: R.Ragged) -> tuple:
    NATIVE_SEEN[0] = True  # from now on dispatch consults the layouts' native rule tables
    return (r.ptr, r.num, r.vals, torch.tensor([r.den, r.lo, r.hi], dtype=torch.int64))


def encode(planes: torch.Tensor, support) -> tuple:
    return inner_of(R.from_planes(planes, support, None, None))


def decode(inner, support, shape, dtype) -> torch.Tensor:
    return R.to_planes(ragged(inner, tuple(shape)), support, dtype)


def sparse(planes: torch.Tensor, support) -> bool:
    """Whether planes over ``support`` hold more than SPARSE_RATIO cells per nonzero term (one pass
    over the data and one host sync)."""
    n = planes[0].numel() if planes.dim() > 1 else 1
    return len(support) * n > SPARSE_RATIO * int((planes != 0).sum())


class CSR(Layout):
    name = "csr"
    inner_names = ("_t0", "_t1", "_t2", "_t3")

    def encode(self, planes, support):
        try:
            return encode(planes, support)
        except R.RaggedOverflow:  # exponents whose common denominator leaves int64: stay on planes
            return None

    def decode(self, inner, support, shape, dtype):
        return decode(inner, support, shape, dtype)

    def support(self, inner):
        return R.support_of(ragged(inner, ()))

    def fits(self, planes, support, monomial, forced):
        return forced or (len(support) > CSR_MIN_TERMS and sparse(planes, support))

    def nbytes(self, inner):
        return sum(t.numel() * t.element_size() for t in inner[:3])  # meta is 3 ints of metadata


CSR_LAYOUT = register(CSR())
