"""Section ``real``: torchvision and transformers models (issue 16), plain, 2×rows, jvp and LC.

resnet50, vit_b_16 and convnext_tiny (torchvision), GPT-2 and a Llama-style decoder (transformers, on
``inputs_embeds``), built from constructors and configs with random weights (nothing is downloaded),
forward under ``no_grad`` in eval mode, float32 and bfloat16, eager, ``torchlc.compile`` and (CUDA) CUDA
graphs. Three tables: times against the issue's bars; a profile per forward (host time, GPU time,
kernels, LC dispatches, peak memory); and host time per LC dispatch in eager mode.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ._thirdparty import MissingLibrary, import_model_library
from .config import Config
from .measure import count_kernels, device_profile, host_time, kernels_per_range, time_many
from .memory import _cuda_peak
from .models import _compile_reset, _fastpath, _variants
from .report import _ms, _ratio, _reason, md_table

MODELS = ("resnet50", "vit_b_16", "convnext_tiny", "gpt2", "llama")

#: the issue's bars (H100): eager LC/2×rows by dtype, compiled LC/2×rows, LC/jvp
EAGER_BAR = {"float32": 1.3, "bfloat16": 2.0, "float16": 2.0}
COMPILED_BAR = 1.1
JVP_BAR = 0.6
DISPATCH_BAR_US = 25.0


@dataclass
class _Sizes:
    """Batch and resolution of the vision models; layers, batch and tokens of the decoders."""

    resnet50: tuple  # (batch, resolution)
    vit_b_16: tuple
    convnext_tiny: tuple
    gpt2: dict  # layers, d, heads, batch, seq
    llama: dict  # layers, d, heads, kv_heads, ff, batch, seq


def sizes(cfg: Config) -> _Sizes:
    if cfg.quick:
        return _Sizes(
            (1, 32), (1, 32), (1, 32),
            dict(layers=1, d=64, heads=2, batch=1, seq=8),
            dict(layers=1, d=64, heads=4, kv_heads=2, ff=128, batch=1, seq=8),
        )
    if cfg.device == "cuda":  # the sizes
        return _Sizes(
            (32, 224), (16, 224), (32, 224),
            dict(layers=12, d=768, heads=12, batch=8, seq=512),
            dict(layers=12, d=1024, heads=16, kv_heads=4, ff=2816, batch=8, seq=512),
        )
    # CPU: full-depth vision models at batch 2 and 64×64 pixels, the decoders at 2 of 12 layers,
    # batch 2 and 128 tokens (widths as on CUDA), so the section runs in minutes on 2 cores
    return _Sizes(
        (2, 64), (2, 64), (2, 64),
        dict(layers=2, d=768, heads=12, batch=2, seq=128),
        dict(layers=2, d=1024, heads=16, kv_heads=4, ff=2816, batch=2, seq=128),
    )


class _InputsEmbeds(nn.Module):
    """A transformers base model called on ``inputs_embeds``, returning ``last_hidden_state``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, e):
        return self.model(inputs_embeds=e).last_hidden_state


def _vision(name):
    def make(s: _Sizes):
        tv = import_model_library("torchvision")
        batch, res = getattr(s, name)
        kw = {"image_size": res} if name == "vit_b_16" else {}
        return getattr(tv.models, name)(weights=None, **kw), (batch, 3, res, res), f"{batch}×3×{res}×{res}"

    return make


def _sdpa(config):
    config._attn_implementation = "sdpa"  # as tests/models: PyTorch's SDPA, not the eager attention
    return config


def _gpt2(s: _Sizes):
    tf = import_model_library("transformers")
    g = s.gpt2
    config = _sdpa(tf.GPT2Config(
        n_layer=g["layers"], n_embd=g["d"], n_head=g["heads"], n_positions=max(1024, g["seq"]),
        vocab_size=1024, bos_token_id=None, eos_token_id=None, use_cache=False,
    ))
    label = f"{g['batch']}×{g['seq']}×{g['d']}, {g['layers']} layers"
    return _InputsEmbeds(tf.GPT2Model(config)), (g["batch"], g["seq"], g["d"]), label


