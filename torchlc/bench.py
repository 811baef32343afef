"""torchlc benchmarks: ``python -m torchlc.bench`` (never part of the test suite).

Sections (``--only`` picks some of them):

* ``core``   — add, mul, sin, abs, floor, heaviside on 10⁶-element first-order inputs ``x.nonstd(v)``
  as a ratio to the plain torch op on the same data in the same run (``torch.utils.benchmark.Timer``,
  ``blocked_autorange``). Bars: add/mul ≤ 5×, analytic and discontinuous ≤ 10×. The ``kernels``
  column counts the compute kernels (leaf aten ops other than views/metadata) one LC op launches,
  measured with ``torch.profiler``.
* ``bytes``  — storage bytes per element of each layout (``torchlc.layouts.bytes_per_element``).
* ``memory`` — peak memory of one op, plain vs LC. CUDA: ``torch.cuda.max_memory_allocated`` above the
  live baseline. CPU: tracemalloc does not see torch's allocator, so the peak resident set is used:
  ``/proc/self/clear_refs`` is reset (``5``), the op runs, and ``VmHWM`` (peak RSS) minus the ``VmRSS``
  before the op is reported. It runs in a child process in which glibc's ``mallopt`` forces every
  allocation ≥ 64 KiB through mmap/munmap, so freed tensors leave the RSS at once and the number is
  the op's own peak (inputs excluded, output and temporaries included).
* ``small``  — µs per op on small tensors (64×64): add, mul, mm, sin, relu, for plain tensors,
  LCTensors and ``torch.autograd.forward_ad`` dual tensors (the Python dispatch floor).
* ``models`` — MLP (4 × Linear 1024 + ReLU) and TransformerEncoder (d 256, 4 layers, nhead 4, seq 128)
  forward under ``no_grad`` in eval mode: plain, plain on twice the rows (the two-plane bound),
  ``torch.func.jvp`` and LC (``model(x.nonstd(v))``), fp32 and bf16, eager and ``torch.compile``
  (``fullgraph=True``; a failure is reported as ``n/a: <reason>``).
* ``attention`` — causal ``F.scaled_dot_product_attention`` on first-order q, k, v (views of (B, L, H,
  D) projections), bf16 on CUDA (float32 on CPU): plain, 2×rows, ``torch.func.jvp`` (math backend,
  the only one with forward AD), LC, and LC with the flash-style jet turned off (the formulas, which
  write the score and weight planes), with peak memory on CUDA.

Sizes: ``--quick`` is tiny (CI smoke test); the default on CPU shrinks the model batches (MLP batch
1024 instead of 4096, Transformer batch 8 instead of 32) so the run finishes in minutes on 2 cores;
``--device cuda`` uses the full sizes of the issues.

Output is markdown, printed and, with ``--md FILE --section NAME``, written into FILE under the
heading ``## NAME`` (replacing that section if it exists, appending it otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

import torchlc

SECTIONS = ("core", "bytes", "memory", "small", "models", "attention")

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
}


# Kernels whose tensor arguments come as a list (the profiler records no shape for those).
_LIST_KERNELS = {
    "aten::cat",
    "aten::_cat",
    "aten::index",
    "aten::index_put_",
    "aten::_index_put_impl_",
}

# -------------------------------------------------------------------------------------------------
# configuration


@dataclass
class Config:
    device: str = "cpu"
    quick: bool = False
    min_run_time: float = 0.5
    rounds: int = 3
    n_core: int = 10**6
    small: int = 64
    mlp_width: int = 1024
    mlp_batch: int = 4096
    tf_d: int = 256
    tf_layers: int = 4
    tf_heads: int = 4
    tf_seq: int = 128
    tf_batch: int = 32
    tf_ff: int = 2048
    attention: tuple = ((8, 16, 1024, 64), (4, 16, 4096, 64))  # (B, H, L, D)
    compile: bool = True
    dtypes: tuple = ("float32", "bfloat16")
    models: tuple = ()  # model names to run (default: all)
    modes: tuple = ()  # model modes to run, e.g. "compiled, CUDA graphs" (default: all)
    notes: list = field(default_factory=list)
    extra_notes: tuple = ()

    @classmethod
    def make(cls, args) -> Config:
        c = cls(device=args.device)
        if args.quick:
            c.quick = True
            c.min_run_time = 0.01
            c.rounds = 1
            c.n_core = 10**4
            c.small = 8
            c.mlp_width, c.mlp_batch = 32, 16
            c.tf_d, c.tf_layers, c.tf_heads, c.tf_seq, c.tf_batch, c.tf_ff = 16, 1, 2, 8, 2, 32
            c.attention = ((1, 2, 8, 16),)
            c.compile = False
            c.notes.append("--quick: tiny sizes for the CI smoke test; numbers are not meaningful")
        elif c.device == "cpu":
            c.mlp_batch, c.tf_batch = 1024, 8
            c.attention = ((2, 8, 512, 64),)
            c.notes.append(
                "CPU: MLP batch 1024 (not 4096), Transformer batch 8 (not 32) and attention B 2, H 8, "
                "L 512 so the run finishes in minutes; every other size is as in the issues"
            )
        c.extra_notes = tuple(args.note or ())
        if args.rounds is not None:
            c.rounds = args.rounds
        if args.min_run_time is not None:
            c.min_run_time = args.min_run_time
        if args.n is not None:
            c.n_core = args.n
        if args.compile is not None:
            c.compile = args.compile
        if args.dtypes:
            c.dtypes = tuple(args.dtypes.split(","))
        c.models = tuple(m.strip() for m in (args.models or "").split(",") if m.strip())
        c.modes = tuple(m.strip() for m in (args.modes or "").split(";") if m.strip())
        return c


# -------------------------------------------------------------------------------------------------
# helpers


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
    return [e.name[len("aten::") :] for e in evs]


def count_kernels(fn) -> int:
    """Number of compute kernels one call of ``fn`` launches (see :func:`kernel_names`)."""
    return len(kernel_names(fn))


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = msg.replace("|", "/")
    if len(msg) > 70:
        msg = msg[:67] + "..."
    return f"n/a: {type(e).__name__}: {msg}" if msg else f"n/a: {type(e).__name__}"


def _ms(t):
    return f"{t * 1e3:.3f}" if isinstance(t, float) else str(t)


def _us(t):
    return f"{t * 1e6:.1f}" if isinstance(t, float) else str(t)


def _ratio(a, b):
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return f"{a / b:.2f}×"
    return "n/a"


def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(cfg: Config) -> str:
    dev = torch.cuda.get_device_name() if cfg.device == "cuda" else _cpu_name()
    try:
        commit = (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or "unknown"
        )
    except Exception:
        commit = "unknown"
    rows = [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        (
            "torch",
            torch.__version__ + (f" (CUDA {torch.version.cuda})" if cfg.device == "cuda" else ""),
        ),
        ("torchlc", f"{torchlc.__version__} (git {commit})"),
        ("python", platform.python_version()),
        ("device", f"{cfg.device}: {dev}"),
        ("CPU count", f"{os.cpu_count()} (torch threads {torch.get_num_threads()})"),
        ("load average", " ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min, at start)"),
        (
            "dtype",
            "float32 for core/bytes/memory/small; " + " and ".join(cfg.dtypes) + " for models; "
            + str(_attention_dtype(cfg)).removeprefix("torch.") + " for attention",
        ),
        (
            "timer",
            f"torch.utils.benchmark.Timer.blocked_autorange(min_run_time={cfg.min_run_time}); "
            f"minimum over blocks of {cfg.rounds} rounds, the compared variants interleaved",
        ),
        ("command", "python -m torchlc.bench " + " ".join(sys.argv[1:])),
    ]
    text = md_table(["", ""], rows)
    notes = cfg.notes + list(cfg.extra_notes)
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


# -------------------------------------------------------------------------------------------------
# core ops


def _core_ops():
    return [
        ("add", "arith", 5.0, lambda a, b, z: a + b),
        ("mul", "arith", 5.0, lambda a, b, z: a * b),
        ("sin", "analytic", 10.0, lambda a, b, z: torch.sin(a)),
        ("abs", "discontinuous", 10.0, lambda a, b, z: torch.abs(a)),
        ("floor", "discontinuous", 10.0, lambda a, b, z: torch.floor(a)),
        ("heaviside", "discontinuous", 10.0, lambda a, b, z: torch.heaviside(a, z)),
    ]


def _core_inputs(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, v, y, w = (torch.randn(n, generator=g).to(device) for _ in range(4))
    # some exact kinks so the discontinuous rules see ties (integers for floor, zeros for abs)
    x[: n // 100] = torch.round(x[: n // 100])
    z = torch.zeros((), device=device)
    return x, v, y, w, z


def bench_core(cfg: Config):
    x, v, y, w, z = _core_inputs(cfg.n_core, cfg.device)
    lx, ly = x.nonstd(v), y.nonstd(w)
    rows, data = [], []
    for name, kind, bar, f in _core_ops():
        tp, tl = time_many([partial(f, x, y, z), partial(f, lx, ly, z)], cfg)
        fp, fl = page_faults(partial(f, x, y, z)), page_faults(partial(f, lx, ly, z))
        try:
            kn = kernel_names(partial(f, lx, ly, z))
            k = f"{len(kn)}: {' '.join(kn)}" if len(kn) <= 12 else str(len(kn))
            layout = torchlc.layout(f(lx, ly, z))
        except Exception:  # an LC failure is a result (tl says why), not a crash
            k, layout = "", ""
        ratio = tl / tp if isinstance(tl, float) else None
        verdict = "n/a" if ratio is None else ("PASS" if ratio <= bar else "FAIL")
        rows.append(
            (
                name,
                kind,
                _ms(tp),
                _ms(tl),
                _ratio(tl, tp),
                f"≤ {bar:g}×",
                verdict,
                k,
                layout,
                fp,
                fl,
            )
        )
        data.append(
            dict(
                op=name,
                plain_s=tp,
                lc_s=tl if isinstance(tl, float) else None,
                ratio=ratio,
                bar=bar,
                kernels=k,
                layout=layout,
                faults_plain=fp,
                faults_lc=fl,
            )
        )
    head = [
        "op",
        "kind",
        "plain ms",
        "LC ms",
        "LC/plain",
        "bar",
        "result",
        "LC kernels",
        "out layout",
        "page faults/call plain",
        "page faults/call LC",
    ]
    title = (
        f"{cfg.n_core:,} elements, float32, first order (x.nonstd(v)); binary ops take y.nonstd(w)."
    )
    return title + "\n\n" + md_table(head, rows), data


# -------------------------------------------------------------------------------------------------
# bytes per element


def bench_bytes(cfg: Config):
    n = min(cfg.n_core, 10**5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, generator=g).to(cfg.device)
    v = torch.randn(n, generator=g).to(cfg.device)
    lay = torchlc.layouts
    k = torch.arange(n, device=cfg.device) % 3
    c = torch.randn(n, generator=g).to(cfg.device)
    mono_terms = {q: torch.where(k == i, c, torch.zeros_like(c)) for i, q in enumerate((-1, 0, 1))}
    cases = [
        ("plain float32 tensor", lambda: None, x.element_size()),
        ("planes, first order x.nonstd(v) (2 planes)", lambda: x.nonstd(v), None),
        (
            "planes, order 3 x.nonstd(v, order=3)**3 (4 planes)",
            lambda: x.nonstd(v, order=3) ** 3,
            None,
        ),
        (
            "boxed, monomial with per-element exponents {-1, 0, 1}",
            lambda: torchlc.from_terms(mono_terms),
            None,
        ),
        (
            "boxed, torchlc.leading(x.nonstd(v) - x) (monomial ε¹)",
            lambda: _boxed_leading(x, v),
            None,
        ),
        (
            "csr, first order (layouts.force('csr'))",
            lambda: _forced("csr", lambda: x.nonstd(v) * 1),
            None,
        ),
        (
            "csr, monomial {-1, 0, 1} (layouts.force('csr'))",
            lambda: _forced("csr", lambda: torchlc.from_terms(mono_terms)),
            None,
        ),
    ]
    rows = []
    for label, make, fixed in cases:
        if fixed is not None:
            rows.append((label, "plain", "1", f"{fixed:g}"))
            continue
        try:
            t = make()
            rows.append(
                (label, torchlc.layout(t), len(torchlc.support(t)), f"{lay.bytes_per_element(t):g}")
            )
        except Exception as e:
            rows.append((label, _reason(e), "", ""))
    note = (
        f"{n:,} elements, float32 coefficients; inner tensors only "
        "(`torchlc.layouts.bytes_per_element`). CSR: row_ptr int64 (numel+1) + idx int32 + vals per "
        "nonzero term."
    )
    return note + "\n\n" + md_table(["tensor", "layout", "support size", "bytes/element"], rows)


def _forced(name, fn):
    with torchlc.layouts.force(name):
        return fn()


def _boxed_leading(x, v):
    t = torchlc.leading(x.nonstd(v) - x)
    if torchlc.layout(t) != "boxed":
        with torchlc.layouts.force("boxed"):
            t = torchlc.leading(x.nonstd(v) - x)
    return t


# -------------------------------------------------------------------------------------------------
# peak memory


def _proc_status(key) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _rss_peak(fn) -> int:
    base = _proc_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS (Linux ≥ 4.0)
    out = fn()
    peak = _proc_status("VmHWM")
    del out
    return peak - base


def _memory_worker(n: int, tune_malloc: bool = True) -> dict:
    """Runs in a child process: per-op peak RSS above the baseline, plain and LC."""
    import ctypes

    if tune_malloc:
        try:
            libc = ctypes.CDLL("libc.so.6")
            # M_MMAP_THRESHOLD fixed at 64 KiB: big blocks are munmap'd on free
            libc.mallopt(-3, 64 * 1024)
            libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
        except OSError:
            pass
        torch.set_num_threads(1)
    x, v, y, w, z = _core_inputs(n, "cpu")
    lx, ly = x.nonstd(v), y.nonstd(w)
    gc.collect()  # once: tensors are freed by refcount, and a collection costs ~0.3 s
    res = {}
    for name, _, _, f in _core_ops():
        f(x, y, z), f(lx, ly, z)  # warm-up (lazy imports, caches)
        p = min(_rss_peak(partial(f, x, y, z)) for _ in range(3))
        try:
            q = min(_rss_peak(partial(f, lx, ly, z)) for _ in range(3))
        except Exception as e:
            q = _reason(e)
        res[name] = (p, q)
    return res


def _cuda_peak(fn) -> int:
    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def bench_memory(cfg: Config):
    n = cfg.n_core
    if cfg.device == "cuda":
        x, v, y, w, z = _core_inputs(n, "cuda")
        lx, ly = x.nonstd(v), y.nonstd(w)
        res = {}
        for name, _, _, f in _core_ops():
            try:
                q = _cuda_peak(partial(f, lx, ly, z))
            except Exception as e:
                q = _reason(e)
            res[name] = (_cuda_peak(partial(f, x, y, z)), q)
        how = "CUDA caching allocator: max_memory_allocated() − memory_allocated() before the op"
    else:
        if not os.path.exists("/proc/self/clear_refs"):
            return "n/a: needs Linux /proc/self/clear_refs for the peak-RSS measurement", None
        if cfg.quick:  # in-process (no child, no mallopt): fast, but freed heap may be reused
            res = _memory_worker(n, tune_malloc=False)
            how = "peak RSS (VmHWM after resetting /proc/self/clear_refs minus VmRSS), in-process"
            return _memory_table(n, res, how), res
        proc = subprocess.run(
            [sys.executable, "-m", "torchlc.bench", "--_memory-worker", str(n)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
        if proc.returncode != 0 or not line:
            return f"n/a: memory worker failed: {proc.stderr.strip()[-300:]}", None
        res = json.loads(line[-1][len("MEMORY ") :])
        how = (
            "peak RSS: VmHWM after resetting /proc/self/clear_refs, minus VmRSS before the op; child "
            "process, 1 thread, glibc mallopt(M_MMAP_THRESHOLD=64 KiB); min of 3 runs"
        )
    return _memory_table(n, res, how), res


def _memory_table(n, res, how):
    out_bytes = n * 4
    rows = []
    for name, (p, q) in res.items():
        qv = f"{q / 2**20:.1f}" if isinstance(q, (int, float)) else q
        rows.append(
            (
                name,
                f"{p / 2**20:.1f}",
                qv,
                _ratio(float(q), float(p)) if isinstance(q, (int, float)) and p > 0 else "n/a",
                f"{q / n:.1f}" if isinstance(q, (int, float)) else "",
            )
        )
    note = (
        f"{n:,} elements, float32 (a plain output is {out_bytes / 2**20:.1f} MiB; a first-order LC "
        f"output {2 * out_bytes / 2**20:.1f} MiB). Method: {how}. Inputs are excluded; the op's output "
        "and temporaries alive at the peak are included."
    )
    head = ["op", "plain peak MiB", "LC peak MiB", "LC/plain", "LC peak bytes/element"]
    return note + "\n\n" + md_table(head, rows)


# -------------------------------------------------------------------------------------------------
# small-tensor per-op overhead


def bench_small(cfg: Config):
    import torch.autograd.forward_ad as fwAD

    s = cfg.small
    g = torch.Generator().manual_seed(2)
    a, b, va, vb = (torch.randn(s, s, generator=g).to(cfg.device) for _ in range(4))
    ops = [
        ("add", lambda p, q: p + q),
        ("mul", lambda p, q: p * q),
        ("mm", lambda p, q: torch.mm(p, q)),
        ("sin", lambda p, q: torch.sin(p)),
        ("relu", lambda p, q: torch.relu(p)),
    ]
    la, lb = a.nonstd(va), b.nonstd(vb)
    rows = []
    for name, f in ops:
        with fwAD.dual_level():
            da, db = fwAD.make_dual(a, va), fwAD.make_dual(b, vb)
            tp, tl, td = time_many([partial(f, a, b), partial(f, la, lb), partial(f, da, db)], cfg)
        try:
            kn = kernel_names(partial(f, la, lb))
            k = f"{len(kn)}: {' '.join(kn)}" if len(kn) <= 12 else str(len(kn))
        except Exception:
            k = ""
        rows.append((name, _us(tp), _us(td), _us(tl), _ratio(tl, tp), _ratio(tl, td), k))
    head = ["op", "plain µs", "forward_ad dual µs", "LC µs", "LC/plain", "LC/dual", "LC kernels"]
    note = f"{s}×{s} float32, first order; binary ops on two LC (or two dual) operands."
    return note + "\n\n" + md_table(head, rows)


# -------------------------------------------------------------------------------------------------
# models


def make_mlp(cfg: Config):
    layers = []
    for _ in range(4):
        layers += [nn.Linear(cfg.mlp_width, cfg.mlp_width), nn.ReLU()]
    return nn.Sequential(*layers), (cfg.mlp_batch, cfg.mlp_width), 0


def make_transformer(cfg: Config):
    layer = nn.TransformerEncoderLayer(cfg.tf_d, cfg.tf_heads, cfg.tf_ff, batch_first=True)
    model = nn.TransformerEncoder(layer, cfg.tf_layers, enable_nested_tensor=False)
    return model, (cfg.tf_batch, cfg.tf_seq, cfg.tf_d), 0


class _Floor(torch.Tensor):
    """The dispatch floor: the least any ``__torch_dispatch__`` subclass carrying two planes costs. One
    wrapper and one plain op on the stacked planes per op, no LC logic (the bias lands on both planes:
    this is the work, not the LC result). Only the MLP's ops (addmm, relu) are handled."""

    @staticmethod
    def __new__(cls, planes):
        r = torch.Tensor._make_wrapper_subclass(cls, planes.shape[1:], dtype=planes.dtype, device=planes.device)
        r.planes = planes
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args, kwargs=None):
        if func is torch.ops.aten.addmm.default:
            bias, x, w = args
            return _Floor(torch.addmm(bias, x.planes.view(-1, x.shape[-1]), w).view(2, x.shape[0], -1))
        if func is torch.ops.aten.relu.default:
            return _Floor(torch.relu(args[0].planes))
        raise NotImplementedError(f"the floor subclass only runs the MLP, not {func}")


