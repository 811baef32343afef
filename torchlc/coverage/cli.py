"""The command line: ``python -m torchlc.coverage [--ops a,b] [--out FILE] [--json FILE]``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

from .report import render_markdown, totals
from .runner import MissingDependencyError, run


def main(argv=None):
    package_doc = sys.modules[__package__].__doc__  # the package's docstring describes the tool
    p = argparse.ArgumentParser(
        prog="python -m torchlc.coverage", description=package_doc.split("\n")[0]
    )
    p.add_argument("--ops", help="comma-separated OpInfo names (default: all with forward AD)")
    p.add_argument("--max-samples", type=int, default=4)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per op")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes (one thread each); the results do not depend on it")
    p.add_argument(
        "--out", default=None, help="markdown output (default docs/coverage.md on a full run)"
    )
    p.add_argument("--json", default=None, help="also write results as JSON here")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    names = a.ops.split(",") if a.ops else None
    torch.set_num_threads(min(torch.get_num_threads(), 2) if a.jobs <= 1 else 1)

    def progress(r):
        if not a.quiet:
            print(f"{r.status:16s} {r.seconds:6.2f}s {r.name}: {r.note}", flush=True)

    t0 = time.perf_counter()
    try:
        results = run(names, a.max_samples, a.timeout, a.seed, progress, jobs=a.jobs)
    except MissingDependencyError as e:
        print(f"python -m torchlc.coverage: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    md = render_markdown(results, elapsed=elapsed, max_samples=a.max_samples, timeout=a.timeout)
    out = a.out
    if out is None and names is None:
        # the repository's docs/coverage.md (this file is torchlc/coverage/cli.py)
        out = os.path.join(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "coverage.md"
        )
    if out:
        with open(out, "w") as f:
            f.write(md)
        print(f"wrote {out}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dataclasses.asdict(r) for r in results], f, indent=1)
    t = totals(results)
    n = len(results)
    print(
        " ".join(f"{k}={v}" for k, v in t.items()),
        f"pass%={100.0 * t['pass'] / max(n, 1):.1f}",
        f"elapsed={elapsed:.0f}s",
    )
    return 1 if t["wrong"] else 0