def _llama(s: _Sizes):
    tf = import_model_library("transformers")
    g = s.llama
    config = _sdpa(tf.LlamaConfig(
        hidden_size=g["d"], num_hidden_layers=g["layers"], num_attention_heads=g["heads"],
        num_key_value_heads=g["kv_heads"], intermediate_size=g["ff"], vocab_size=1024,
        max_position_embeddings=max(1024, g["seq"]), bos_token_id=None, eos_token_id=None,
        pad_token_id=None, use_cache=False,
    ))
    label = (f"{g['batch']}×{g['seq']}×{g['d']}, {g['layers']} layers, GQA {g['heads']}/{g['kv_heads']}"
             f", ff {g['ff']}")
    return _InputsEmbeds(tf.LlamaModel(config)), (g["batch"], g["seq"], g["d"]), label


BUILDERS = {
    "resnet50": ("torchvision", _vision("resnet50")),
    "vit_b_16": ("torchvision", _vision("vit_b_16")),
    "convnext_tiny": ("torchvision", _vision("convnext_tiny")),
    "gpt2": ("transformers", _gpt2),
    "llama": ("transformers", _llama),
}


# -- LC dispatches ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _dispatcher_wrapped(wrap):
    """While the block runs, ``LCTensor._dispatcher`` is ``wrap(inner)``, inner the installed one;
    restored on exit."""
    from torchlc._tensor import LCTensor

    if "_dispatcher" not in LCTensor.__dict__:
        raise RuntimeError("LCTensor has no _dispatcher hook to wrap")
    saved = LCTensor.__dict__["_dispatcher"]
    LCTensor._dispatcher = staticmethod(wrap(LCTensor._dispatcher))
    try:
        yield
    finally:
        LCTensor._dispatcher = saved


@contextlib.contextmanager
def dispatch_probe():
    """Count (and time) every call through ``LCTensor._dispatcher`` while the block runs.

    Yields a list that receives, per dispatch, its self host time in seconds (its own time less that
    of the dispatches nested in it, which rules make when they call aten ops on LCTensors). The
    installed dispatcher is restored on exit."""
    selfs: list = []
    child = [0.0]  # time of the nested dispatches, per open level
    perf = time.perf_counter

    def timed(inner):
        def probe(func, args, kwargs):
            child.append(0.0)
            t0 = perf()
            try:
                return inner(func, args, kwargs)
            finally:
                dt = perf() - t0
                selfs.append(dt - child.pop())
                child[-1] += dt

        return probe

    with _dispatcher_wrapped(timed):
        yield selfs


RULE_PREFIX = "torchlc::"
LAUNCH_RANGE = "torchlc.triton_launch"  # a Triton kernel launched by a rule (see rule_ranges)
RULE_ROWS = 6  # LC ops listed per model and dtype in the kernels-per-rule table


@contextlib.contextmanager
def rule_ranges():
    """While the block runs, every outermost call through ``LCTensor._dispatcher`` (the model's own LC
    ops, not those its rules make) runs in a ``record_function`` range named ``torchlc::<aten op>``,
    so a profile can tell which rule launched which kernels."""
    depth = [0]

    def outermost_ranged(inner):
        def ranged(func, args, kwargs):
            if depth[0]:
                return inner(func, args, kwargs)
            depth[0] += 1
            try:
                with torch.profiler.record_function(RULE_PREFIX + str(func).removeprefix("aten.")):
                    return inner(func, args, kwargs)
            finally:
                depth[0] -= 1

        return ranged

    # Triton launches run in ranges of their own: the profile then counts them on the host's clock
    # (the CUDA runtime's events carry another clock, which misplaced launches at ranges' edges)
    from torchlc.kernels import elementwise, jets, launch

    real_launch = launch.launch

    def ranged_launch(*args, **kwargs):
        with torch.profiler.record_function(LAUNCH_RANGE):
            return real_launch(*args, **kwargs)

    users = [m for m in (elementwise, jets) if getattr(m, "launch", None) is real_launch]
    with _dispatcher_wrapped(outermost_ranged):
        for m in users:
            m.launch = ranged_launch
        try:
            yield
        finally:
            for m in users:
                m.launch = real_launch


