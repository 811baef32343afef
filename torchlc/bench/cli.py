"""The command line: ``python -m torchlc.bench [--quick] [--device cuda] [--only ...] [--md FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .attention import bench_attention
from .config import SECTIONS, Config
from .jet import bench_jet
from .memory import _memory_worker, bench_memory
from .models import bench_models
from .ops import bench_bytes, bench_core, bench_small
from .ragged import bench_ragged
from .real import bench_real
from .report import environment, write_section


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
        "jet": "Higher order against JAX jet",
        "real": "Real models (torchvision, transformers)",
        "ragged": "Ragged (CSR): per-element exponents",
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
        elif sec == "jet":
            text, results["jet"] = bench_jet(cfg, log)
        elif sec == "ragged":
            text, results["ragged"] = bench_ragged(cfg)
        elif sec == "real":
            text, results["real"] = bench_real(cfg, log)
        else:
            text, results["models"] = bench_models(cfg, log)
        log(text + f"\n\n({time.perf_counter() - t0:.1f} s)\n")
        parts.append((titles[sec], text))
    md = "\n\n".join(f"### {t}\n\n{b}" for t, b in parts)
    return md, results


def main(argv=None) -> int:
    package_doc = sys.modules[__package__].__doc__  # the package's docstring describes the tool
    p = argparse.ArgumentParser(
        prog="python -m torchlc.bench", description=package_doc.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    p.add_argument("--dtypes", default=None, help="model dtypes (default float32,bfloat16)")
    p.add_argument(
        "--models",
        default=None,
        help="models to run, comma-separated (models: MLP,TransformerEncoder; "
        "real: resnet50,vit_b_16,convnext_tiny,gpt2,llama)",
    )
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

