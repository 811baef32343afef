"""Section ``memory``: peak memory of one op, plain vs LC (CUDA allocator statistics, or the peak
resident set of a child process on CPU)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from functools import partial

import torch

from .config import Config
from .ops import _core_inputs, _core_ops
from .report import _ratio, _reason, md_table


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
