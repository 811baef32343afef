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

The compiled kernel's launcher is not a stable Triton API. It is only called on Triton versions whose
argument list we checked, and before its first use a probe kernel runs both ways and the outputs are
compared bit for bit; if they differ or the direct call fails, every launch goes through
``JITFunction.run`` (``TORCHLC_TRITON_DIRECT=0`` forces that too). Direct launches pass no Triton launch
hooks (``knobs.runtime.launch_enter_hook``, used by Triton's own profiler proton): set
``TORCHLC_TRITON_DIRECT=0`` when profiling with proton.
"""

from __future__ import annotations

import os

import torch

from ._lazy import kernels

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
    """The kernel's parameter names and defaults, in signature order (cached per kernel)."""
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
        >>> launch(_relu2_kernel, (4,), p, p, o, 4096, 4096, HAS_BIAS=False, OP=tl.float32,
        ...        BLOCK=1024)                                   # doctest: +SKIP
    """
    mode = _state["direct"]
    # CPU tensors: Triton's interpreter (TRITON_INTERPRET=1), through JITFunction.run
    if mode is False or not args[0].is_cuda:
        return kernel[grid](*args, **kwargs)
    device = _current_device()
    key = (kernel, device, *map(_arg_key, args), *kwargs.items())
    entry = _compiled.get(key)
    if entry is None:
        if mode is None:
            _state["direct"] = mode = _probe()
        compiled = kernel[grid](*args, **kwargs)
        if mode:
            _compiled[key] = _entry(compiled, mode)
        return compiled
    g = (*grid, 1, 1)
    full = _full_args(kernel, args, kwargs)
    run, function, packed = entry
    if run is None:  # "runner" mode: the compiled kernel's own runner
        function[g[:3]](*full)
    else:
        run(g[0], g[1], g[2], _raw_stream(device), function, packed, None, None, None, *full)
    return None


def _entry(compiled, mode):
    if mode == "raw":
        return compiled.run, compiled.function, compiled.packed_metadata
    return None, compiled, None


def _current_device():
    f = getattr(torch._C, "_cuda_getDevice", None)
    return f() if f is not None else torch.cuda.current_device()


def _raw_stream(device):
    return torch._C._cuda_getCurrentRawStream(device)


def __getattr__(name: str):
    # the probe kernel (:mod:`torchlc.kernels._triton_probe`), imported with Triton on first access:
    # this module is imported by ``import torchlc`` and never imports Triton itself
    if name == "_probe_kernel":
        return kernels("_triton_probe")._probe_kernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _modes():
    """Direct launch modes worth probing on this Triton: the launcher's argument list
    (grid, stream, function, packed metadata, launch metadata, two hooks, every parameter) is the one
    of Triton 3.4–3.9 (run on 3.6, read in the source of 3.9); older versions' runners took other
    arguments."""
    import triton  # already imported: a kernel is being launched

    try:
        major, minor = (int(p) for p in triton.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        return ()
    if (major, minor) >= (3, 4):
        return ("raw", "runner")
    return ("runner",) if major >= 3 else ()


def _probe():
    """How to launch compiled kernels directly: "raw" (the launcher with no launch hooks), "runner"
    (the compiled kernel's runner), or False (neither gives JITFunction.run's results here). The
    comparison syncs once, so CUDA's sync debug mode (a user's, or torchlc._graphs' check of a jet) is
    off meanwhile: it would otherwise turn the probe into a failure and direct launches off for good."""
    debug = torch.cuda.get_sync_debug_mode()
    if not debug:  # the common case; setting the mode at all makes torch warn that it is a prototype
        return _probe_modes()
    torch.cuda.set_sync_debug_mode(0)
    try:
        return _probe_modes()
    finally:
        torch.cuda.set_sync_debug_mode(debug)


def _probe_modes():
    probe = kernels("_triton_probe")._probe_kernel
    for mode in _modes():
        try:
            x = torch.arange(1000, dtype=torch.float32, device="cuda")
            want, got = torch.full_like(x, -1.0), torch.full_like(x, -2.0)
            compiled = probe[(8, 1, 1)](x, want, 1000, 0.5, SHIFT=3, BLOCK=128)
            run, function, packed = _entry(compiled, mode)
            full = _full_args(probe, (x, got, 1000, 0.5), {"SHIFT": 3, "BLOCK": 128})
            if run is None:
                function[(8, 1, 1)](*full)
            else:
                dev = _current_device()
                run(8, 1, 1, _raw_stream(dev), function, packed, None, None, None, *full)
            if bool(torch.equal(want, got)):
                return mode
        except Exception:  # noqa: BLE001, S112 - any failure means: try the next way
            continue
    return False


def direct_launches():
    """How launches go after the first one of each specialization: "raw", "runner", False (through
    JITFunction.run), or None until the first CUDA launch decides."""
    return _state["direct"]
