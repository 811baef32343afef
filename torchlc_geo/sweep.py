"""Resumable experiment sweep CLI: ``python -m torchlc_geo.sweep``.

Trains GeoSparseNet over a grid of configurations, each beside its three dense baselines (equal
parameters, equal FLOPs, equal neurons), on the :func:`~torchlc_geo.train.local_field_task` with one
shared :class:`~torchlc_geo.train.TrainConfig` per run (same split, seed, optimizer, dtype, batch,
epochs and stopping rule for every model).  Every finished run is appended to ``results.jsonl``
immediately; a rerun with the same ``--out`` skips run ids already there (resumable).  At the end
``summary.csv`` and plots (``plot_r2_vs_params.png``, ``plot_step_time.png``) are (re)written.

Presets (``--preset``):

* ``tiny``  — a few seconds on CPU (used by the tests);
* ``cpu``   — a small CPU sweep;
* ``gpu``   — the experiment plan: k ∈ {4, 8, 16, 32} (auto radius so the fan-in is real),
  depth ∈ {2, 8}, grids 16×16 / 32×32 / 64×64, relu vs psann (bf16, eager), plus compile on/off ×
  bf16 on/off at 32×32, depth 8, k 8.

Grid axes can be overridden: ``--k 4 8 --depth 2 --shapes 16x16 32x32 --activations relu
--compile 0 1 --bf16 0 1 --baselines``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch

from .baselines import dense_baselines
from .model import GeoSparseConfig, GeoSparseNet
from .params import geo_macs
from .train import TrainConfig, fit, local_field_task
from .utils import environment, seed_all

__all__ = ["PRESETS", "main", "plan_runs", "run_id"]

_ALL_BASELINES = ["equal_params", "equal_flops", "equal_neurons"]
PRESETS: dict[str, dict | list[dict]] = {
    "tiny": dict(k=[4, 8], depth=[1], shapes=["4x4"], activations=["relu"], compile=[0], bf16=[0],
                 samples=256, epochs=2, batch=32, baselines=["equal_params"], device="cpu"),
    "cpu": dict(k=[4, 8, 16], depth=[2, 4], shapes=["8x8", "16x16"], activations=["relu", "psann"],
                compile=[0], bf16=[0], samples=4096, epochs=30, batch=128, baselines=_ALL_BASELINES, device="cpu"),
    # the experiment plan: a main grid (k × depth × grid × activation, bf16, eager) plus an ablation of
    # compile on/off × bf16 on/off at one size; 224 runs, ~15-25 min on one H100
    "gpu": [
        dict(k=[4, 8, 16, 32], depth=[2, 8], shapes=["16x16", "32x32", "64x64"], activations=["relu", "psann"],
             compile=[0], bf16=[1], samples=16384, epochs=10, batch=256, baselines=_ALL_BASELINES, device="cuda"),
        dict(k=[8], depth=[8], shapes=["32x32"], activations=["relu", "psann"], compile=[0, 1], bf16=[0, 1],
             samples=16384, epochs=10, batch=256, baselines=_ALL_BASELINES, device="cuda"),
    ],
}


def _shape(s: str) -> tuple[int, int]:
    h, w = s.lower().split("x")
    return int(h), int(w)


def run_id(spec: dict) -> str:
    """Stable id of a run spec (sha1 of its sorted JSON).

    Example:
        >>> run_id({"a": 1}) == run_id({"a": 1}), len(run_id({"a": 1}))
        (True, 12)
    """
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def plan_runs(grid: dict) -> list[dict]:
    """Expand a grid into run specs: one GeoSparseNet run per combination plus baseline runs.

    Baselines depend on (shape, depth, k, activation, compile, bf16) and are planned once each.

    Example:
        >>> len(plan_runs(PRESETS["tiny"]))
        4
    """
    if isinstance(grid, list):  # a union of sub-grids; duplicate runs are planned once
        seen, runs = set(), []
        for g in grid:
            for r in plan_runs(g):
                if r["id"] not in seen:
                    seen.add(r["id"])
                    runs.append(r)
        return runs
    runs = []
    for shape, depth, k, act, comp, bf16 in itertools.product(
            grid["shapes"], grid["depth"], grid["k"], grid["activations"], grid["compile"], grid["bf16"]):
        base = dict(shape=shape, depth=int(depth), k=int(k), activation=act, compile=bool(int(comp)),
                    bf16=bool(int(bf16)), samples=grid["samples"], epochs=grid["epochs"], batch=grid["batch"],
                    seed=grid.get("seed", 0), device=grid["device"])
        runs.append({**base, "model": "geo"})
        for b in grid.get("baselines", []):
            runs.append({**base, "model": b})
    for r in runs:
        r["id"] = run_id({k: v for k, v in r.items() if k != "id"})
    return runs


def _build(spec: dict):
    shape = _shape(spec["shape"])
    n = shape[0] * shape[1]
    cfg = GeoSparseConfig(shape=shape, depth=spec["depth"], k=spec["k"], activation=spec["activation"],
                          seed=spec["seed"], wrap_mode="wrap")
    seed_all(spec["seed"])
    if spec["model"] == "geo":
        return GeoSparseNet(n, 1, cfg), cfg, {}
    model, info = dense_baselines(n, 1, cfg)[spec["model"]]
    return model, cfg, info


@functools.lru_cache(maxsize=1)
def _task(shape: tuple[int, int], samples: int, seed: int):
    # the same data serves the GeoSparseNet run and its three baselines (planned consecutively)
    return local_field_task(shape, samples, seed=seed)


def _run(spec: dict, epochs: int | None = None) -> dict:
    shape = _shape(spec["shape"])
    data = _task(shape, spec["samples"], spec["seed"])
    model, cfg, info = _build(spec)
    tcfg = TrainConfig(epochs=epochs or spec["epochs"], batch_size=spec["batch"], seed=spec["seed"], device=spec["device"],
                       bf16=spec["bf16"], compile=spec["compile"], tf32=True)
    t0 = time.perf_counter()
    res = fit(model, data, tcfg)
    res.pop("train_config")
    n = cfg.n
    return {**spec, **res, "total_s": time.perf_counter() - t0,
            "sparse_macs": geo_macs(n, 1, cfg),
            "baseline_info": {k: v for k, v in info.items() if k in ("width", "hidden", "widths", "rel_diff")}}


def _warm_one(spec: dict) -> tuple[str, float, str]:
    t0 = time.perf_counter()
    try:
        _run(spec, epochs=1)
        err = ""
    except Exception as e:  # the timed run will record the error
        err = f"{type(e).__name__}: {e}"
    return spec["id"], time.perf_counter() - t0, err


def warm_compile(specs: list[dict], workers: int) -> dict:
    """Fill the on-disk Inductor/Triton caches for the ``compile=True`` runs in ``workers`` parallel
    processes (one epoch each, results discarded), so that the timed runs afterwards compile from
    warm caches.  Returns ``{"runs", "workers", "wall_s"}``.

    Example:
        >>> warm_compile([], 2)["runs"]
        0
    """
    specs = [s for s in specs if s.get("compile")]
    t0 = time.perf_counter()
    if specs:
        old = os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")
        os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # parallel over processes instead
        try:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(workers, len(specs))) as pool:
                for rid, dt, err in pool.imap_unordered(_warm_one, specs):
                    print(f"warm compile {rid}: {dt:.1f} s {err}", file=sys.stderr, flush=True)
        finally:
            if old is None:
                os.environ.pop("TORCHINDUCTOR_COMPILE_THREADS", None)
            else:
                os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = old
    return {"runs": len(specs), "workers": workers, "wall_s": time.perf_counter() - t0}


def _load_done(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    r = json.loads(line)
                    done[r["id"]] = r
                except json.JSONDecodeError:  # a torn last line from an interrupted run
                    continue
    return done


_CSV_KEYS = ["id", "model", "shape", "depth", "k", "activation", "compile", "bf16", "params", "sparse_macs",
             "test_r2", "test_mse", "best_val_mse", "epochs_run", "step_ms", "warmup_s", "train_wall_s", "status"]


def _summaries(out: Path, results: list[dict]) -> None:
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_KEYS, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    ok = [r for r in results if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in sorted({r["model"] for r in ok}):
        rs = [r for r in ok if r["model"] == model]
        ax.scatter([r["params"] for r in rs], [r["test_r2"] for r in rs], label=model, s=18)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test R²")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "plot_r2_vs_params.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    geo = [r for r in ok if r["model"] == "geo" and r.get("step_ms")]
    for key in sorted({(r["shape"], r["depth"]) for r in geo}):
        rs = sorted([r for r in geo if (r["shape"], r["depth"]) == key], key=lambda r: r["k"])
        ks = sorted({r["k"] for r in rs})
        ax.plot(ks, [min(r["step_ms"] for r in rs if r["k"] == k) for k in ks], marker="o",
                label=f"{key[0]} depth {key[1]}")
    ax.set_xlabel("fan-in k")
    ax.set_ylabel("best step time (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "plot_step_time.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    """CLI entry point; returns all results (old and new) of the sweep directory.

    Example:
        >>> rs = main(["--preset", "tiny", "--k", "4", "--baselines", "--out", "/tmp/geo_sweep_doc",
        ...            "--no-progress", "--quiet"])
        >>> [r["model"] for r in rs]
        ['geo']
    """
    p = argparse.ArgumentParser(prog="python -m torchlc_geo.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--out", default=None, help="sweep directory (default reports/sweep/<preset>)")
    p.add_argument("--k", type=int, nargs="+")
    p.add_argument("--depth", type=int, nargs="+")
    p.add_argument("--shapes", nargs="+")
    p.add_argument("--activations", nargs="+")
    p.add_argument("--compile", type=int, nargs="+")
    p.add_argument("--bf16", type=int, nargs="+")
    p.add_argument("--baselines", nargs="*", help="subset of equal_params equal_flops equal_neurons")
    p.add_argument("--samples", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-runs", type=int, default=0, help="stop after this many new runs (0: all)")
    p.add_argument("--time-budget", type=float, default=0,
                   help="start no new run after this many seconds (0: no limit); rerun to resume")
    p.add_argument("--warm-compile-workers", type=int, default=0,
                   help="first fill the compile caches of the compile=True runs in N parallel processes "
                        "(untimed); their timed runs then report warm-cache compile times")
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    grids = [dict(g) for g in (preset if isinstance(preset, list) else [preset])]
    for grid in grids:
        for key in ("k", "depth", "shapes", "activations", "compile", "bf16", "baselines", "samples", "epochs",
                    "batch", "device", "seed"):
            v = getattr(args, key)
            if v is not None:
                grid[key] = v
    grid = grids if len(grids) > 1 else grids[0]
    if any(g["device"] == "cuda" for g in grids) and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available (use --device cpu)")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"reports/sweep/{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    runs = plan_runs(grid)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"sessions": []}
    manifest.update(grid=grid, planned=len(runs), environment=environment())
    manifest["sessions"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": list(argv or sys.argv[1:])})
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    res_path = out / "results.jsonl"
    done = _load_done(res_path)
    todo = [r for r in runs if r["id"] not in done or (args.retry_failed and done[r["id"]].get("status") != "ok")]
    if args.max_runs:
        todo = todo[:args.max_runs]
    t_start = time.perf_counter()
    warm = None
    if args.warm_compile_workers and any(r.get("compile") for r in todo):
        # the caches live on this machine only: run the compile runs first, right after warming
        todo = [r for r in todo if r.get("compile")] + [r for r in todo if not r.get("compile")]
        warm = warm_compile(todo, args.warm_compile_workers)
        manifest["sessions"][-1]["warm_compile"] = warm
        manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    if not args.quiet:
        print(f"sweep {out}: {len(runs)} planned, {len(runs) - len(todo)} already done, {len(todo)} to run")
    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="sweep", unit="run")
        except ImportError:  # pragma: no cover
            bar = None
    with open(res_path, "a") as f:
        for spec in todo:
            if args.time_budget and time.perf_counter() - t_start > args.time_budget:
                print(f"time budget reached: {len(todo) - sum(1 for t in todo if t['id'] in done)} runs left "
                      "(rerun with the same --out to resume)", file=sys.stderr)
                break
            try:
                r = {**_run(spec), "status": "ok"}
                if spec.get("compile"):
                    r["compile_cache"] = "warm" if warm else "cold"
            except Exception as e:  # record and continue: one failing config must not stop the sweep
                r = {**spec, "status": "error", "error": f"{type(e).__name__}: {e}"}
            f.write(json.dumps(r, default=str) + "\n")
            f.flush()
            done[spec["id"]] = r
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{spec['model']} {spec['shape']} k={spec['k']} r2={r.get('test_r2', float('nan')):.3f}")
    if bar is not None:
        bar.close()
    ids = {r["id"] for r in runs}
    results = [done[r["id"]] for r in runs if r["id"] in done] + [r for i, r in done.items() if i not in ids]
    _summaries(out, results)
    if not args.quiet:
        print(f"results: {res_path}; summary: {out / 'summary.csv'}")
    return results


if __name__ == "__main__":
    main()