def _variants(model, x, v, batch_dim, cfg, compiled, cuda_graphs=False):
    x2 = torch.cat([x, x], dim=batch_dim)
    # static shapes: the plain model's second input shape (2×rows) would otherwise recompile with
    # dynamic shapes, which the fused eval encoder kernel cannot trace, and LC graphs are static too
    kw = {"mode": "reduce-overhead", "dynamic": False} if cuda_graphs else {"dynamic": False}

    def plain():
        return model(x)

    def rows2():
        return model(x2)

    def jvp():
        return torch.func.jvp(model, (x,), (v,))

    if compiled:
        cm = torch.compile(model, fullgraph=True, **kw)
        cj = torch.compile(lambda a, b: torch.func.jvp(model, (a,), (b,)), fullgraph=True, **kw)
        # LC: torchlc.compile (plain-boundary graph, data-dependent supports speculated and checked)
        import torchlc

        tc = torchlc.compile(model, fullgraph=True, **kw)
        return {
            "plain": lambda: cm(x),
            "2×rows": lambda: cm(x2),
            "jvp": lambda: cj(x, v),
            "LC": lambda: tc(x.nonstd(v)),
        }
    return {"plain": plain, "2×rows": rows2, "jvp": jvp, "LC": lambda: model(x.nonstd(v)),
            "floor": lambda: model(_Floor(torch.stack([x, v])))}


