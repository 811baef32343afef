"""Timing (``torch.utils.benchmark``), page faults and kernel counts (``torch.profiler``)."""

from __future__ import annotations

import math

import torch
from torch.utils.benchmark import Timer

from .config import Config
from .report import _reason

# Ops that only create views, allocate or read metadata: not counted as kernels.
_NON_KERNELS = {
    "aten::as_strided",
    "aten::select",
    "aten::slice",
    "aten::expand",
    "aten::view",
    "aten::unsqueeze",
    "aten::squeeze",
    "aten::empty",
    "aten::empty_strided",
    "aten::alias",
    "aten::result_type",
    "aten::reshape",
    "aten::t",
    "aten::transpose",
    "aten::permute",
    "aten::detach",
    "aten::narrow",
    "aten::_unsafe_view",
    "aten::lift_fresh",
    "aten::empty_like",
    "aten::resize_",
    "aten::split",
    "aten::unbind",
    "aten::_reshape_alias",
    "aten::expand_as",
    "aten::view_as",
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::is_nonzero",
    "aten::to",
    "aten::_to_copy",
    "aten::resolve_conj",
    "aten::resolve_neg",
    # views, or a copy_ below them when they copy (then that copy is the kernel counted)
    "aten::movedim",
    "aten::flatten",
    "aten::unflatten",
    "aten::contiguous",
    "aten::swapaxes",
    "aten::clone",
}


# Kernels whose tensor arguments come as a list (the profiler records no shape for those).
_LIST_KERNELS = {
    "aten::cat",
    "aten::_cat",
    "aten::index",
    "aten::index_put_",
    "aten::_index_put_impl_",
}


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, cfg: Config) -> float:
    """Seconds per call of ``fn`` (see :func:`time_many`)."""
    return time_many([fn], cfg)[0]


def time_many(fns, cfg: Config) -> list:
    """Seconds per call of each function: ``cfg.rounds`` rounds, the functions interleaved within
    each round, each round a ``Timer.blocked_autorange``; the minimum over all blocks of all rounds
    (load from other processes only ever adds time). A function that raises gets ``'n/a: ...'``."""
    res = [None] * len(fns)
    timers = []
    for i, fn in enumerate(fns):
        try:
            fn()  # warm-up (and compilation)
            _sync(cfg.device)
            timers.append(
                (i, Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()))
            )
        except Exception as e:  # a failure is a result, not a crash
            res[i] = _reason(e)
    for _ in range(cfg.rounds):
        for i, t in timers:
            best = min(t.blocked_autorange(min_run_time=cfg.min_run_time).times)
            res[i] = best if res[i] is None else min(res[i], best)
    return res


def page_faults(fn, n: int = 10):
    """Minor page faults per call of ``fn`` (``getrusage``): fresh memory the allocator had to map.
    On CPU a large temporary that glibc returns to the OS and maps again costs more than the
    arithmetic on it. CUDA: not applicable."""
    if not torch.cuda.is_available() or not _on_cuda(fn):
        try:
            import resource

            fn()
            r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(n):
                fn()
            return f"{(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / n:.0f}"
        except Exception:
            return "n/a"
    return "n/a"


def _on_cuda(fn) -> bool:
    args = getattr(fn, "args", ())
    return any(isinstance(a, torch.Tensor) and a.is_cuda for a in args)


def kernel_names(fn) -> list[str]:
    """Compute kernels launched by one call of ``fn``: aten ops (other than views and metadata) with
    no such op below them, in launch order (``torch.profiler``). An LC op's own outer aten event
    reaches its rule's kernels through a ``PythonSubclass`` event, so it is not counted."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [e.name[len("aten::") :] for e in _aten_kernels(prof)]


def kernels_per_range(fn, prefix: str, cuda: bool, launches: str | None = None) -> dict:
    """``{name: [calls, kernels]}`` over one call of ``fn``, for the ``record_function`` ranges whose
    names start with ``prefix`` (outermost ones only; a range nested in another counts in it). Kernels
    are the aten compute ops of :func:`kernel_names` and the ranges named ``launches`` (a caller's
    mark around its own kernel launches, e.g. Triton's), each given to the range whose host time
    holds it. All are host-side events on one clock (the CUDA runtime's launch events are not: their
    timestamps placed launches on the wrong side of short ranges)."""
    import bisect

    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
        _sync("cuda" if cuda else "cpu")
    evs = prof.events()
    marks = sorted((e.time_range.start, e.time_range.end) for e in evs if launches and e.name == launches)
    mark_starts = [a for a, _ in marks]

    def in_mark(t):  # inside a launch mark (Triton's interpreter runs aten ops there): not the rule's
        i = bisect.bisect_right(mark_starts, t) - 1
        return i >= 0 and t <= marks[i][1]

    starts = sorted([e.time_range.start for e in _aten_kernels(prof) if not in_mark(e.time_range.start)]
                    + mark_starts)
    ranges = sorted((e for e in evs if e.name.startswith(prefix)), key=lambda e: e.time_range.start)
    res: dict = {}
    end = -1
    for r in ranges:
        if r.time_range.start < end:  # nested in the previous outermost range
            continue
        end = r.time_range.end
        k = bisect.bisect_right(starts, end) - bisect.bisect_left(starts, r.time_range.start)
        c = res.setdefault(r.name[len(prefix) :], [0, 0])
        c[0] += 1
        c[1] += k
    return res


def _aten_kernels(prof) -> list:
    """The profiled aten compute ops with no compute op below them (see :func:`kernel_names`),
    in launch order."""

    def counted(e):
        if not e.name.startswith("aten::") or e.name in _NON_KERNELS:
            return False
        # wrapping a Python number into a 0-dim tensor (scalar_tensor, copy_ of one element, ...)
        # (0-dim or non-tensor inputs only): not a kernel over the data
        # (tensor-list arguments show as [] too: cat/stack are always counted)
        if e.name in _LIST_KERNELS:
            return True
        shapes = [s for s in (e.input_shapes or []) if isinstance(s, list)]
        return any(math.prod(s) > 1 for s in shapes if s)

    def has_kernel_below(e):
        return any(counted(c) or has_kernel_below(c) for c in e.cpu_children)

    evs = [e for e in prof.events() if counted(e) and not has_kernel_below(e)]
    evs.sort(key=lambda e: e.time_range.start)
    return evs


def count_kernels(fn) -> int:
    """Number of compute kernels one call of ``fn`` launches (see :func:`kernel_names`)."""
    return len(kernel_names(fn))


def host_time(fn, device: str, n: int = 5) -> float:
    """Seconds of host time per call of ``fn``, the minimum over ``n`` calls (load from other processes
    only ever adds time): from the call to its return, the device idle before each call (on CUDA the
    kernels it queued may still be running when it returns)."""
    import time

    fn()
    ts = []
    for _ in range(n):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    _sync(device)
    return min(ts)


def device_profile(fn, n: int = 3) -> tuple[float, float]:
    """CUDA: ``(device seconds, device activities)`` per call of ``fn`` from ``torch.profiler``: the
    summed duration and number of the GPU's events (kernels, memcpy and memset), over ``n`` calls."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    evs = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    return sum(e.time_range.elapsed_us() for e in evs) * 1e-6 / n, len(evs) / n