def kernels_per_rule(fn, device) -> list:
    """``[(aten op, calls, kernels)]`` of one call of ``fn``, most kernels first: the kernels each of
    the model's LC ops launched through its rule (see :func:`~torchlc.bench.measure.kernels_per_range`)."""
    with rule_ranges():
        per = kernels_per_range(fn, RULE_PREFIX, device == "cuda", launches=LAUNCH_RANGE)
    return sorted(((op, n, k) for op, (n, k) in per.items()), key=lambda r: (-r[2], r[0]))


def _dispatches(fn, device, n):
    """(dispatches per call, self host times of every dispatch over ``n`` calls)."""
    fn()
    with dispatch_probe() as selfs:
        for _ in range(n):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
    return len(selfs) / n, sorted(selfs)


# -- the section ----------------------------------------------------------------------------------------


def _modes(cfg: Config):
    """eager, compiled and (CUDA) CUDA graphs; on CPU the compiled mode only when ``--modes`` names it
    (Inductor takes minutes per model and variant there on 2 cores: resnet50's compiled row, 3 min)."""
    modes = ["eager"]
    if cfg.compile:
        modes.append("compiled")
        if cfg.device == "cuda":
            modes.append("compiled, CUDA graphs")
    if cfg.modes:
        return [m for m in modes if m in cfg.modes]
    return modes if cfg.device == "cuda" else ["eager"]


def _jvp_needs_math(model, x, v) -> bool:
    """Whether ``torch.func.jvp`` must run the composite path (SDPA math backend, no fused MHA): the
    fused attention kernels (CPU flash SDPA, ``_native_multi_head_attention``) have no forward AD."""
    try:
        torch.func.jvp(model, (x,), (v,))
        return False
    except Exception:
        return True


def _under(ctx_factory, fn):
    def g():
        with ctx_factory():
            return fn()

    return g


def _bars(dname, mode, lc, r2, jv):
    bar = EAGER_BAR.get(dname, 2.0) if mode == "eager" else COMPILED_BAR
    texts, verdicts = [f"2×rows ≤ {bar}×"], []
    if isinstance(lc, float) and isinstance(r2, float):
        verdicts.append("PASS" if lc / r2 <= bar else "MISS")
    else:
        verdicts.append("n/a")
    if isinstance(jv, float):  # wherever jvp runs
        texts.append(f"jvp ≤ {JVP_BAR}×")
        verdicts.append(("PASS" if lc / jv <= JVP_BAR else "MISS") if isinstance(lc, float) else "n/a")
    return "; ".join(texts), " / ".join(verdicts)


def _mib(b):
    return f"{b / 2**20:.0f}" if isinstance(b, (int, float)) else str(b)


def _try(f):
    try:
        return f()
    except Exception as e:
        return _reason(e)


