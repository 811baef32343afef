"""Section ``ragged``: elements with per-element exponents on the native CSR layout (issue 17).

The cases and bars of the issue: at 10⁵ elements with per-element exponents, x + y, x * y and sqrt(x)
(exact) against the same ops on a common support (ragged/common ≤ 30×, peak memory ≤ 2 GB); 1,024
distinct exponents × 10⁵ elements, x * y at least 10× faster than the CSR prototype's 12.6 s;
``torchlc.eps() ** t`` with 10⁴ distinct exponents under 1 s. Plus the crossover that sets the layout
policy (planes against CSR as the support widens at three terms per element).
"""

from __future__ import annotations

from fractions import Fraction

import torch

import torchlc

from .config import Config
from .measure import time_many
from .memory import _rss_peak
from .report import _ms, _ratio, _reason, md_table

G = 1024  # exponents are multiples of 1/G


def three_terms(n, c, lo, hi, seed, *, dtype=torch.float64, order=1):
    """c0 + c1 ε^{s_i} + c2 ε^{t_i} with per-element s_i < t_i, multiples of 1/G in [lo, hi)/G."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(lo, hi - 1, (n,), generator=g)
    t = s + 1 + (torch.randint(0, hi - lo, (n,), generator=g) % (hi - s - 1).clamp_min(1))
    num = torch.stack([torch.zeros(n, dtype=torch.int64), s, t], 1).reshape(-1)
    vals = torch.tensor(c, dtype=dtype).repeat(n)
    crow = torch.arange(0, 3 * n + 1, 3)
    return torchlc.from_csr(crow, num, vals, denominator=G, order=order)


def common_terms(n, c, qs, *, dtype=torch.float64, order=1):
    """The same shape of element with one common support (planes)."""
    return torchlc.from_terms({0: torch.full((n,), c[0], dtype=dtype), qs[0]: torch.full((n,), c[1], dtype=dtype),
                               qs[1]: torch.full((n,), c[2], dtype=dtype)}, order=order)


def _exact_product(a: dict, b: dict, order) -> dict:
    out: dict = {}
    for p, x in a.items():
        for q, y in b.items():
            if p + q <= order:
                out[p + q] = out.get(p + q, 0) + x * y
    return {q: v for q, v in out.items() if v != 0}


def _as_exact(d: dict) -> dict:
    return {q: Fraction(float(v)) for q, v in d.items() if float(v) != 0}


def _spot_check(x, y, xy, idx) -> bool:
    """x·y at a few elements against an exact Cauchy product of Fractions."""
    for i in idx:
        want = _exact_product(_as_exact(torchlc.terms(x, i)), _as_exact(torchlc.terms(y, i)), 1)
        if _as_exact(torchlc.terms(xy, i)) != want:
            return False
    return True


def _peak(fn):
    try:
        return _rss_peak(fn) / 2**20
    except OSError:
        return float("nan")


def bench_ragged(cfg: Config):
    n = 10**3 if cfg.quick else 10**5
    text, data = [], {}

    # 1. per-element exponents against a common support --------------------------------------------------
    x = three_terms(n, [1.0, 1.0, 2.0], G // 4, G, 1)
    y = three_terms(n, [3.0, -1.0, 1.0], G // 4, G, 2)
    xc = common_terms(n, [1.0, 1.0, 2.0], (Fraction(1, 3), Fraction(1, 2)))
    yc = common_terms(n, [3.0, -1.0, 1.0], (Fraction(2, 5), Fraction(3, 5)))
    ops = [("x + y", lambda a, b: a + b), ("x * y", lambda a, b: a * b), ("sqrt(x)", lambda a, b: torch.sqrt(a))]
    times = time_many([lambda f=f: f(x, y) for _, f in ops] + [lambda f=f: f(xc, yc) for _, f in ops], cfg)
    rows = []
    total_r = total_c = 0.0
    for k, (name, f) in enumerate(ops):
        tr, tc = times[k], times[k + len(ops)]
        res = f(x, y)
        peak = _peak(lambda f=f: f(x, y))
        exact = torchlc.exact_through(res) == 1
        rows.append([name, torchlc.layout(x), _ms(tr), _ms(tc), _ratio(tr, tc), f"{peak:.0f}",
                     torchlc.layout(res), "yes" if exact else "no"])
        data[name] = {"ragged_s": tr, "common_s": tc, "peak_mib": peak, "exact": exact}
        if isinstance(tr, float) and isinstance(tc, float):
            total_r, total_c = total_r + tr, total_c + tc
    ok = _spot_check(x, y, x * y, [0, 1, n // 2, n - 1])
    text.append(
        f"**Per-element exponents, {n:,} elements** (x = 1 + ε^(s_i) + 2ε^(t_i), y = 3 − ε^(u_i) + ε^(w_i), "
        f"exponents k/{G} in [1/4, 1) drawn per element; order 1, float64). *common*: the same ops with one "
        "support for all elements (ε^(1/3), ε^(1/2); ε^(2/5), ε^(3/5)) on planes. Bars: ragged/common ≤ 30×, "
        "peak ≤ 2 GB.\n\n"
        + md_table(["op", "input layout", "ragged ms", "common ms", "ragged/common", "peak MiB",
                    "result layout", "exact through order"], rows)
        + f"\n\nAll three together: {_ms(total_r)} ms against {_ms(total_c)} ms ({_ratio(total_r, total_c)}). "
        f"x·y at four elements equals the exact Cauchy product of Fractions: {'yes' if ok else 'NO'}."
    )
    data["total"] = {"ragged_s": total_r, "common_s": total_c}

    # 2. 1,024 distinct exponents × 10^5 elements (the prototype comparison) -----------------------
    a = three_terms(n, [1.0, 0.5, -2.0], 1, G + 1, 3, order=2)
    b = three_terms(n, [2.0, 1.5, 1.0], 1, G + 1, 4, order=2)
    t_add, t_mul = time_many([lambda: a + b, lambda: a * b], cfg)
    peak = _peak(lambda: a * b)
    text.append(
        f"**1,024 distinct exponents, {n:,} elements** (3 terms per element, exponents k/{G}, order 2). "
        "Prototype (alok/infnum CSR `SparseLCTensor`, issue 17): add 10.9 s, mul 12.6 s; torchlc on planes "
        "before: add 0.75 s, mul 88 s. Bar: mul ≥ 10× faster than 12.6 s.\n\n"
        + md_table(["op", "ms", "vs prototype", "peak MiB (mul)"],
                   [["x + y", _ms(t_add), _ratio(10.9, t_add), ""],
                    ["x * y", _ms(t_mul), _ratio(12.6, t_mul), f"{peak:.0f}"]])
    )
    data["1024_distinct"] = {"add_s": t_add, "mul_s": t_mul, "peak_mib": peak}

    # 3. unique exponents per element ----------------------------------------------------------------------
    rows = []
    for m in ([10**3] if cfg.quick else [10**3, 10**4, 10**5]):
        crow = torch.arange(0, 3 * m + 1, 3)
        num = torch.arange(3 * m, dtype=torch.int64)  # every exponent once: 3m distinct
        u = torchlc.from_csr(crow, num, torch.ones(3 * m, dtype=torch.float64), denominator=3 * m, order=2)
        w = torchlc.from_csr(crow, num.flip(0), torch.ones(3 * m, dtype=torch.float64), denominator=3 * m, order=2)
        ta, tm = time_many([lambda u=u, w=w: u + w, lambda u=u, w=w: u * w], cfg)
        rows.append([f"{m:,}", f"{3 * m:,}", _ms(ta), _ms(tm)])
        data[f"unique_{m}"] = {"add_s": ta, "mul_s": tm}
    text.append(
        "**Unique exponents** (element i holds ε^(3i/3m), ε^((3i+1)/3m), ε^((3i+2)/3m); the second operand "
        "the reversed exponents). Prototype: 10⁴ elements add 0.09 s, mul 0.1–1.4 s; torchlc on planes before: "
        "10⁴ add 12.6 s, mul not feasible.\n\n" + md_table(["elements", "distinct exponents", "add ms", "mul ms"], rows)
    )

    # 4. eps() ** t -----------------------------------------------------------------------------------------
    rows = []
    for m in ([10**3] if cfg.quick else [10**3, 3 * 10**3, 10**4, 10**5]):
        t = torch.arange(1, m + 1, dtype=torch.float64) / m
        (te,) = time_many([lambda t=t: torchlc.eps(dtype=torch.float64) ** t], cfg)
        rows.append([f"{m:,}", _ms(te), torchlc.layout(torchlc.eps(dtype=torch.float64) ** t)])
        data[f"eps_pow_{m}"] = te
    text.append(
        "**`torchlc.eps() ** t`**, t = (1..m)/m: m distinct rational exponents. Before: 10 s at m = 1,000, "
        "304 s at 3,000. Bar: < 1 s at 10⁴.\n\n" + md_table(["m", "ms", "layout"], rows)
    )

    # 5. sqrt with per-element leading exponents -----------------------------------------------------------
    rows = []
    for m in ([100] if cfg.quick else [100, 10**5]):
        crow = torch.arange(0, 2 * m + 1, 2)
        k = torch.arange(m, dtype=torch.int64)
        num = torch.stack([-(k % G), G - (k % G) // 2], 1).reshape(-1)  # leading ε^(-k/G), then one more
        v = torchlc.from_csr(crow, num, torch.tensor([4.0, 1.0], dtype=torch.float64).repeat(m), denominator=G)
        try:
            (ts,) = time_many([lambda v=v: torch.sqrt(v)], cfg)
        except Exception as e:  # noqa: BLE001  (a failure is a result)
            ts = _reason(e)
        rows.append([f"{m:,}", _ms(ts)])
        data[f"sqrt_leads_{m}"] = ts
    text.append(
        "**sqrt with per-element leading exponents** (element i = 4ε^(−(i mod 1024)/1024) + ε^(…)): "
        "before 33 s at 100 elements.\n\n" + md_table(["elements", "ms"], rows)
    )

    # 6. crossover: planes against CSR as the support widens ------------------------------------------------
    rows = []
    for T in ([4, 16] if cfg.quick else [4, 8, 16, 32, 64, 128]):
        g = torch.Generator().manual_seed(5)
        terms = []
        for seed in (0, 1):
            e = torch.stack([torch.randperm(T, generator=g)[:3] for _ in range(1)]).expand(n, 3) if T < 3 else \
                torch.argsort(torch.rand(n, T, generator=g), 1)[:, :3].sort(1).values
            crow = torch.arange(0, 3 * n + 1, 3)
            terms.append((crow, e.reshape(-1), torch.randn(3 * n, generator=g, dtype=torch.float64)))
        with torchlc.layouts.force("csr"):
            p, q = (torchlc.from_csr(c, e, v, denominator=4 * T, order=1) for c, e, v in terms)
        with torchlc.layouts.force("planes"):
            pp, qp = p * 1, q * 1
        fns = []
        for lay, (u, w) in (("csr", (p, q)), ("planes", (pp, qp))):
            fns += [lambda u=u, w=w, lay=lay: _forced(lay, lambda: u + w),
                    lambda u=u, w=w, lay=lay: _forced(lay, lambda: u * w)]
        ca, cm, pa, pm = time_many(fns, cfg)
        rows.append([T, f"{T / 3:.1f}", _ms(pa), _ms(ca), _ratio(ca, pa), _ms(pm), _ms(cm), _ratio(cm, pm)])
        data[f"crossover_{T}"] = {"planes_add": pa, "csr_add": ca, "planes_mul": pm, "csr_mul": cm}
    text.append(
        f"**Crossover** ({n:,} elements, 3 terms each, exponents drawn from T values; both layouts forced): "
        "time of each layout as the support widens. Plane cells per stored term = T/3. The policy "
        "(`torchlc.layouts.csr.SPARSE_RATIO`) moves a result to CSR above the measured crossover.\n\n"
        + md_table(["T", "cells/term", "planes add ms", "csr add ms", "csr/planes", "planes mul ms",
                    "csr mul ms", "csr/planes"], rows)
    )
    return "\n\n".join(text), data


def _forced(layout, fn):
    with torchlc.layouts.force(layout):
        return fn()