@contextlib.contextmanager
def _fastpath(enabled: bool):
    """Default kernels, or (``enabled=False``) no fused eval TransformerEncoderLayer kernel and the math
    SDPA backend: the composite path that forward-mode AD can differentiate."""
    if enabled:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(old)


def _compile_reset():
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


def bench_models(cfg: Config, log=print):
    rows, data = [], []
    for mname, make in (("MLP", make_mlp), ("TransformerEncoder", make_transformer)):
        graphs = cfg.compile and cfg.device == "cuda"  # CUDA graphs: torch.compile(mode="reduce-overhead")
        if cfg.models and mname not in cfg.models:
            continue
        modes = ["eager"] + (["compiled"] if cfg.compile else []) + (["compiled, CUDA graphs"] if graphs else [])
        if mname != "MLP":  # the encoder's fused eval kernels have no forward AD: jvp runs the math path
            modes += [m + ", math path" for m in modes]
        if cfg.modes:
            modes = [m for m in modes if m in cfg.modes]
        for dname in cfg.dtypes:
            dtype = getattr(torch, dname)
            torch.manual_seed(0)
            model, shape, bdim = make(cfg)
            model = model.to(device=cfg.device, dtype=dtype).eval()
            g = torch.Generator().manual_seed(3)
            x = torch.randn(shape, generator=g).to(cfg.device, dtype)
            v = torch.randn(shape, generator=g).to(cfg.device, dtype)
            for mode in modes:
                _compile_reset()
                names = ("plain", "2×rows", "jvp", "LC") + (("floor",) if (mname, mode) == ("MLP", "eager") else ())
                t0 = time.perf_counter()
                with torch.no_grad(), _fastpath("math path" not in mode):
                    try:
                        fns = _variants(model, x, v, bdim, cfg, mode.startswith("compiled"), "CUDA graphs" in mode)
                        times = dict(zip(names, time_many([fns[k] for k in names], cfg)))
                    except Exception as e:
                        times = dict.fromkeys(names, _reason(e))
                floor = times.get("floor", "n/a")
                log(
                    f"  {mname} {dname} {mode}: "
                    + ", ".join(f"{k} {_ms(t)}" for k, t in times.items())
                    + f" ({time.perf_counter() - t0:.1f} s)"
                )
                lc, r2, jv = times["LC"], times["2×rows"], times["jvp"]
                bar, verdict = _model_bar(cfg, mode, lc, r2, jv)
                rows.append(
                    (
                        mname,
                        dname,
                        mode,
                        _ms(times["plain"]),
                        _ms(r2),
                        _ms(jv),
                        _ms(lc),
                        _ms(floor) if isinstance(floor, float) else "—",
                        _ratio(lc, r2),
                        _ratio(lc, jv),
                        bar,
                        verdict,
                    )
                )
                data.append(
                    dict(
                        model=mname,
                        dtype=dname,
                        mode=mode,
                        **{k: (t if isinstance(t, float) else None) for k, t in times.items()},
                    )
                )
            del model
    head = [
        "model",
        "dtype",
        "mode",
        "plain ms",
        "2×rows ms",
        "jvp ms",
        "LC ms",
        "floor ms",
        "LC/2×rows",
        "LC/jvp",
        "bar",
        "result",
    ]
    note = (
        f"Forward under torch.no_grad(), eval mode. MLP: 4 × (Linear {cfg.mlp_width} + ReLU), batch "
        f"{cfg.mlp_batch}. TransformerEncoder: d_model {cfg.tf_d}, {cfg.tf_layers} layers, nhead "
        f"{cfg.tf_heads}, dim_feedforward {cfg.tf_ff}, seq {cfg.tf_seq}, batch {cfg.tf_batch}, "
        "batch_first. `2×rows` is the plain model on the input concatenated with itself along the batch "
        "(the two-plane bound); `jvp` is torch.func.jvp(model, (x,), (v,)); `LC` is "
        "model(x.nonstd(v)) including building x.nonstd(v). Compiled: torch.compile(..., fullgraph=True) "
        "of the model and of the jvp closure; LC compiled is torchlc.compile(model, fullgraph=True) "
        "(plain-boundary graph traced on the planes, data-dependent supports speculated and checked). "
        "`CUDA graphs`: the same with mode=\"reduce-overhead\" for every variant (CUDA only). "
        "`math path`: torch.backends.mha.set_fastpath_enabled(False) and "
        "sdpa_kernel(SDPBackend.MATH), so the encoder runs composite ops instead of the fused eval kernel "
        "aten::_transformer_encoder_layer_fwd and the flash SDPA kernel (neither supports forward AD). "
        "`floor` (eager MLP only): a do-nothing `__torch_dispatch__` subclass carrying the two planes, one "
        "plain op on the stacked planes per op: the least any such subclass costs, LC logic aside."
    )
    return note + "\n\n" + md_table(head, rows), data


