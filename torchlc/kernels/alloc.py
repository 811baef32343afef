"""Large CPU result buffers on transparent huge pages.

glibc serves every block above its largest mmap threshold (32 MiB on 64-bit) with a fresh ``mmap``,
and the kernel then faults it in 4 KiB page by page on first write. A higher-order result of 10⁶
float64 elements (7 planes at order 6: 56 MB) is such a block: faulting it in cost 18–40 ms on the
2-core dev VM (a Firecracker guest, ~4 µs a fault), several times the arithmetic written into it.
Marking the block ``MADV_HUGEPAGE`` before the first write lets the kernel back it with 2 MiB pages
(512× fewer faults; 56 MB then costs ~4 ms), where transparent huge pages are in ``madvise`` mode (the
common default). It is a hint on memory the buffer alone owns: nothing else changes, and on systems
without it (other OSes, THP ``never`` or ``always``) the buffer is a plain ``torch.empty``. Set
``TORCHLC_HUGEPAGES=0`` to turn it off.
"""

from __future__ import annotations

import os
import sys

import torch
import torch._prims_common as _prims_common

MIN_BYTES = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX: smaller blocks are reused from the heap
_HUGE = 2 << 20
_MADV_HUGEPAGE = 14
_madvise = None  # the libc function once loaded; False when unavailable


def _load():
    global _madvise
    _madvise = False
    if not sys.platform.startswith("linux") or os.environ.get("TORCHLC_HUGEPAGES", "1") == "0":
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        _madvise = fn
    except (OSError, AttributeError):
        pass


def empty(shape, dtype, device, like=None) -> torch.Tensor:
    """``torch.empty(shape)``; on Linux CPU, a block of at least ``MIN_BYTES`` is advised onto huge
    pages before anything is written into it.

    ``like``: a tensor of the element shape ``shape[1:]`` whose memory order each plane takes when it
    is a dense permutation (channels-last): kernels reading it and writing the planes then see one
    memory order. A mixed order sends TensorIterator to its element-by-element loop, whose roundings
    can differ from the vectorised one (CPU addcmul: a fused multiply-add or not), so values would
    depend on the input's memory format."""
    if (like is not None and tuple(like.shape) == tuple(shape[1:]) and not like.is_contiguous()
            and _prims_common.is_non_overlapping_and_dense_or_false(like)):
        t = torch.empty_strided(shape, (like.numel(), *like.stride()), dtype=dtype, device=device)
    else:
        t = torch.empty(shape, dtype=dtype, device=device)
    if t.device.type != "cpu" or t.numel() * t.element_size() < MIN_BYTES:
        return t
    if _madvise is None:
        _load()
    if _madvise:
        start = t.data_ptr()
        lo = (start + _HUGE - 1) & ~(_HUGE - 1)
        hi = (start + t.numel() * t.element_size()) & ~(_HUGE - 1)
        if hi > lo:
            _madvise(lo, hi - lo, _MADV_HUGEPAGE)  # a hint: failure changes nothing
    return t
