"""Speed benchmark CLI: ``python -m torchlc_geo.bench``.

Measures, in one process and interleaved (round-robin, median over rounds, so that a noisy machine
affects every model alike):

* **net**: forward+backward step of GeoSparseNet (each compute mode), the ``psann`` 2.0.1
  GeoSparseNet of the same configuration when ``psann`` is importable, and the three dense
  baselines (equal parameters, equal FLOPs, equal neurons); ratios against GeoSparseNet;
* **layer** (``--layer-n``): one sparse layer's forward and forward+backward at ``n`` neurons
  against the measured device copy bandwidth (forward moves ``2·B·n·s`` bytes, forward+backward
  ``5·B·n·s``), as eager wall time per call and, on CUDA, as device time (:func:`graph_time`:
  CUDA-graph replay, host launch overhead removed).

Timing uses ``torch.utils.benchmark.Timer`` (CUDA-synchronised, no host sync inside the step);
``torch.compile`` time and warm-up are reported separately.  Writes ``manifest.json``,
``results.jsonl`` and ``summary.csv`` under ``--out`` (default ``reports/bench/<stamp>``) and
prints a markdown table (``--markdown PATH`` also writes it).

Examples::

    python -m torchlc_geo.bench                                   # CPU, 16x16, depth 8, k 8, B 256
    /tmp/psannenv/bin/python -m torchlc_geo.bench                 # same, compared with psann
    python -m torchlc_geo.bench --device cuda --dtype bf16 --layer-n 65536 --cuda-graphs
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

from .baselines import dense_baselines
from .model import GeoSparseConfig, GeoSparseNet
from .params import count_params
from .utils import environment, seed_all

__all__ = ["graph_time", "main", "measure_interleaved", "psann_net"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def psann_net(shape, depth, k, activation, seed=0):
    """The ``psann`` 2.0.1 GeoSparseNet of the same configuration, or ``None`` if not importable.

    Example:
        >>> net = psann_net((4, 4), 1, 4, "relu")
        >>> net is None or net.__class__.__name__ == "GeoSparseNet"
        True
    """
    try:
        from psann.nn_geo_sparse import GeoSparseNet as PsannNet
    except Exception:
        return None
    act = activation if activation in ("relu", "tanh", "psann", "phase_psann") else "relu"
    return PsannNet(shape[0] * shape[1], 1, shape=tuple(shape), depth=depth, k=k, activation_type=act,
                    radius=1 if k <= 9 else 2 if k <= 25 else 3, seed=seed)


def _step_fn(model, x):
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        for p in params:
            p.grad = None
        model(x).float().sum().backward()

    return step


def measure_interleaved(fns: dict, rounds: int = 5, min_run_time: float = 0.3) -> dict[str, dict]:
    """Time several zero-argument callables round-robin; per-round medians, then their median.

    Example:
        >>> r = measure_interleaved({"a": lambda: None}, rounds=2, min_run_time=0.01)
        >>> r["a"]["median_s"] >= 0
        True
    """
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            m = Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time)
            per[name].append(m.median)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "rounds": v} for k, v in per.items()}


def _copy_bandwidth(n_bytes: int, device, min_run_time) -> float:
    a = torch.empty(n_bytes // 4, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    t = Timer("b.copy_(a)", globals={"a": a, "b": b}).blocked_autorange(min_run_time=min_run_time).median
    return 2 * a.numel() * 4 / t


def graph_time(fn, reps: int = 20, replays: int = 15) -> float | None:
    """Device time of one call of ``fn`` (seconds): ``reps`` calls captured in one CUDA graph, its
    replays timed with CUDA events, median per call.  ``None`` where ``fn`` cannot be captured.

    This measures what the kernels cost back-to-back with the host's launch overhead removed (what a
    CUDA-graphed step sees); eager wall time at small sizes is bound by the host instead.

    Example:
        >>> graph_time(lambda: None) is None or True
        True
    """
    if not torch.cuda.is_available():
        return None
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(reps):
                fn()
        g.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(replays):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            g.replay()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3 / reps)
        del g
        return statistics.median(times)
    except Exception as e:  # e.g. an op that synchronises with the host
        print(f"graph capture failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        torch.cuda.synchronize()
        return None


def bench_net(args, device, dtype) -> list[dict]:
    cfg = GeoSparseConfig(shape=tuple(args.shape), depth=args.depth, k=args.k, activation=args.activation,
                          seed=args.seed)
    n = cfg.n
    seed_all(args.seed)
    x = torch.randn(args.batch, n, device=device, dtype=dtype)
    models: dict[str, tuple[torch.nn.Module, dict]] = {}
    for mode in args.modes:
        models[f"geo[{mode}]"] = (GeoSparseNet(n, 1, cfg.replace(compute_mode=mode)), {"compute_mode": mode})
    pnet = psann_net(cfg.shape, cfg.depth, cfg.k, cfg.activation, args.seed) if args.psann else None
    if pnet is not None:
        models["psann-2.0.1"] = (pnet, {})
    elif args.psann:
        print("psann not importable: skipping the psann comparison "
              "(python -m venv --system-site-packages /tmp/psannenv && "
              "/tmp/psannenv/bin/pip install --no-deps psann==2.0.1; run with /tmp/psannenv/bin/python)",
              file=sys.stderr)
    for name, (m, info) in dense_baselines(n, 1, cfg, kind=args.baseline_kind).items():
        models[f"dense-{args.baseline_kind}[{name}]"] = (m, info)
    fns, meta = {}, {}
    for name, (m, info) in models.items():
        m = m.to(device=device, dtype=dtype)
        fn = _step_fn(m, x)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        compile_s = None
        if args.compile and not name.startswith("psann"):
            cm = torch.compile(m, mode=args.compile_mode)
            fn = _step_fn(cm, x)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            compile_s = time.perf_counter() - t0
        if args.cuda_graphs and device.type == "cuda" and not name.startswith("psann"):
            g = torch.cuda.make_graphed_callables(m, (x.clone().requires_grad_(False),))
            fn = _step_fn(g, x)
        fns[name] = fn
        meta[name] = {"params": count_params(m), "warmup_s": warm, "compile_s": compile_s, **info}
    res = measure_interleaved(fns, rounds=args.rounds, min_run_time=args.min_time)
    steps = interleaved_steps(fns, args.interleave_steps, device) if args.interleave_steps else {}
    ref_name = next((k for k in res if k == f"geo[{args.modes[0]}]"), None)
    rows = []
    for name, r in res.items():
        row = {"bench": "net", "model": name, "fwd_bwd_ms": r["median_s"] * 1e3, "min_ms": r["min_s"] * 1e3,
               **meta[name]}
        if ref_name:
            row["time_vs_geo"] = r["median_s"] / res[ref_name]["median_s"]
        if steps:
            row.update({f"step_{q}_ms": v * 1e3 for q, v in steps[name].items()})
            if ref_name:
                row.update({f"step_{q}_vs_geo": v / steps[ref_name][q] for q, v in steps[name].items()})
        rows.append(row)
    return rows


def interleaved_steps(fns: dict, n: int, device=None) -> dict[str, dict[str, float]]:
    """Single calls of every function in turn, ``n`` times: per function the minimum, 10th
    percentile and median of the single-call times (seconds).  On a shared machine the minimum and
    low percentiles of finely interleaved calls are the least load-dependent comparison.

    Example:
        >>> r = interleaved_steps({"a": lambda: None}, 3)
        >>> sorted(r["a"])
        ['med', 'min', 'p10']
    """
    sync = torch.cuda.synchronize if device is not None and torch.device(device).type == "cuda" else (lambda: None)
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            per[name].append(time.perf_counter() - t0)

    def q(v, f):
        return sorted(v)[int(f * (len(v) - 1))]

    return {k: {"min": q(v, 0.0), "p10": q(v, 0.1), "med": q(v, 0.5)} for k, v in per.items()}


def bench_layer(args, device, dtype) -> list[dict]:
    from .connectivity import build_connectivity
    from .layers import GeoSparseLinear

    n, B, k = args.layer_n, args.batch, args.k
    side = int(round(n ** 0.5))
    shape = (side, n // side)
    n = shape[0] * shape[1]
    idx = build_connectivity(shape, k)
    s = torch.tensor([], dtype=dtype).element_size()
    # copy bandwidth at the layer's size and at 1 GiB (out of L2); the larger one is the reference
    bw_layer = _copy_bandwidth(B * n * s, device, args.min_time)
    bw_big = _copy_bandwidth(1 << 30, device, args.min_time) if device.type == "cuda" else bw_layer
    bw = max(bw_layer, bw_big)
    fwd_bytes, fb_bytes = 2 * B * n * s, 5 * B * n * s
    rows = []
    for mode in args.layer_modes:
        layer = GeoSparseLinear(n, n, idx, compute_mode=mode).to(device=device, dtype=dtype)
        xT = torch.randn(n, B, device=device, dtype=dtype, requires_grad=True)
        gy = torch.randn(n, B, device=device, dtype=dtype)
        try:  # e.g. triton unavailable, or no bf16 embedding-bag weight gradient on CUDA
            layer.forward_fm(xT).backward(gy)
        except Exception as e:
            print(f"layer mode {mode}: skipped ({type(e).__name__}: {str(e)[:200]})", file=sys.stderr)
            continue
        params = [xT, layer.weight, layer.bias]

        def fwd(layer=layer, xT=xT):
            with torch.no_grad():
                layer.forward_fm(xT)

        def fwdbwd(layer=layer, xT=xT, gy=gy):
            xT.grad = None
            layer.weight.grad = None
            layer.bias.grad = None
            layer.forward_fm(xT).backward(gy)

        def fwdbwd_graph(layer=layer, xT=xT, gy=gy, params=params):
            torch.autograd.grad(layer.forward_fm(xT), params, gy)

        r = measure_interleaved({"fwd": fwd, "fwdbwd": fwdbwd}, rounds=args.rounds, min_run_time=args.min_time)
        tf, tb = r["fwd"]["median_s"], r["fwdbwd"]["median_s"]
        gf = gb = None
        if device.type == "cuda":
            gf, gb = graph_time(fwd), graph_time(fwdbwd_graph)
        rows.append({
            "bench": "layer", "model": f"layer[{mode}]", "n": n, "batch": B, "k": k, "dtype": str(dtype),
            "fwd_us": tf * 1e6, "fwd_bwd_us": tb * 1e6,
            "fwd_dev_us": None if gf is None else gf * 1e6, "fwd_bwd_dev_us": None if gb is None else gb * 1e6,
            "copy_bw_GBs": bw / 1e9, "copy_bw_layer_size_GBs": bw_layer / 1e9, "copy_bw_1GiB_GBs": bw_big / 1e9,
            "fwd_frac_of_copy_bw": (fwd_bytes / tf) / bw,
            "fwd_dev_frac_of_copy_bw": None if gf is None else (fwd_bytes / gf) / bw,
            "fwd_floor_us": fwd_bytes / bw * 1e6, "fwd_bwd_floor_us": fb_bytes / bw * 1e6,
            "fwd_bwd_over_floor": tb / (fb_bytes / bw),
            "fwd_bwd_dev_over_floor": None if gb is None else gb / (fb_bytes / bw),
        })
    return rows


def _markdown(rows: list[dict]) -> str:
    out = []
    net = [r for r in rows if r["bench"] == "net"]
    if net:
        out += ["| model | params | fwd+bwd ms (median) | time / GeoSparseNet | warm-up s | compile s |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in net:
            cs = "" if r.get("compile_s") is None else f"{r['compile_s']:.2f}"
            out.append(f"| {r['model']} | {r['params']:,} | {r['fwd_bwd_ms']:.2f} | "
                       f"{r.get('time_vs_geo', float('nan')):.2f}× | {r['warmup_s']:.3f} | {cs} |")
        if "step_min_ms" in net[0]:
            out += ["", "Single steps interleaved model by model:", "",
                    "| model | min ms | p10 ms | median ms | min / GeoSparseNet | p10 / GeoSparseNet | median / GeoSparseNet |",
                    "|---|---:|---:|---:|---:|---:|---:|"]
            for r in net:
                out.append(f"| {r['model']} | {r['step_min_ms']:.2f} | {r['step_p10_ms']:.2f} | {r['step_med_ms']:.2f} | "
                           f"{r.get('step_min_vs_geo', float('nan')):.2f}× | {r.get('step_p10_vs_geo', float('nan')):.2f}× | "
                           f"{r.get('step_med_vs_geo', float('nan')):.2f}× |")
    lay = [r for r in rows if r["bench"] == "layer"]
    if lay:
        def f(v, fmt):
            return "n/a" if v is None else format(v, fmt)

        out += ["", "Eager = wall time per call (host launch overhead included); device = CUDA-graph replay "
                "(launch overhead removed). Copy BW = max(copy at the layer's size, 1 GiB copy).", "",
                "| layer | n | B | dtype | copy GB/s | fwd µs eager | fwd µs device | fwd % of copy BW "
                "(eager / device) | fwd+bwd µs eager | fwd+bwd µs device | fwd+bwd / 5·B·n·s floor (eager / device) |",
                "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in lay:
            dfrac = r["fwd_dev_frac_of_copy_bw"]
            out.append(
                f"| {r['model']} | {r['n']} | {r['batch']} | {r['dtype']} | {r['copy_bw_GBs']:.0f} | "
                f"{r['fwd_us']:.1f} | {f(r['fwd_dev_us'], '.1f')} | {100 * r['fwd_frac_of_copy_bw']:.0f}% / "
                f"{'n/a' if dfrac is None else f'{100 * dfrac:.0f}%'} | {r['fwd_bwd_us']:.1f} | "
                f"{f(r['fwd_bwd_dev_us'], '.1f')} | {r['fwd_bwd_over_floor']:.2f}× / "
                f"{f(r['fwd_bwd_dev_over_floor'], '.2f')}{'' if r['fwd_bwd_dev_over_floor'] is None else '×'} |")
    return "\n".join(out)


def main(argv=None) -> list[dict]:
    """CLI entry point; returns the result rows.

    Example:
        >>> rows = main(["--shape", "4", "4", "--depth", "1", "--batch", "8", "--rounds", "1",
        ...              "--min-time", "0.01", "--no-psann", "--out", "/tmp/geo_bench_doc", "--quiet"])
        >>> rows[0]["model"]
        'geo[auto]'
    """
    p = argparse.ArgumentParser(prog="python -m torchlc_geo.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp32", choices=sorted(_DTYPES))
    p.add_argument("--shape", type=int, nargs=2, default=[16, 16])
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--activation", default="relu")
    p.add_argument("--modes", nargs="+", default=["auto"], help="GeoSparseNet compute modes to time")
    p.add_argument("--baseline-kind", default="resmlp", choices=["resmlp", "mlp"])
    p.add_argument("--psann", dest="psann", action="store_true", default=True)
    p.add_argument("--no-psann", dest="psann", action="store_false")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument("--compile-mode", default=None)
    p.add_argument("--cuda-graphs", action="store_true")
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--layer-n", type=int, default=0, help="also benchmark one layer at n neurons")
    p.add_argument("--layer-modes", nargs="+", default=["auto", "fused", "gather", "embedding_bag"])
    p.add_argument("--skip-net", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--interleave-steps", type=int, default=0,
                   help="also time N rounds of single steps, one per model in turn (min / p10 / median)")
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    device, dtype = torch.device(args.device), _DTYPES[args.dtype]
    out = Path(args.out or f"reports/bench/{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"argv": sys.argv if argv is None else list(argv), "args": vars(args),
                "environment": environment(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "compile_backend": "inductor" if args.compile else None}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    rows = [] if args.skip_net else bench_net(args, device, dtype)
    if args.layer_n:
        rows += bench_layer(args, device, dtype)
    with open(out / "results.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")
    keys = sorted({k for r in rows for k in r if k != "rounds"})
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    md = _markdown(rows)
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")
    if not args.quiet:
        env = manifest["environment"]
        print(f"# torchlc_geo bench — {env.get('gpu') or env.get('cpu')}, torch {env['torch']}, "
              f"threads {env['threads']}, dtype {args.dtype}, batch {args.batch}")
        print(md)
        print(f"\nwritten to {out}")
    return rows


if __name__ == "__main__":
    main()