def _model_bar(cfg, mode, lc, r2, jv):
    if cfg.device == "cuda":
        if isinstance(lc, float) and isinstance(r2, float):
            return "LC/2×rows ≤ 1.15×", ("PASS" if lc / r2 <= 1.15 else "FAIL")
        return "LC/2×rows ≤ 1.15×", "n/a"
    if mode.startswith("eager"):
        if isinstance(lc, float) and isinstance(jv, float):
            return "LC/jvp ≤ 1.0×", ("PASS" if lc / jv <= 1.0 else "FAIL")
        return "LC/jvp ≤ 1.0×", "n/a"
    return "—", ""


# -------------------------------------------------------------------------------------------------
# attention


@contextlib.contextmanager
def _no_flash_jet():
    """The SDPA rules' formulas instead of the flash-style jet."""
    from torchlc.kernels import jets

    fused = jets.flash_attention
    jets.flash_attention = lambda *a, **k: None
    try:
        yield
    finally:
        jets.flash_attention = fused


def _peak_mib(fn, device):
    if device != "cuda":
        return "n/a"
    try:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return f"{(torch.cuda.max_memory_allocated() - base) / 2**20:.0f}"
    except Exception as e:  # e.g. out of memory: a result, not a crash
        return _reason(e)


def _attention_row(cfg: Config, B, H, L, D, dtype):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator().manual_seed(5)
    q, k, v, dq, dk, dv = (torch.randn(B, L, H, D, generator=g).to(cfg.device, dtype).transpose(1, 2) for _ in range(6))
    q2, k2, v2 = (torch.cat([t, t]) for t in (q, k, v))
    lq, lk, lv = q.nonstd(dq), k.nonstd(dk), v.nonstd(dv)

    def f(a, b, c):
        return torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=True)

    def jvp():
        with sdpa_kernel(SDPBackend.MATH):
            return torch.func.jvp(f, (q, k, v), (dq, dk, dv))

    def formulas():
        with _no_flash_jet():
            return f(lq, lk, lv)

    with torch.no_grad():
        fns = [lambda: f(q, k, v), lambda: f(q2, k2, v2), jvp, lambda: f(lq, lk, lv), formulas]
        tp, t2, tj, tl, tf = time_many(fns, cfg)
        mem = [_peak_mib(fn, cfg.device) for fn in (fns[1], fns[3], fns[4])]
    return (f"{B}, {H}, {L}, {D}", _ms(tp), _ms(t2), _ms(tj), _ms(tl), _ms(tf), _ratio(tl, t2), _ratio(tl, tj), *mem)


