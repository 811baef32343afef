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
    return note + "\n\n" + md_table(head, rows) + "\n\n" + bench_model_ops(cfg)


def _model_ops(dev):
    """The ops real models dispatch (torchvision CNNs and ViTs, GPT-2, Llama), on small first-order
    inputs: (name, function, x, v). Tiny tensors, so host time is what is measured."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(dev)

    x4, v4, w4 = r(2, 8, 6, 6), r(2, 8, 6, 6), r(8, 8, 3, 3)
    rm, rv, bw, bb = r(8), r(8).abs() + 1, r(8), r(8)
    x3, v3, w, b, lw, lb = r(2, 5, 16), r(2, 5, 16), r(16, 16), r(16), r(16), r(16)
    q, vq = r(2, 2, 5, 8), r(2, 2, 5, 8)
    return [
        ("conv2d", lambda t: F.conv2d(t, w4, padding=1), x4, v4),
        ("batch_norm (eval)", lambda t: F.batch_norm(t, rm, rv, bw, bb, False), x4, v4),
        ("relu_", lambda t: torch.relu_(t), x4, v4),
        ("add_ (residual)", lambda t: t.add_(t), x4, v4),
        ("adaptive_avg_pool2d", lambda t: F.adaptive_avg_pool2d(t, 1), x4, v4),
        ("linear", lambda t: F.linear(t, w, b), x3, v3),
        ("layer_norm", lambda t: F.layer_norm(t, (16,), lw, lb), x3, v3),
        ("gelu", lambda t: F.gelu(t), x3, v3),
        ("silu", lambda t: F.silu(t), x3, v3),
        ("tanh", lambda t: torch.tanh(t), x3, v3),
        ("softmax", lambda t: torch.softmax(t, -1), x3, v3),
        ("mul (LC×LC)", lambda t: t * t, x3, v3),
        ("add (LC+LC)", lambda t: t + t, x3, v3),
        ("view", lambda t: t.view(-1, 16), x3, v3),
        ("transpose", lambda t: t.transpose(0, 1), x3, v3),
        ("sdpa", lambda t: F.scaled_dot_product_attention(t, t, t), q, vq),
    ]


def bench_model_ops(cfg: Config):
    """Host time per LC op on the ops of real models: LC µs against the plain op on 2×rows (the same
    work without LC), on tiny tensors where the host dominates. In-place ops run on a fresh clone each
    call (the clone's time is subtracted from both)."""
    import statistics

    from torchlc._tensor import LCTensor

    rows, over, over_op = [], [], []
    for name, f, x, v in _model_ops(cfg.device):
        lx, x2 = x.nonstd(v), torch.cat([x, v])
        inplace = name.endswith("_") or "_ (" in name
        if inplace:
            fl, fp = (lambda: f(lx.clone())), (lambda: f(x2.clone()))
            cl, cp = (lambda: lx.clone()), (lambda: x2.clone())
            with torch.no_grad():
                tl, tp, tcl, tcp = time_many([fl, fp, cl, cp], cfg)
            tl, tp = (tl - tcl, tp - tcp) if all(isinstance(t, float) for t in (tl, tp, tcl, tcp)) else (tl, tp)
        else:
            with torch.no_grad():
                tl, tp = time_many([lambda: f(lx), lambda: f(x2)], cfg)
        calls = [0]
        orig = LCTensor._dispatcher

        def counting(func, args, kwargs, _orig=orig):
            calls[0] += 1
            return _orig(func, args, kwargs)

        LCTensor._dispatcher = staticmethod(counting)
        try:
            with torch.no_grad():
                f(lx.clone() if inplace else lx)
        finally:
            LCTensor._dispatcher = staticmethod(orig)
        try:
            with torch.no_grad():
                kl = len(kernel_names(lambda: f(lx.clone() if inplace else lx))) - inplace
                kp = len(kernel_names(lambda: f(x2.clone() if inplace else x2))) - inplace
        except Exception:
            kl = kp = "n/a"
        extra = tl - tp if isinstance(tl, float) and isinstance(tp, float) else None
        if extra is not None:
            over.append(extra / max(calls[0], 1))
            over_op.append(extra)
        rows.append((name, _us(tp), _us(tl), _us(extra) if extra is not None else "n/a", calls[0], kl, kp))
    head = ["op", "plain 2×rows µs", "LC µs", "LC − plain µs", "LC dispatches", "LC kernels", "plain kernels"]
    med = f"{statistics.median(over) * 1e6:.1f} µs" if over else "n/a"
    med_op = f"{statistics.median(over_op) * 1e6:.1f} µs" if over_op else "n/a"
    note = (f"Host time per LC op on the ops of real models (tiny first-order float32 inputs on {cfg.device}, "
            f"no_grad): median LC − plain per dispatch {med} (issue target ≤ 25 µs on the models), per op "
            f"{med_op} (an op that arrives whole, such as F.linear, is one dispatch doing the work of "
            "several).")
    return note + "\n\n" + md_table(head, rows)
