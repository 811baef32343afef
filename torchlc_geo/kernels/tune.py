"""Tile sweep and profile of the Triton layer kernels: ``python -m torchlc_geo.kernels.tune``.

For each ``n`` (square grid, local connectivity, fan-in ``k``) and batch ``B`` it times, as device
time (CUDA-graph replay, :func:`torchlc_geo.bench.graph_time`), the three kernels of one layer
step — forward gather, input gradient over the fan-out table, weight+bias gradient — under every
candidate launch configuration, and reports each kernel's best configuration against the
heuristic's choice (:func:`~torchlc_geo.kernels.ops.fwd_config`,
:func:`~torchlc_geo.kernels.ops.wgrad_config`) and against the bytes it must move.  ``--profile``
also writes a ``torch.profiler`` table of one eager forward+backward (kernels, host time).
Writes ``tune.json`` (and ``profile_*.txt``) under ``--out``.  CUDA only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

FWD_CANDIDATES = [
    (bo, bb, nw)
    for bb in (64, 128, 256)
    for bo in (8, 16, 32, 64)
    for nw in (4, 8)
    if 512 <= bo * bb <= 8192
]
WGRAD_CANDIDATES = [
    (bo, bb, nw, 1)
    for bb in (64, 128, 256)
    for bo in (8, 16, 32)
    for nw in (4, 8)
    if 512 <= bo * bb <= 4096
]


def _layer(n, k, B, dtype):
    from ..connectivity import build_connectivity
    from ..layers import GeoSparseLinear

    side = int(round(n**0.5))
    shape = (side, n // side)
    n = shape[0] * shape[1]
    layer = (
        GeoSparseLinear(n, n, build_connectivity(shape, k), compute_mode="triton").cuda().to(dtype)
    )
    return layer, n


def tune(n: int, B: int, k: int, dtype, bw: float) -> dict:
    from ..bench import graph_time
    from . import ops

    layer, n = _layer(n, k, B, dtype)
    s = torch.tensor([], dtype=dtype).element_size()
    xT = torch.randn(n, B, device="cuda", dtype=dtype)
    gy = torch.randn(n, B, device="cuda", dtype=dtype)
    w, b = layer.weight.detach(), layer.bias.detach()
    kern = {
        "fwd": (lambda: ops._launch_gather(xT, layer.idx, w, b), FWD_CANDIDATES, 2 * B * n * s),
        "bwd": (
            lambda: ops._launch_gather(gy, layer.rev_idx, w, None, layer.rev_eid),
            FWD_CANDIDATES,
            2 * B * n * s,
        ),
        "wgrad": (
            lambda: ops._launch_wgrad(xT, layer.idx, gy, dtype, True),
            WGRAD_CANDIDATES,
            2 * B * n * s,
        ),
    }
    out = {
        "n": n,
        "B": B,
        "k": k,
        "fan_out_max": int(layer.rev_idx.shape[1]),
        "dtype": str(dtype),
        "copy_bw_GBs": bw / 1e9,
        "kernels": {},
    }
    for name, (fn, cands, nbytes) in kern.items():
        ops.LAUNCH_OVERRIDE.clear()
        heur = graph_time(fn)
        heur_cfg = (
            ops.fwd_config(n, B, k if name == "fwd" else layer.rev_idx.shape[1], name)
            if name != "wgrad"
            else ops.wgrad_config(n, B, k)
        )
        rows = []
        for cfg in cands:
            ops.LAUNCH_OVERRIDE.clear()
            ops.LAUNCH_OVERRIDE[name] = cfg
            t = graph_time(fn)
            if t is not None:
                rows.append({"cfg": list(cfg), "us": t * 1e6, "frac_of_copy_bw": nbytes / t / bw})
        ops.LAUNCH_OVERRIDE.clear()
        rows.sort(key=lambda r: r["us"])
        out["kernels"][name] = {
            "heuristic_cfg": list(heur_cfg),
            "heuristic_us": None if heur is None else heur * 1e6,
            "heuristic_frac": None if heur is None else nbytes / heur / bw,
            "floor_us": nbytes / bw * 1e6,
            "all": rows,
        }
        best = rows[0] if rows else None
        print(
            f"n={n} B={B} {name:5s}: heuristic {heur_cfg} {out['kernels'][name]['heuristic_us']:.1f} µs; "
            f"best {best['cfg'] if best else None} {best['us'] if best else float('nan'):.1f} µs "
            f"({100 * best['frac_of_copy_bw'] if best else 0:.0f}% of copy BW, floor {nbytes / bw * 1e6:.1f} µs)",
            flush=True,
        )
    return out


def profile(n: int, B: int, k: int, dtype, path: Path) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    layer, n = _layer(n, k, B, dtype)
    xT = torch.randn(n, B, device="cuda", dtype=dtype, requires_grad=True)
    gy = torch.randn(n, B, device="cuda", dtype=dtype)
    params = [xT, layer.weight, layer.bias]
    for _ in range(3):
        torch.autograd.grad(layer.forward_fm(xT), params, gy)
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            torch.autograd.grad(layer.forward_fm(xT), params, gy)
        torch.cuda.synchronize()
    path.write_text(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=30))
    t0 = time.perf_counter()
    for _ in range(50):
        torch.autograd.grad(layer.forward_fm(xT), params, gy)
    torch.cuda.synchronize()
    print(f"eager fwd+bwd n={n} B={B}: {(time.perf_counter() - t0) / 50 * 1e6:.1f} µs/step (wall)")


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m torchlc_geo.kernels.tune", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--n", type=int, nargs="+", default=[65536, 1 << 20])
    p.add_argument("--batch", type=int, nargs="+", default=[256])
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32", "fp16"])
    p.add_argument("--profile", action="store_true")
    p.add_argument("--out", default="reports/tune")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("CUDA only")
    from ..bench import _copy_bandwidth

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bw = _copy_bandwidth(1 << 30, torch.device("cuda"), 0.2)
    print(f"copy bandwidth (1 GiB): {bw / 1e9:.0f} GB/s")
    res = []
    for n in args.n:
        for B in args.batch:
            res.append(tune(n, B, args.k, dtype, bw))
            if args.profile:
                profile(n, B, args.k, dtype, out / f"profile_n{n}_B{B}.txt")
    (out / "tune.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
