"""Regenerate the figures of the docs: ``python docs/make_plots.py [--out-dir docs/img]``.

* ``ngrad_round_floor.png``: round and floor on [-2.5, 2.5], with the ε⁻¹ coefficient of
  ``torchlc.ngrad`` from the right (forward) and from the left (backward) drawn as stems.
* ``sqrt_abs.png``: √|x| with the coefficient of ε^{-1/2} of its forward and backward ngrad, and its
  ε⁰ slope away from 0: at 0 the quotient is ε^{-1/2}, infinite but not a jump (no ε⁻¹ term).

Every number drawn comes from torchlc. The jump locations are not written down anywhere: ngrad is
evaluated on a dyadic grid (step 1/64, so every half-integer is on it exactly) and a stem is drawn
wherever the ε⁻¹ coefficient is nonzero.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import torchlc  # noqa: E402

DTYPE = torch.float64
GRID = torch.arange(-160, 161, dtype=DTYPE) / 64  # [-2.5, 2.5], step 1/64: exact in binary


def jumps(f, xs: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(points, ε⁻¹ coefficients) of ngrad(f, xs, side=side) where that coefficient is nonzero."""
    c = torchlc.coeff(torchlc.ngrad(f, xs, side=side), -1)
    nz = c != 0
    return xs[nz], c[nz]


def plot_round_floor(path: Path) -> None:
    fine = torch.linspace(-2.5, 2.5, 2001, dtype=DTYPE)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (name, f) in zip(axes, [("round", torch.round), ("floor", torch.floor)]):
        # the function itself, with its discontinuities left open
        y = f(fine)
        y_plot = y.clone()
        y_plot[1:][y[1:] != y[:-1]] = float("nan")
        ax.plot(fine, y_plot, color="0.25", lw=1.6, label=f"{name}(x)")
        for side, colour, marker, shift in [
            ("forward", "tab:red", "^", +0.03),
            ("backward", "tab:blue", "v", -0.03),
        ]:
            px, c = jumps(f, GRID, side)
            if px.numel() == 0:  # e.g. floor never jumps on the right of a point
                ax.plot(
                    [],
                    [],
                    marker,
                    color=colour,
                    label=f"ε⁻¹ coefficient of ngrad, side={side!r}: none",
                )
                continue
            ml, sl, bl = ax.stem(px + shift, c, linefmt=colour, markerfmt=marker, basefmt=" ")
            plt.setp(ml, color=colour, markersize=7)
            ml.set_label(f"ε⁻¹ coefficient of ngrad, side={side!r}")
            # f(x0) at each jump: the value the point itself takes decides the side of the jump
            ax.plot(px, f(px), "o", color=colour, mfc="white", ms=5, zorder=3)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.set_title(f"{name}: Dirac masses from ngrad (ε⁻¹ coefficient)")
        ax.set_xlabel("x")
        ax.set_xticks([k / 2 for k in range(-5, 6)])
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        "round (half to even) jumps on the right of −1.5, 0.5, 2.5 and on the left of −2.5, −0.5, 1.5;"
        " floor jumps on the left of every integer (open circles: f(x₀))",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sqrt_abs(path: Path) -> None:
    def f(x):
        return x.abs().sqrt()

    half = Fraction(-1, 2)
    fine = torch.linspace(-2.5, 2.5, 2001, dtype=DTYPE)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.plot(fine, f(fine), color="0.25", lw=1.6, label="√|x|")
    # slope away from 0 (ε⁰ coefficient of the forward quotient)
    pts = GRID[GRID.abs() >= 0.25]
    slope = torchlc.coeff(torchlc.ngrad(f, pts), 0)
    ax.plot(
        pts, slope, ".", color="tab:green", ms=3, label="ε⁰ coefficient of ngrad (slope), x ≠ 0"
    )
    for side, colour, marker, shift in [
        ("forward", "tab:red", "^", 0.03),
        ("backward", "tab:blue", "v", -0.03),
    ]:
        d = torchlc.ngrad(f, GRID, side=side)
        # only ε^{-1/2} is infinite here: no ε⁻¹ term (no jump) anywhere on the grid
        assert bool((torchlc.coeff(d, -1) == 0).all())
        c = torchlc.coeff(d, half)
        nz = c != 0
        ml, _, _ = ax.stem(GRID[nz] + shift, c[nz], linefmt=colour, markerfmt=marker, basefmt=" ")
        plt.setp(ml, color=colour, markersize=7)
        ml.set_label(f"ε^(-1/2) coefficient, side={side!r}")
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_ylim(-2.5, 2.5)
    ax.set_xlabel("x")
    ax.set_title(
        "ngrad of √|x|: at 0 the quotient is ±ε^(-1/2): infinite, but not a jump (no ε⁻¹)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "img")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    plot_round_floor(args.out_dir / "ngrad_round_floor.png")
    plot_sqrt_abs(args.out_dir / "sqrt_abs.png")
    print(f"wrote {args.out_dir / 'ngrad_round_floor.png'} and {args.out_dir / 'sqrt_abs.png'}")


if __name__ == "__main__":
    main()
