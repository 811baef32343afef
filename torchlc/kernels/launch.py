"""Triton launches without ``JITFunction.run``'s per-call work.

``kernel[grid](*args)`` binds the arguments, computes Triton's specialization key and looks the kernel
up in its cache on every call: ~25 µs of host time per launch on the H100 machine (Triton 3.6), more
than a small kernel takes to run, and the reason a one-kernel LC rule cost 3–4 plain torch ops. Here the
first launch of each specialization goes through ``JITFunction.run`` (which compiles the kernel or loads
it from Triton's disk cache, and returns it); later launches with the same key call that compiled
kernel's launcher directly (~10 µs).

The key is at least as fine as Triton's own specialization: the dtype and 16-byte alignment of every
tensor argument; for every integer whether it is 1, whether it divides by 16 and whether it fits 32
bits; the type of every other argument; every constexpr and launch option; the current device. So the
cached kernel is the one ``JITFunction.run`` would have picked.

The compiled kernel's launcher is not a stable Triton API. Before its first use a probe kernel runs
both ways and the outputs are compared bit for bit; if they differ or the direct call fails, every
launch goes through ``JITFunction.run`` (``TORCHLC_TRITON_DIRECT=0`` forces that too).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is an optional extra
    triton = None

_OPTIONS = frozenset({"num_warps", "num_stages", "num_ctas", "maxnreg"})
_state = {"direct": None if os.environ.get("TORCHLC_TRITON_DIRECT", "1") != "0" else False}
_compiled: dict = {}
_layouts: dict = {}


def _arg_key(a):
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if type(a) is int:
        return int, a == 1, a % 16 == 0, -(2**31) <= a < 2**31
    return type(a)


def _layout(kernel):
    """The kernel's parameters: names in order and which of them are constexprs (cached per kernel)."""
    lay = _layouts.get(kernel)
    if lay is None:
        params = kernel.params
        lay = _layouts[kernel] = (
            tuple(p.name for p in params),
            tuple(p.default for p in params),
        )
    return lay


def _full_args(kernel, args, kwargs):
    """Every parameter's value in signature order (constexprs included), as the launcher takes them."""
    names, defaults = _layout(kernel)
    if len(args) == len(names):
        return args
    full = list(args)
    for name, default in zip(names[len(args) :], defaults[len(args) :]):
        full.append(kwargs[name] if name in kwargs else default)
    return full


def launch(kernel, grid, *args, **kwargs):
    """``kernel[grid](*args, **kwargs)``, through the compiled kernel's launcher once it is known.

    ``grid`` is a tuple of 1–3 ints (no callables); the first argument is a tensor (its device decides:
    CPU tensors run under Triton's interpreter, through ``JITFunction.run``); keyword arguments are
    constexprs or launch options (``num_warps``, ...).

    Example::

        >>> from torchlc.kernels.elementwise import _relu2_kernel
        >>> p = torch.randn(2, 4096, device="cuda")               # doctest: +SKIP
        >>> o = torch.empty_like(p)                               # doctest: +SKIP
        >>> launch(_relu2_kernel, (4,), p, o, 4096, BLOCK=1024)   # doctest: +SKIP
    """
    direct = _state["direct"]
    if direct is False or not args[0].is_cuda:  # the interpreter (TRITON_INTERPRET=1) runs on CPU tensors
        return kernel[grid](*args, **kwargs)
    key = (kernel, torch.cuda.current_device(), *map(_arg_key, args), *kwargs.items())
    compiled = _compiled.get(key)
    if compiled is None:
        if direct is None:
            _state["direct"] = direct = _probe()
        compiled = kernel[grid](*args, **kwargs)
        if direct:
            _compiled[key] = compiled
        return compiled
    g = grid if len(grid) == 3 else (*grid, 1, 1)[:3]
    compiled[g](*_full_args(kernel, args, kwargs))
    return compiled


if triton is not None:

    @triton.jit
    def _probe_kernel(x_ptr, o_ptr, n, scale, SHIFT: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m)
        tl.store(o_ptr + offs, x * scale + SHIFT + offs, mask=m)


def _probe() -> bool:
    """Whether launching through the compiled kernel's launcher gives JITFunction.run's results."""
    try:
        x = torch.arange(1000, dtype=torch.float32, device="cuda")
        want, got = torch.full_like(x, -1.0), torch.full_like(x, -2.0)
        compiled = _probe_kernel[(8, 1, 1)](x, want, 1000, 0.5, SHIFT=3, BLOCK=128)
        compiled[(8, 1, 1)](
            *_full_args(_probe_kernel, (x, got, 1000, 0.5), {"SHIFT": 3, "BLOCK": 128})
        )
        return bool(torch.equal(want, got))
    except Exception:  # noqa: BLE001 - any failure means: use JITFunction.run
        return False


def direct_launches() -> bool | None:
    """Whether launches go through compiled launchers (None until the first CUDA launch decides)."""
    return _state["direct"]
