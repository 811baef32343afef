"""The probe kernel of :mod:`torchlc.kernels.launch` (imported, and Triton with it, by the first CUDA
launch's probe)."""

import triton
import triton.language as tl


@triton.jit
def _probe_kernel(x_ptr, o_ptr, n, scale, SHIFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    tl.store(o_ptr + offs, x * scale + SHIFT + offs, mask=m)
