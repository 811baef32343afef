"""Section ``models``: an MLP and a TransformerEncoder, plain, 2×rows, jvp and LC, eager and compiled."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn as nn

from .config import Config
from .measure import time_many
from .report import _ms, _ratio, _reason, md_table


def make_mlp(cfg: Config):
    layers = []
    for _ in range(4):
        layers += [nn.Linear(cfg.mlp_width, cfg.mlp_width), nn.ReLU()]
    return nn.Sequential(*layers), (cfg.mlp_batch, cfg.mlp_width), 0


def make_transformer(cfg: Config):
    layer = nn.TransformerEncoderLayer(cfg.tf_d, cfg.tf_heads, cfg.tf_ff, batch_first=True)
    model = nn.TransformerEncoder(layer, cfg.tf_layers, enable_nested_tensor=False)
    return model, (cfg.tf_batch, cfg.tf_seq, cfg.tf_d), 0


class _Floor(torch.Tensor):
    """The dispatch floor: the least any ``__torch_dispatch__`` subclass carrying two planes costs. One
    wrapper and one plain op on the stacked planes per op, no LC logic (the bias lands on both planes:
    this is the work, not the LC result). Only the MLP's ops (addmm, relu) are handled."""

    @staticmethod
    def __new__(cls, planes):
        r = torch.Tensor._make_wrapper_subclass(cls, planes.shape[1:], dtype=planes.dtype, device=planes.device)
        r.planes = planes
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args, kwargs=None):
        if func is torch.ops.aten.addmm.default:
            bias, x, w = args
            return _Floor(torch.addmm(bias, x.planes.view(-1, x.shape[-1]), w).view(2, x.shape[0], -1))
        if func is torch.ops.aten.relu.default:
            return _Floor(torch.relu(args[0].planes))
        raise NotImplementedError(f"the floor subclass only runs the MLP, not {func}")


def _variants(model, x, v, batch_dim, cfg, compiled, cuda_graphs=False):
    x2 = torch.cat([x, x], dim=batch_dim)
    # static shapes: the plain model's second input shape (2×rows) would otherwise recompile with
    # dynamic shapes, which the fused eval encoder kernel cannot trace, and LC graphs are static too
    kw = {"mode": "reduce-overhead", "dynamic": False} if cuda_graphs else {"dynamic": False}

    def plain():
        return model(x)

    def rows2():
        return model(x2)

    def jvp():
        return torch.func.jvp(model, (x,), (v,))

    if compiled:
        cm = torch.compile(model, fullgraph=True, **kw)
        cj = torch.compile(lambda a, b: torch.func.jvp(model, (a,), (b,)), fullgraph=True, **kw)
        # LC: torchlc.compile (plain-boundary graph, data-dependent supports speculated and checked)
        import torchlc

        tc = torchlc.compile(model, fullgraph=True, **kw)
        return {
            "plain": lambda: cm(x),
            "2×rows": lambda: cm(x2),
            "jvp": lambda: cj(x, v),
            "LC": lambda: tc(x.nonstd(v)),
        }
    return {"plain": plain, "2×rows": rows2, "jvp": jvp, "LC": lambda: model(x.nonstd(v)),
            "floor": lambda: model(_Floor(torch.stack([x, v])))}


@contextlib.contextmanager
def _fastpath(enabled: bool):
    """Default kernels, or (``enabled=False``) no fused eval TransformerEncoderLayer kernel and the math
    SDPA backend: the composite path that forward-mode AD can differentiate."""
    if enabled:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(old)


def _compile_reset():
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