def _profile_row(fns, times, cfg, mode):
    """Host and GPU time, kernels and peak memory of 2×rows and LC; LC dispatches; per-dispatch
    self times (eager). A variant that failed to run in the timing is not run again (``—``)."""
    n = 1 if cfg.quick else 5
    prof = {}
    for k in ("2×rows", "LC"):
        fn = fns[k]
        p = prof[k] = {}
        if not isinstance(times[k], float):
            p.update(host="—", gpu="—", kernels="—", peak="—")
            continue
        p["host"] = _try(lambda fn=fn: host_time(fn, cfg.device, n))
        if cfg.device == "cuda":
            dp = _try(lambda fn=fn: device_profile(fn, max(1, n // 2)))
            p["gpu"], p["kernels"] = (dp if isinstance(dp, tuple) else (dp, dp))
            p["peak"] = _try(lambda fn=fn: _cuda_peak(fn))
        else:
            p["gpu"], p["peak"] = "—", "—"
            p["kernels"] = _try(lambda fn=fn: count_kernels(fn))
    if isinstance(times["LC"], float):
        d = _try(lambda: _dispatches(fns["LC"], cfg.device, n if mode == "eager" else 1))
    else:
        d = "—"
    prof["dispatches"], prof["selfs"] = d if isinstance(d, tuple) else (d, [])
    prof["rules"] = []
    if mode == "eager" and isinstance(times["LC"], float):
        r = _try(lambda: kernels_per_rule(fns["LC"], cfg.device))
        prof["rules"] = r if isinstance(r, list) else []
    return prof


def _fmt_count(c):
    return f"{c:.0f}" if isinstance(c, (int, float)) else str(c)


def bench_real(cfg: Config, log=print):
    s = sizes(cfg)
    names = [m for m in MODELS if not cfg.models or m in cfg.models]
    times_rows, prof_rows, disp_rows, rule_rows, data = [], [], [], [], []
    for mname in names:
        make = BUILDERS[mname][1]
        for dname in cfg.dtypes:
            dtype = getattr(torch, dname)
            try:
                torch.manual_seed(0)
                model, shape, label = make(s)
                model = model.to(device=cfg.device, dtype=dtype).eval()
            except MissingLibrary as e:
                times_rows.append((mname, "—", "—", "—", f"skipped: {e}", *[""] * 7))
                log(f"  {mname}: skipped: {e}")
                break  # the other dtypes would skip the same way
            except Exception as e:
                times_rows.append((mname, "—", dname, "—", f"build failed: {_reason(e)}", *[""] * 7))
                log(f"  {mname} {dname}: build failed: {_reason(e)}")
                continue
            g = torch.Generator().manual_seed(3)
            x = torch.randn(shape, generator=g).to(cfg.device, dtype)
            v = torch.randn(shape, generator=g).to(cfg.device, dtype)
            with torch.no_grad():
                math_jvp = _jvp_needs_math(model, x, v)
            for mode in _modes(cfg):
                _compile_reset()
                t0 = time.perf_counter()
                variants = ("plain", "2×rows", "jvp", "LC")
                prof = fns = None
                with torch.no_grad():
                    try:
                        fns = _variants(model, x, v, 0, cfg, mode.startswith("compiled"), "CUDA graphs" in mode)
                        if math_jvp:
                            fns["jvp"] = _under(lambda: _fastpath(False), fns["jvp"])
                        times = dict(zip(variants, time_many([fns[k] for k in variants], cfg)))
                        prof = _profile_row(fns, times, cfg, mode)
                    except Exception as e:
                        times = dict.fromkeys(variants, _reason(e))
                lc, r2, jv = times["LC"], times["2×rows"], times["jvp"]
                bar, verdict = _bars(dname, mode, lc, r2, jv)
                log(
                    f"  {mname} {dname} {mode}: "
                    + ", ".join(f"{k} {_ms(t)}" for k, t in times.items())
                    + f" ({time.perf_counter() - t0:.1f} s)"
                )
                jv_cell = _ms(jv) + (" (math)" if math_jvp and isinstance(jv, float) else "")
                times_rows.append((mname, label, dname, mode, _ms(times["plain"]), _ms(r2), jv_cell, _ms(lc),
                                   _ratio(lc, r2), _ratio(lc, jv), bar, verdict))
                row = dict(model=mname, input=label, dtype=dname, mode=mode, jvp_math_path=math_jvp,
                           **{k: (t if isinstance(t, float) else None) for k, t in times.items()})
                if prof is not None:
                    a, b = prof["2×rows"], prof["LC"]
                    prof_rows.append((
                        mname, dname, mode, _ms(a["host"]), _ms(b["host"]), _ms(a["gpu"]), _ms(b["gpu"]),
                        _fmt_count(a["kernels"]), _fmt_count(b["kernels"]), _fmt_count(prof["dispatches"]),
                        _mib(a["peak"]), _mib(b["peak"]),
                    ))
                    row["profile"] = {k: prof[k] for k in ("2×rows", "LC")} | {"dispatches": prof["dispatches"]}
                    if prof["rules"]:
                        total = sum(k for _, _, k in prof["rules"])
                        row["kernels_per_rule"] = [dict(op=op, calls=n, kernels=k) for op, n, k in prof["rules"]]
                        for op, n, k in prof["rules"][:RULE_ROWS]:
                            rule_rows.append((mname, dname, op, str(n), str(k), f"{k / n:.1f}",
                                              f"{100 * k / total:.0f}%" if total else "—"))
                    selfs = prof["selfs"]
                    if mode == "eager" and selfs and isinstance(b["host"], float):
                        nd = prof["dispatches"]
                        med = selfs[len(selfs) // 2]
                        p90 = selfs[min(len(selfs) - 1, int(0.9 * len(selfs)))]
                        mean = b["host"] / nd
                        disp_rows.append((
                            mname, dname, _fmt_count(nd), _ms(b["host"]), f"{mean * 1e6:.1f}",
                            f"{med * 1e6:.1f}", f"{p90 * 1e6:.1f}", f"≤ {DISPATCH_BAR_US:.0f} µs",
                            "PASS" if med * 1e6 <= DISPATCH_BAR_US else "MISS",
                        ))
                        row["dispatch_us"] = dict(mean=mean * 1e6, median=med * 1e6, p90=p90 * 1e6)
                data.append(row)
                del fns
            del model, x, v
            _compile_reset()
            gc.collect()
            if cfg.device == "cuda":
                torch.cuda.empty_cache()
    return _text(cfg, times_rows, prof_rows, disp_rows, rule_rows), data


def _text(cfg, times_rows, prof_rows, disp_rows, rule_rows=()):
    s = sizes(cfg)
    intro = (
        "Forward under torch.no_grad(), eval mode, random weights (built from constructors and configs, "
        "nothing downloaded). torchvision resnet50, vit_b_16, convnext_tiny at the input shown; "
        "transformers GPT2Model and LlamaModel (SDPA attention, use_cache=False) called on "
        "`inputs_embeds`, returning last_hidden_state (GPT-2: d "
        f"{s.gpt2['d']}, {s.gpt2['heads']} heads; Llama-style: d {s.llama['d']}, {s.llama['heads']} query "
        f"and {s.llama['kv_heads']} key/value heads, SwiGLU ff {s.llama['ff']}, RMSNorm, RoPE). `2×rows` is "
        "the plain model on the input concatenated with itself along the batch (the two-plane bound); "
        "`jvp` is torch.func.jvp(model, (x,), (v,)), marked `(math)` where it must run the composite path "
        "(SDPA math backend, MultiheadAttention's fused fast path off: the fused attention kernels have "
        "no forward AD); `LC` is model(x.nonstd(v)) including building x.nonstd(v). `compiled`: "
        "torch.compile(fullgraph=True, dynamic=False) of the model and of the jvp closure, "
        "torchlc.compile(model, fullgraph=True, dynamic=False) for LC; `CUDA graphs`: the same with "
        "mode=\"reduce-overhead\" (CUDA only). On CPU the compiled mode runs only when asked for "
        "(`--modes \"eager;compiled\"`): Inductor takes minutes per model there. "
        + (
            "--quick: tiny sizes, the numbers mean nothing. "
            if cfg.quick
            else "The issue's sizes. "
            if cfg.device == "cuda"
            else "CPU sizes (the input column): batch 2, 64×64 pixels, the decoders at 2 of their 12 "
            "layers on 2×128 tokens, so the section runs in minutes on 2 cores (CUDA: the issue's sizes). "
        )
        + "A failure is reported in its cell as `n/a: <exception>`. "
        f"Bars (the issue's, for the H100): eager LC/2×rows ≤ {EAGER_BAR['float32']}× in float32 and ≤ "
        f"{EAGER_BAR['bfloat16']}× in bfloat16, compiled ≤ {COMPILED_BAR}×, LC/jvp ≤ {JVP_BAR}× wherever "
        "jvp runs; the result gives the 2×rows verdict, then the jvp one."
    )
    head = ["model", "input", "dtype", "mode", "plain ms", "2×rows ms", "jvp ms", "LC ms", "LC/2×rows",
            "LC/jvp", "bar", "result"]
    where = (
        "GPU ms is the summed duration of the GPU's events (kernels, memcpy, memset; torch.profiler) per "
        "forward, and kernels the number of those events"
        if cfg.device == "cuda"
        else "on CPU there is no GPU time, and kernels counts the aten ops that run a computation "
        "(torch.profiler: leaf aten ops, views and metadata left out; Inductor's own C++ kernels are not "
        "aten ops, so compiled rows count only its extern calls)"
    )
    peak = (
        "peak MiB is torch.cuda.max_memory_allocated() during one forward minus the memory allocated "
        "before it (inputs and weights excluded)"
        if cfg.device == "cuda"
        else "peak memory is measured on CUDA only (a whole forward's peak resident set on CPU would "
        "need a child process per variant)"
    )
    prof_note = (
        "Per forward, for the plain model on 2×rows and for LC: host ms is the time from the call to its "
        f"return, the device idle before each call (minimum of 5 calls); {where}; LC dispatches counts the calls "
        f"through LCTensor's dispatcher (nested ones included; compiled LC runs a graph on the planes and "
        f"makes none); {peak}."
    )
    prof_head = ["model", "dtype", "mode", "host ms 2×rows", "host ms LC", "GPU ms 2×rows", "GPU ms LC",
                 "kernels 2×rows", "kernels LC", "LC dispatches", "peak MiB 2×rows", "peak MiB LC"]
    disp_note = (
        "Eager LC forward: `mean µs` is the host time per forward divided by the LC dispatches; "
        "`median µs` and `p90 µs` are over the self host time of every dispatch (its own time less that "
        "of the dispatches nested in it, which rules make when they call aten ops on LCTensors), "
        f"timed by wrapping the dispatcher. Target (issue 16): median ≤ {DISPATCH_BAR_US:.0f} µs on these "
        "models."
        + (" On CPU the kernels run inside the call, so these times include the arithmetic."
           if cfg.device != "cuda" else "")
    )
    disp_head = ["model", "dtype", "LC dispatches", "LC host ms", "mean µs/dispatch", "median µs", "p90 µs",
                 "target", "result"]
    rule_note = (
        f"Eager LC forward, the {RULE_ROWS} LC ops of each model whose rules launch the most kernels: "
        "`calls` per forward, `kernels` they launch in all (their rules' nested LC ops included), and "
        "their share of the kernels all the model's LC ops launch. Each of its LC dispatches runs in a "
        "`record_function` range; "
        + "kernels are the aten compute ops and the Triton launches inside it (an aten op that runs "
        "several device kernels, as a cuBLAS GEMM may, counts once"
        + ("; the profile table counts device kernels" if cfg.device == "cuda"
           else "; the fused CPU loops of `torchlc.kernels.cpu` are Inductor's C++, not aten ops, and "
           "are not counted") + ")"
        + ". Building `x.nonstd(v)` is not an LC op and is not listed."
    )
    rule_head = ["model", "dtype", "LC op", "calls", "kernels", "kernels/call", "share"]
    parts = [intro, md_table(head, times_rows)]
    if prof_rows:
        parts += ["**Profile per forward.** " + prof_note, md_table(prof_head, prof_rows)]
    if disp_rows:
        parts += ["**Host time per LC dispatch (eager).** " + disp_note, md_table(disp_head, disp_rows)]
    if rule_rows:
        parts += ["**Kernels per LC op (eager).** " + rule_note, md_table(rule_head, rule_rows)]
    return "\n\n".join(parts)
