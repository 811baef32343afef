"""Sections ``core`` (op times against plain torch), ``bytes`` (storage per element of each layout)
and ``small`` (per-op overhead on small tensors)."""

from __future__ import annotations

from functools import partial

import torch

import torchlc

from .config import Config
from .measure import kernel_names, page_faults, time_many
from .report import _ms, _ratio, _reason, _us, md_table


def _core_ops():
    return [
        ("add", "arith", 5.0, lambda a, b, z: a + b),
        ("mul", "arith", 5.0, lambda a, b, z: a * b),
        ("sin", "analytic", 10.0, lambda a, b, z: torch.sin(a)),
        ("abs", "discontinuous", 10.0, lambda a, b, z: torch.abs(a)),
        ("floor", "discontinuous", 10.0, lambda a, b, z: torch.floor(a)),
        ("heaviside", "discontinuous", 10.0, lambda a, b, z: torch.heaviside(a, z)),
    ]


def _core_inputs(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, v, y, w = (torch.randn(n, generator=g).to(device) for _ in range(4))
    # some exact kinks so the discontinuous rules see ties (integers for floor, zeros for abs)
    x[: n // 100] = torch.round(x[: n // 100])
    z = torch.zeros((), device=device)
    return x, v, y, w, z


def bench_core(cfg: Config):
    x, v, y, w, z = _core_inputs(cfg.n_core, cfg.device)
    lx, ly = x.nonstd(v), y.nonstd(w)
    rows, data = [], []
    for name, kind, bar, f in _core_ops():
        tp, tl = time_many([partial(f, x, y, z), partial(f, lx, ly, z)], cfg)
        fp, fl = page_faults(partial(f, x, y, z)), page_faults(partial(f, lx, ly, z))
        try:
            kn = kernel_names(partial(f, lx, ly, z))
            k = f"{len(kn)}: {' '.join(kn)}" if len(kn) <= 12 else str(len(kn))
            layout = torchlc.layout(f(lx, ly, z))
        except Exception:  # an LC failure is a result (tl says why), not a crash
            k, layout = "", ""
        ratio = tl / tp if isinstance(tl, float) else None
        verdict = "n/a" if ratio is None else ("PASS" if ratio <= bar else "FAIL")
        rows.append(
            (
                name,
                kind,
                _ms(tp),
                _ms(tl),
                _ratio(tl, tp),
                f"≤ {bar:g}×",
                verdict,
                k,
                layout,
                fp,
                fl,
            )
        )
        data.append(
            dict(
                op=name,
                plain_s=tp,
                lc_s=tl if isinstance(tl, float) else None,
                ratio=ratio,
                bar=bar,
                kernels=k,
                layout=layout,
                faults_plain=fp,
                faults_lc=fl,
            )
        )
    head = [
        "op",
        "kind",
        "plain ms",
        "LC ms",
        "LC/plain",
        "bar",
        "result",
        "LC kernels",
        "out layout",
        "page faults/call plain",
        "page faults/call LC",
    ]
    title = (
        f"{cfg.n_core:,} elements, float32, first order (x.nonstd(v)); binary ops take y.nonstd(w)."
    )
    return title + "\n\n" + md_table(head, rows), data


# -------------------------------------------------------------------------------------------------
# bytes per element


def bench_bytes(cfg: Config):
    n = min(cfg.n_core, 10**5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, generator=g).to(cfg.device)
    v = torch.randn(n, generator=g).to(cfg.device)
    lay = torchlc.layouts
    k = torch.arange(n, device=cfg.device) % 3
    c = torch.randn(n, generator=g).to(cfg.device)
    mono_terms = {q: torch.where(k == i, c, torch.zeros_like(c)) for i, q in enumerate((-1, 0, 1))}
    cases = [
        ("plain float32 tensor", lambda: None, x.element_size()),
        ("planes, first order x.nonstd(v) (2 planes)", lambda: x.nonstd(v), None),
        (
            "planes, order 3 x.nonstd(v, order=3)**3 (4 planes)",
            lambda: x.nonstd(v, order=3) ** 3,
            None,
        ),
        (
            "boxed, monomial with per-element exponents {-1, 0, 1}",
            lambda: torchlc.from_terms(mono_terms),
            None,
        ),
        (
            "boxed, torchlc.leading(x.nonstd(v) - x) (monomial ε¹)",
            lambda: _boxed_leading(x, v),
            None,
        ),
        (
            "csr, first order (layouts.force('csr'))",
            lambda: _forced("csr", lambda: x.nonstd(v) * 1),
            None,
        ),
        (
            "csr, monomial {-1, 0, 1} (layouts.force('csr'))",
            lambda: _forced("csr", lambda: torchlc.from_terms(mono_terms)),
            None,
        ),
    ]
    rows = []
    for label, make, fixed in cases:
        if fixed is not None:
            rows.append((label, "plain", "1", f"{fixed:g}"))
            continue
        try:
            t = make()
            rows.append(
                (label, torchlc.layout(t), len(torchlc.support(t)), f"{lay.bytes_per_element(t):g}")
            )
        except Exception as e:
            rows.append((label, _reason(e), "", ""))
    note = (
        f"{n:,} elements, float32 coefficients; inner tensors only "
        "(`torchlc.layouts.bytes_per_element`). CSR: row_ptr int64 (numel+1) + idx int32 + vals per "
        "nonzero term."
    )
    return note + "\n\n" + md_table(["tensor", "layout", "support size", "bytes/element"], rows)


def _forced(name, fn):
    with torchlc.layouts.force(name):
        return fn()


def _boxed_leading(x, v):
    t = torchlc.leading(x.nonstd(v) - x)
    if torchlc.layout(t) != "boxed":
        with torchlc.layouts.force("boxed"):
            t = torchlc.leading(x.nonstd(v) - x)
    return t


def bench_small(cfg: Config):
    import torch.autograd.forward_ad as fwAD

    s = cfg.small
    g = torch.Generator().manual_seed(2)
    a, b, va, vb = (torch.randn(s, s, generator=g).to(cfg.device) for _ in range(4))
    ops = [
        ("add", lambda p, q: p + q),
        ("mul", lambda p, q: p * q),
        ("mm", lambda p, q: torch.mm(p, q)),
        ("sin", lambda p, q: torch.sin(p)),
        ("relu", lambda p, q: torch.relu(p)),
    ]
    la, lb = a.nonstd(va), b.nonstd(vb)
    rows = []
    for name, f in ops:
        with fwAD.dual_level():
            da, db = fwAD.make_dual(a, va), fwAD.make_dual(b, vb)
            tp, tl, td = time_many([partial(f, a, b), partial(f, la, lb), partial(f, da, db)], cfg)
        try:
            kn = kernel_names(partial(f, la, lb))
            k = f"{len(kn)}: {' '.join(kn)}" if len(kn) <= 12 else str(len(kn))
        except Exception:
            k = ""
        rows.append((name, _us(tp), _us(td), _us(tl), _ratio(tl, tp), _ratio(tl, td), k))
    head = ["op", "plain µs", "forward_ad dual µs", "LC µs", "LC/plain", "LC/dual", "LC kernels"]
    note = f"{s}×{s} float32, first order; binary ops on two LC (or two dual) operands."
    return note + "\n\n" + md_table(head, rows)