def bench_models(cfg: Config, log=print):
    rows, data = [], []
    for mname, make in (("MLP", make_mlp), ("TransformerEncoder", make_transformer)):
        graphs = cfg.compile and cfg.device == "cuda"  # CUDA graphs: torch.compile(mode="reduce-overhead")
        if cfg.models and mname not in cfg.models:
            continue
        modes = ["eager"] + (["compiled"] if cfg.compile else []) + (["compiled, CUDA graphs"] if graphs else [])
        if mname != "MLP":  # the encoder's fused eval kernels have no forward AD: jvp runs the math path
            modes += [m + ", math path" for m in modes]
        if cfg.modes:
            modes = [m for m in modes if m in cfg.modes]
        for dname in cfg.dtypes:
            dtype = getattr(torch, dname)
            torch.manual_seed(0)
            model, shape, bdim = make(cfg)
            model = model.to(device=cfg.device, dtype=dtype).eval()
            g = torch.Generator().manual_seed(3)
            x = torch.randn(shape, generator=g).to(cfg.device, dtype)
            v = torch.randn(shape, generator=g).to(cfg.device, dtype)
            for mode in modes:
                _compile_reset()
                names = ("plain", "2×rows", "jvp", "LC") + (("floor",) if (mname, mode) == ("MLP", "eager") else ())
                t0 = time.perf_counter()
                with torch.no_grad(), _fastpath("math path" not in mode):
                    try:
                        fns = _variants(model, x, v, bdim, cfg, mode.startswith("compiled"), "CUDA graphs" in mode)
                        times = dict(zip(names, time_many([fns[k] for k in names], cfg)))
                    except Exception as e:
                        times = dict.fromkeys(names, _reason(e))
                floor = times.get("floor", "n/a")
                log(
                    f"  {mname} {dname} {mode}: "
                    + ", ".join(f"{k} {_ms(t)}" for k, t in times.items())
                    + f" ({time.perf_counter() - t0:.1f} s)"
                )
                lc, r2, jv = times["LC"], times["2×rows"], times["jvp"]
                bar, verdict = _model_bar(cfg, mode, lc, r2, jv)
                rows.append(
                    (
                        mname,
                        dname,
                        mode,
                        _ms(times["plain"]),
                        _ms(r2),
                        _ms(jv),
                        _ms(lc),
                        _ms(floor) if isinstance(floor, float) else "—",
                        _ratio(lc, r2),
                        _ratio(lc, jv),
                        bar,
                        verdict,
                    )
                )
                data.append(
                    dict(
                        model=mname,
                        dtype=dname,
                        mode=mode,
                        **{k: (t if isinstance(t, float) else None) for k, t in times.items()},
                    )
                )
            del model
    head = [
        "model",
        "dtype",
        "mode",
        "plain ms",
        "2×rows ms",
        "jvp ms",
        "LC ms",
        "floor ms",
        "LC/2×rows",
        "LC/jvp",
        "bar",
        "result",
    ]
    note = (
        f"Forward under torch.no_grad(), eval mode. MLP: 4 × (Linear {cfg.mlp_width} + ReLU), batch "
        f"{cfg.mlp_batch}. TransformerEncoder: d_model {cfg.tf_d}, {cfg.tf_layers} layers, nhead "
        f"{cfg.tf_heads}, dim_feedforward {cfg.tf_ff}, seq {cfg.tf_seq}, batch {cfg.tf_batch}, "
        "batch_first. `2×rows` is the plain model on the input concatenated with itself along the batch "
        "(the two-plane bound); `jvp` is torch.func.jvp(model, (x,), (v,)); `LC` is "
        "model(x.nonstd(v)) including building x.nonstd(v). Compiled: torch.compile(..., fullgraph=True) "
        "of the model and of the jvp closure; LC compiled is torchlc.compile(model, fullgraph=True) "
        "(plain-boundary graph traced on the planes, data-dependent supports speculated and checked). "
        "`CUDA graphs`: the same with mode=\"reduce-overhead\" for every variant (CUDA only). "
        "`math path`: torch.backends.mha.set_fastpath_enabled(False) and "
        "sdpa_kernel(SDPBackend.MATH), so the encoder runs composite ops instead of the fused eval kernel "
        "aten::_transformer_encoder_layer_fwd and the flash SDPA kernel (neither supports forward AD). "
        "`floor` (eager MLP only): a do-nothing `__torch_dispatch__` subclass carrying the two planes, one "
        "plain op on the stacked planes per op: the least any such subclass costs, LC logic aside."
    )
    return note + "\n\n" + md_table(head, rows), data


def _model_bar(cfg, mode, lc, r2, jv):
    if cfg.device == "cuda":
        if isinstance(lc, float) and isinstance(r2, float):
            return "LC/2×rows ≤ 1.15×", ("PASS" if lc / r2 <= 1.15 else "FAIL")
        return "LC/2×rows ≤ 1.15×", "n/a"
    if mode.startswith("eager"):
        if isinstance(lc, float) and isinstance(jv, float):
            return "LC/jvp ≤ 1.0×", ("PASS" if lc / jv <= 1.0 else "FAIL")
        return "LC/jvp ≤ 1.0×", "n/a"
    return "—", ""
