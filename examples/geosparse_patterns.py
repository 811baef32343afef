"""Draw GeoSparse connectivity patterns (writes geo_patterns.png into a folder it creates).

Run:  python examples/geosparse_patterns.py                      # ./torchlc_outputs/geosparse_patterns/
      python examples/geosparse_patterns.py --out-dir docs/img     # regenerates the figure of docs/geosparse.md
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from torchlc_geo import build_connectivity  # noqa: E402

PANELS = [
    ("local, k=8 (auto: ring, no centre)", dict(k=8)),
    ("local, k=9 (centre + ring)", dict(k=9)),
    ("local, k=16 (auto radius 2)", dict(k=16)),
    ("random, k=8, radius 2", dict(k=8, pattern="random", radius=2, seed=0)),
    ("hash, k=8, radius 2", dict(k=8, pattern="hash", radius=2, seed=0)),
    ("local k=8, clamp at the border", dict(k=8)),
]


OUT_DIR = os.path.join("torchlc_outputs", "geosparse_patterns")  # relative to the working directory


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out-dir", default=OUT_DIR,
                   help=f"folder for geo_patterns.png, created if missing (default: {OUT_DIR})")
    p.add_argument("--out", default=None, help="the image file to write instead (overrides --out-dir)")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.out_dir, "geo_patterns.png")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    H = W = 9
    fig, axes = plt.subplots(2, 3, figsize=(10, 7))
    for ax, (title, kw) in zip(axes.flat, PANELS):
        idx = build_connectivity((H, W), **kw)
        corner = "border" in title
        targets = [(0, 0), (0, 4)] if corner else [(4, 4)]
        img = np.zeros((H, W))
        for tr, tc in targets:
            for i in idx[tr * W + tc].tolist():
                img[i // W, i % W] += 1
        ax.imshow(img, cmap="Blues", vmin=0, vmax=max(2, img.max()))
        for tr, tc in targets:
            ax.scatter([tc], [tr], marker="*", s=160, c="crimson", zorder=3)
        for (r, c), v in np.ndenumerate(img):
            if v > 1:
                ax.text(c, r, f"×{int(v)}", ha="center", va="center", fontsize=8, color="white")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(W))
        ax.set_yticks(range(H))
        ax.tick_params(labelsize=6)
        ax.grid(False)
    fig.suptitle("Inputs (blue) read by the output neuron(s) marked ★ on a 9×9 grid (row-major idx = row·W + col)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