def _attention_dtype(cfg: Config):
    """bf16 on CUDA, where the flash-style jet runs (half precision only); float32 on CPU."""
    return torch.bfloat16 if cfg.device == "cuda" else torch.float32


def bench_attention(cfg: Config):
    dtype = _attention_dtype(cfg)
    rows = [_attention_row(cfg, *case, dtype) for case in cfg.attention]
    head = ["B, H, L, D", "plain ms", "2×rows ms", "jvp ms", "LC ms", "LC formulas ms", "LC/2×rows", "LC/jvp",
            "peak MiB 2×rows", "peak MiB LC", "peak MiB LC formulas"]
    note = (
        f"Causal scaled_dot_product_attention, {str(dtype).removeprefix('torch.')}, no_grad; q, k, v are "
        "transposed views of (B, L, H, D) tensors. `jvp`: torch.func.jvp under the math backend (the "
        "fused backends have no forward AD). `LC formulas`: the flash-style jet turned off, so the SDPA "
        "rule runs its torch formulas (score and weight planes in memory). Peak memory: CUDA only, "
        "inputs excluded."
    )
    return note + "\n\n" + md_table(head, rows)


# -------------------------------------------------------------------------------------------------
# markdown output


def write_section(path: Path, name: str, body: str):
    """Replace (or append) the ``## name`` section of the markdown file ``path``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"## {name}\n\n{body.strip()}\n"
    pat = re.compile(rf"^## {re.escape(name)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda m: block + "\n", text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def run(cfg: Config, only, log=print) -> tuple[str, dict]:
    parts = [("Environment", environment(cfg))]
    results = {}
    log(parts[0][1] + "\n")
    titles = {
        "core": "Core ops",
        "bytes": "Bytes per element",
        "memory": "Peak memory",
        "small": "Small-tensor per-op overhead",
        "models": "Models",
        "attention": "Attention (F.scaled_dot_product_attention)",
    }
    for sec in SECTIONS:
        if sec not in only:
            continue
        t0 = time.perf_counter()
        log(f"### {titles[sec]} ...")
        if sec == "core":
            text, results["core"] = bench_core(cfg)
        elif sec == "bytes":
            text = bench_bytes(cfg)
        elif sec == "memory":
            text, results["memory"] = bench_memory(cfg)
        elif sec == "small":
            text = bench_small(cfg)
        elif sec == "attention":
            text = bench_attention(cfg)
        else:
            text, results["models"] = bench_models(cfg, log)
        log(text + f"\n\n({time.perf_counter() - t0:.1f} s)\n")
        parts.append((titles[sec], text))
    md = "\n\n".join(f"### {t}\n\n{b}" for t, b in parts)
    return md, results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m torchlc.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    p.add_argument("--dtypes", default=None, help="model dtypes (default float32,bfloat16)")
    p.add_argument("--models", default=None, help="models to run, comma-separated (MLP,TransformerEncoder)")
    p.add_argument("--modes", default=None, help='model modes to run, ";"-separated (e.g. "eager;compiled")')
    p.add_argument("--n", type=int, default=None, help="elements for the core ops (default 10**6)")
    p.add_argument("--min-run-time", type=float, default=None, help="seconds per blocked_autorange")
    p.add_argument("--note", action="append", help="a line for the environment notes (repeatable)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 3, --quick 1)")
    p.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="also time torch.compile (default on, off with --quick)",
    )
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--md", type=Path, default=None, help="markdown file to write the results into")
    p.add_argument("--section", default=None, help="heading (## NAME) to write under in --md")
    p.add_argument("--json", type=Path, default=None, help="also write raw numbers as JSON")
    p.add_argument(
        "--_memory-worker", dest="memory_worker", type=int, default=None, help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)

    if args.memory_worker is not None:
        print("MEMORY " + json.dumps(_memory_worker(args.memory_worker)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = Config.make(args)
    md, results = run(cfg, only)
    if args.md is not None:
        name = args.section or ("quick" if cfg.quick else cfg.device.upper())
        write_section(args.md, name, md)
        print(f"written to {args.md} under '## {name}'")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
