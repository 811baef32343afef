"""Summarise a torchlc_geo sweep's results.jsonl into a markdown table and a plot.

    python docs/make_geo_sweep_table.py docs/data/geo_sweep_h100_partial.jsonl docs/img/geo_sweep_h100.png
"""

import json
import sys
from collections import defaultdict


def main(path, png):
    rows = [json.loads(line) for line in open(path)]
    groups = defaultdict(dict)
    for r in rows:
        key = (r["shape"], r["depth"], r["k"], r["activation"], r["compile"], r["bf16"])
        groups[key][r["model"]] = r
    print("| grid | depth | k | act | compile | bf16 | geo R² | geo params | geo step ms | "
          "equal-params R² | equal-FLOPs R² | equal-neurons R² |")
    print("|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|")
    for key, m in sorted(groups.items()):
        g = m.get("geo")
        if g is None:
            continue
        cells = [f"{m[b]['test_r2']:.3f}" if b in m else "—" for b in ("equal_params", "equal_flops", "equal_neurons")]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {key[5]} | {g['test_r2']:.3f} | "
              f"{g['params']:,} | {g['step_ms']:.2f} | " + " | ".join(cells) + " |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, marker in (("geo", "o"), ("equal_params", "s"), ("equal_flops", "^"), ("equal_neurons", "x")):
        pts = [(r["params"], r["test_r2"]) for r in rows if r["model"] == model]
        if pts:
            ax.scatter(*zip(*pts), label=model, marker=marker)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test R²")
    ax.set_title("GeoSparseNet vs dense baselines (H100 sweep, first slice)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
