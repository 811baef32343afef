"""The torchlc tour: ``python -m torchlc``.

Three short demonstrations, each printed as it runs:

1. ``ngrad`` of abs, heaviside, sign, round and floor at their kinks, from the right and from the
   left. The ε⁻¹ coefficient is the jump seen from that side (a Dirac mass), the ε⁰ coefficient the
   one-sided slope. Every value is checked exactly against the semantics contract.
2. A small ``nn.Sequential`` (Linear, Tanh, Linear; float64) run unchanged on ``x.nonstd(v)``: its
   ε⁰ plane is compared with the plain forward and its ε¹ plane with ``torch.func.jvp``'s tangent.
3. A plot of round and floor over [-2, 2] with the ε⁻¹ coefficients of ``ngrad`` as stems, saved to
   ``torchlc_tour.png`` (``--out PATH``); skipped with a hint when matplotlib is missing.

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import torchlc

DTYPE = torch.float64
JVP_TOL = (
    1e-12  # float64 round-off between two different evaluation orders, not a semantics tolerance
)


def _t(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=DTYPE)


def _num(c: float) -> str:
    """A coefficient for printing: integers without a fraction, -0.0 shown as 0."""
    c = float(c) + 0.0
    return f"{c:g}"


def _quotient(c_m1: float, c_0: float) -> str:
    """c₋₁ε⁻¹ + c₀ as text, leaving out zero terms."""
    parts = []
    if c_m1 != 0:
        parts.append(f"{_num(c_m1)}ε⁻¹")
    if c_0 != 0 or not parts:
        parts.append(_num(c_0))
    return " + ".join(parts).replace("+ -", "- ")


# (label, f, kink, expected (ε⁻¹, ε⁰) from the right, expected (ε⁻¹, ε⁰) from the left, note)
# Expected values are those of the semantics contract, §4-§5.
_ZERO = _t(0.0)
_ONE = _t(1.0)
KINKS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], float, tuple, tuple, str]] = [
    ("abs(x)", torch.abs, 0.0, (0, 1), (0, -1), "no jump; slopes +1 / -1"),
    (
        "heaviside(x, 0)",
        lambda x: torch.heaviside(x, _ZERO),
        0.0,
        (1, 0),
        (0, 0),
        "H(0)=0: jump on the right",
    ),
    (
        "heaviside(x, 1)",
        lambda x: torch.heaviside(x, _ONE),
        0.0,
        (0, 0),
        (1, 0),
        "H(0)=1: jump on the left",
    ),
    ("sign(x)", torch.sign, 0.0, (1, 0), (1, 0), "sign(0)=0: jump 1 on each side"),
    ("round(x)", torch.round, 0.5, (1, 0), (0, 0), "round(0.5)=0 (half to even)"),
    ("round(x)", torch.round, 1.5, (0, 0), (1, 0), "round(1.5)=2 (half to even)"),
    ("floor(x)", torch.floor, 1.0, (0, 0), (1, 0), "floor(1)=1, floor(1-ε)=0"),
    ("floor(x)", torch.floor, 0.3, (0, 0), (0, 0), "no kink: derivative 0"),
]


def _ngrad_coeffs(f, x: torch.Tensor, side: str) -> tuple[float, float]:
    """(ε⁻¹, ε⁰) coefficients of ngrad(f, x) for a scalar x."""
    d = torchlc.ngrad(f, x, side=side)
    return torchlc.coeff(d, -1).item(), torchlc.coeff(d, 0).item()


def section_kinks() -> bool:
    print("1. Dirac masses: ngrad(f, x0) = (f(x0 + ε) - f(x0)) / ε from the right,")
    print(
        "   (f(x0) - f(x0 - ε)) / ε from the left. The ε⁻¹ coefficient is the jump, ε⁰ the slope.\n"
    )
    x = _t(0.0).nonstd()
    print(f"   x = torch.tensor(0.).nonstd()  ->  {x!r}   (layout {torchlc.layout(x)!r})")
    print(f"   abs(-x) = {torch.abs(-x)!r}   floor(1 - x) = {torch.floor(1 - x)!r}\n")

    header = f"   {'f':<16}{'x0':>5}   {'from the right':<16}{'from the left':<16}{'':4}note"
    print(header)
    print("   " + "-" * (len(header) - 3))
    ok = True
    for label, f, x0, want_r, want_l, note in KINKS:
        got = {side: _ngrad_coeffs(f, _t(x0), side) for side in ("forward", "backward")}
        good = got["forward"] == tuple(map(float, want_r)) and got["backward"] == tuple(
            map(float, want_l)
        )
        ok &= good
        mark = "ok" if good else "MISMATCH"
        print(
            f"   {label:<16}{x0:>5g}   {_quotient(*got['forward']):<16}{_quotient(*got['backward']):<16}"
            f"{mark:4}{note}"
        )
        if not good:
            print(
                f"      expected right {_quotient(*want_r)}, left {_quotient(*want_l)};"
                f" got right {got['forward']}, left {got['backward']}"
            )

    # The whole LC number, as ngrad returns it, and the central quotient.
    d = torchlc.ngrad(lambda t: torch.heaviside(t, _ZERO), _t(0.0), side="central")
    print(f"\n   ngrad(heaviside(·, 0), 0, side='central') = {d!r}")
    cm1 = torchlc.coeff(d, -1).item()
    good = cm1 == 0.5
    ok &= good
    print(
        f"   central = mean of both sides: ε⁻¹ coefficient {_num(cm1)} (expected 0.5) {'ok' if good else 'MISMATCH'}"
    )
    print()
    return ok


def section_model(seed: int = 0) -> bool:
    print(
        "2. Any model, unchanged: nn.Sequential(Linear(3, 16), Tanh(), Linear(16, 2)) in float64,"
    )
    print("   run on x.nonstd(v), against the plain forward and torch.func.jvp.\n")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
        ).to(DTYPE)
    x = torch.randn(8, 3, dtype=DTYPE, generator=g)
    v = torch.randn(8, 3, dtype=DTYPE, generator=g)

    y = model(x.nonstd(v))
    plain = model(x)
    _, tangent = torch.func.jvp(model, (x,), (v,))
    y0 = torchlc.coeff(y, 0)
    y1 = torchlc.coeff(y, 1)
    err0 = (y0 - plain).abs().max().item()
    err1 = (y1 - tangent).abs().max().item()
    print(
        f"   y = model(x.nonstd(v)): {type(y).__name__}, shape {tuple(y.shape)}, support {', '.join(f'ε^{q}' for q in torchlc.support(y))}"
    )
    print(f"   y[0] = {y[0]!r}")
    print(f"   max |ε⁰(y) - model(x)|            = {err0:.3e}")
    print(f"   max |ε¹(y) - jvp(model, x, v)[1]| = {err1:.3e}")
    ok = err0 <= JVP_TOL and err1 <= JVP_TOL
    print(f"   {'ok' if ok else 'MISMATCH'} (float64, tolerance {JVP_TOL:g})\n")
    return ok


def section_plot(out: Path) -> bool:
    print("3. Plot: round and floor on [-2, 2] with the ε⁻¹ coefficients of ngrad as stems.\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("   matplotlib is not installed: skipping the plot.")
        print('   Install it with  pip install matplotlib  (or  pip install -e ".[examples]").\n')
        return True

    # Exact grid points i/40: integers and half-integers are hit exactly.
    grid = torch.arange(-80, 81, dtype=DTYPE) / 40
    fine = torch.linspace(-2, 2, 4001, dtype=DTYPE)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (name, f) in zip(axes, [("round", torch.round), ("floor", torch.floor)]):
        right = torchlc.coeff(torchlc.ngrad(f, grid, side="forward"), -1)
        left = torchlc.coeff(torchlc.ngrad(f, grid, side="backward"), -1)
        # f itself, with a break at each jump so no vertical segments are drawn.
        yf = f(fine)
        yf_plot = yf.clone()
        yf_plot[1:][yf[1:] != yf[:-1]] = float("nan")
        ax.plot(fine.numpy(), yf_plot.numpy(), color="0.25", lw=1.8, label=f"{name}(x)")
        for coeffs, side, color, marker in [
            (right, "from the right (forward)", "C0", "o"),
            (left, "from the left (backward)", "C3", "s"),
        ]:
            nz = coeffs != 0
            if nz.any():
                m, s, b = ax.stem(
                    grid[nz].numpy(),
                    coeffs[nz].numpy(),
                    linefmt=color + "-",
                    markerfmt=color + marker,
                    basefmt=" ",
                    label=f"ε⁻¹ coefficient {side}",
                )
                s.set_linewidth(2)
            print(
                f"   {name}: Dirac masses {side:<25} at x = "
                + (", ".join(f"{v:g}" for v in grid[nz].tolist()) or "none")
            )
        # The value at each jump point: which side it belongs to decides which side sees the jump.
        jumps = (right != 0) | (left != 0)
        ax.plot(
            grid[jumps].numpy(),
            f(grid)[jumps].numpy(),
            "o",
            color="0.25",
            ms=5,
            label=f"{name}(x0) at a jump",
            zorder=4,
        )
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.set_title(f"{name}(x) and the ε⁻¹ coefficients of ngrad")
        ax.set_xlabel("x")
        ax.set_xticks(torch.arange(-2, 2.5, 0.5).tolist())
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("torchlc: jumps appear as Dirac masses (ε⁻¹ terms) on the side that sees them")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"\n   plot written to {out.resolve()}\n")
    return True


def _version() -> str:
    try:
        return importlib.metadata.version("torchlc")
    except importlib.metadata.PackageNotFoundError:
        return getattr(torchlc, "__version__", "(not installed)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m torchlc", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=Path("torchlc_tour.png"),
        help="where to save the plot (default: %(default)s)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the plot")
    args = p.parse_args(argv)

    print(f"torchlc {_version()} on torch {torch.__version__}\n")
    results = {"Dirac masses": section_kinks(), "model vs jvp": section_model()}
    if not args.no_plot:
        results["plot"] = section_plot(args.out)
    failed = [k for k, good in results.items() if not good]
    if failed:
        print(
            "FAILED: "
            + ", ".join(failed)
            + " (values disagree with the semantics; please report this)"
        )
        return 1
    print("All checks passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
