"""Ops about where values sit in memory: ``prims.copy_strided`` and ``aten.put``.

* ``copy_strided(x, stride)`` copies x into a fresh tensor with the given element strides. It moves
  data and never combines coefficients, so every term is copied alike: the storage gets the requested
  element strides, its leading (plane) dimension the span they cover. PyTorch's references use it to
  give a result the strides of a non-contiguous input (``lerp``, ``where``, …).
* ``put(x, index, source, accumulate)`` writes (or, accumulating, adds) ``source``'s elements into
  x's flattened positions ``index``. It is linear in (x, source) jointly — put(x + y, i, s + t) =
  put(x, i, s) + put(y, i, t), for writing as for adding — so it runs on every coefficient plane:
  plane q of the result is put(x_q, index, source_q), over the union of the two supports.
"""

from __future__ import annotations

import torch

from .._dispatch import implements
from .shape import per_plane, structural

aten = torch.ops.aten
prims = torch.ops.prims


@implements([prims.copy_strided.default], kind="structural")
def copy_strided(func, x, stride):
    stride = tuple(int(s) for s in stride)

    def fn(t, k):
        elems = t.shape[k:]
        span = 1 + sum((n - 1) * s for n, s in zip(elems, stride)) if all(n > 0 for n in elems) else 0
        lead = []  # the leading (plane) dimensions, each spanning a whole copy
        for n in reversed(t.shape[:k]):
            lead.insert(0, span)
            span *= n
        r = torch.empty_strided(t.shape, (*lead, *stride), dtype=t.dtype, device=t.device)
        return r.copy_(t)

    return structural(x, fn, False)


@implements([aten.put.default], kind="per_plane")
def put(func, x, index, source, accumulate=False):
    return per_plane(func, (x, index, source, accumulate), {}, (0, 2))
