"""Section ``attention``: causal scaled_dot_product_attention on first-order q, k, v."""

from __future__ import annotations

import contextlib

import torch

from .config import Config, _attention_dtype
from .measure import time_many
from .report import _ms, _ratio, _reason, md_table


@contextlib.contextmanager
def _no_flash_jet():
    """The SDPA rules' formulas instead of the flash-style jet."""
    from torchlc.kernels import jets

    fused = jets.flash_attention
    jets.flash_attention = lambda *a, **k: None
    try:
        yield
    finally:
        jets.flash_attention = fused


def _peak_mib(fn, device):
    if device != "cuda":
        return "n/a"
    try:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return f"{(torch.cuda.max_memory_allocated() - base) / 2**20:.0f}"
    except Exception as e:  # e.g. out of memory: a result, not a crash
        return _reason(e)


def _attention_row(cfg: Config, B, H, L, D, dtype):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator().manual_seed(5)
    q, k, v, dq, dk, dv = (torch.randn(B, L, H, D, generator=g).to(cfg.device, dtype).transpose(1, 2) for _ in range(6))
    q2, k2, v2 = (torch.cat([t, t]) for t in (q, k, v))
    lq, lk, lv = q.nonstd(dq), k.nonstd(dk), v.nonstd(dv)

    def f(a, b, c):
        return torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=True)

    def jvp():
        with sdpa_kernel(SDPBackend.MATH):
            return torch.func.jvp(f, (q, k, v), (dq, dk, dv))

    def formulas():
        with _no_flash_jet():
            return f(lq, lk, lv)

    with torch.no_grad():
        fns = [lambda: f(q, k, v), lambda: f(q2, k2, v2), jvp, lambda: f(lq, lk, lv), formulas]
        tp, t2, tj, tl, tf = time_many(fns, cfg)
        mem = [_peak_mib(fn, cfg.device) for fn in (fns[1], fns[3], fns[4])]
    return (f"{B}, {H}, {L}, {D}", _ms(tp), _ms(t2), _ms(tj), _ms(tl), _ms(tf), _ratio(tl, t2), _ratio(tl, tj), *mem)


def bench_attention(cfg: Config):
    dtype = _attention_dtype(cfg)
    rows = [_attention_row(cfg, *case, dtype) for case in cfg.attention]
    head = ["B, H, L, D", "plain ms", "2×rows ms", "jvp ms", "LC ms", "LC formulas ms", "LC/2×rows", "LC/jvp",
            "peak MiB 2×rows", "peak MiB LC", "peak MiB LC formulas"]
    note = (
        f"Causal scaled_dot_product_attention, {str(dtype).removeprefix('torch.')}, no_grad; q, k, v are "
        "transposed views of (B, L, H, D) tensors. `jvp`: torch.func.jvp under the math backend (the "
        "fused backends have no forward AD). `LC formulas`: the flash-style jet turned off, so the SDPA "
        "rule runs its torch formulas (score and weight planes in memory). Peak memory: CUDA only, "
        "inputs excluded."
    )
    return note + "\n\n" + md_table(head, rows)
