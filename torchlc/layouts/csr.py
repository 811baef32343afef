"""Compressed sparse rows over elements: for the flattened tensor, ``row_ptr`` (numel+1,) int64,
``idx`` (nnz,) int32 indices into the static support and ``vals`` (nnz,) coefficients, rows sorted by
exponent. Only nonzero terms are stored, so ragged or very wide supports cost O(nnz).
Encoding needs the data-dependent nnz (one host sync); keep CSR out of hot paths.
"""

from __future__ import annotations

import torch

from ._base import Layout, register


def encode(planes: torch.Tensor):
    T = planes.shape[0]
    flat = planes.reshape(T, -1)
    n = flat.shape[1]
    row, col = (flat.t() != 0).nonzero(as_tuple=True)  # row-major: by element, then exponent
    vals = flat[col, row]
    counts = torch.bincount(row, minlength=n)
    row_ptr = torch.zeros(n + 1, dtype=torch.int64, device=planes.device)
    row_ptr[1:] = counts.cumsum(0)
    return row_ptr, col.to(torch.int32), vals


def decode(inner, T: int, shape, dtype) -> torch.Tensor:
    row_ptr, idx, vals = inner
    n = row_ptr.numel() - 1
    rows = torch.repeat_interleave(torch.arange(n, device=vals.device), row_ptr.diff())
    planes = torch.zeros((T, n), dtype=dtype, device=vals.device)
    planes[idx.long(), rows] = vals.to(dtype)
    return planes.reshape(T, *shape)


# a support wider than this many exponents is stored as CSR when the tensor allows it
CSR_MIN_TERMS = 32


class CSR(Layout):
    name = "csr"
    inner_names = ("_t0", "_t1", "_t2")

    def encode(self, planes, support):
        return encode(planes)

    def decode(self, inner, support, shape, dtype):
        return decode(inner, len(support), tuple(shape), dtype)

    def fits(self, planes, support, monomial, forced):
        return forced or len(support) > CSR_MIN_TERMS


CSR_LAYOUT = register(CSR())
