"""Shared checks of the third-party model tier (``tests/models/``).

Every model is built from a config or constructor with random weights (never downloaded), cast to
float64, and run on ``x.nonstd(v)``. The checks:

* :func:`check_forward`: the ε⁰ plane equals the plain model's output and the ε¹ plane equals
  ``torch.func.jvp``'s tangent, under ``torch.no_grad()`` and with grad enabled, in eval mode (and in
  train mode where asked: dropout draws the same masks under the same seed).
* :func:`check_train_grads`: in train mode, the gradients w.r.t. the parameters of a loss on both
  planes, ``Σ c₀² + Σ c₁²``, against the double-backward reference (``torch.autograd.grad`` through
  ``torch.func.jvp``, with the normalisations decomposed: PyTorch's fused batch/layer norm give wrong
  numbers there, see :class:`_DecomposedNorms`), each disagreement arbitrated by a central finite
  difference of the same loss (computed with forward-mode AD only, so no double-backward formula plays
  a part in it), and a few entries always cross-checked with the finite difference.
* :class:`Float64Throughout`: for models that cast to float32 inside their forward.

The libraries are optional: :func:`import_or_skip` skips a module cleanly when its library is not
installed (the ``models`` extra, see ``docs/models.md``).
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.testing import assert_close

import torchlc
from torchlc.bench._thirdparty import INSTALL_HINT, ensure_torchvision_importable, hf_offline

# Nothing may be fetched: the models are built from configs with random weights.
hf_offline()

f64 = torch.float64
#: float64 tolerances of the forward checks (a model may pass tighter or looser ones)
TOL = dict(rtol=1e-9, atol=1e-9)


# -- optional libraries ------------------------------------------------------------------------------
# The torchvision shim (ensure_torchvision_importable) and INSTALL_HINT live in torchlc.bench._thirdparty,
# which the `real` bench section shares.


def import_or_skip(name: str):
    """``pytest.importorskip`` for the optional model libraries (after the torchvision shim)."""
    ensure_torchvision_importable()
    return pytest.importorskip(
        name, reason=f"{name} is not installed; it comes with {INSTALL_HINT}"
    )


# -- helpers ---------------------------------------------------------------------------------------


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, dtype=f64, generator=gen(seed)) * scale


def build(make, seed: int = 0) -> torch.nn.Module:
    """``make()`` under a fixed seed, in float64."""
    torch.manual_seed(seed)
    return make().to(f64)


@contextlib.contextmanager
def _reference_kernels():
    """torch.func.jvp's kernels: SDPA on the math kernel and nn.MultiheadAttention off its fused fast
    path (the fused CPU kernels have no forward-AD formula)."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _batch_norm(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    if not training and running_mean is not None:  # eval: an affine map, PyTorch's op is right
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    y = (x - mean) * torch.rsqrt((x - mean).pow(2).mean(dims, keepdim=True) + eps)
    y = y if weight is None else y * weight.view(shape)
    return y if bias is None else y + bias.view(shape)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = list(range(-len(normalized_shape), 0))
    mean = x.mean(dims, keepdim=True)
    y = (x - mean) * torch.rsqrt((x - mean).pow(2).mean(dims, keepdim=True) + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


class _DecomposedNorms(TorchFunctionMode):
    """The double-backward reference's normalisations, from mean/rsqrt/products.

    PyTorch's fused ``native_batch_norm`` (train mode) and ``native_layer_norm`` have correct
    forward-AD (jvp) formulas, but differentiating through those formulas again gives wrong numbers
    (pytorch/pytorch#196699 and #196700 for the nested jvp; here, torch 2.13 CPU: the gradient of
    ``Σ(jvp tangent)²`` w.r.t. a weight *before* the norm is off by O(1): without this mode the
    reference disagrees with torchlc for nearly every parameter of resnet18 and for 28 of the 32 of
    the DeiT, where torchlc agrees with central finite differences to 1e-8). The decompositions' double backward is right. ``F.group_norm`` and
    ``F.rms_norm`` gave the decompositions' numbers in the same check and are left to PyTorch."""

    TABLE = {F.batch_norm: _batch_norm, F.layer_norm: _layer_norm}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # inside, the mode is off: the decompositions' own ops run as usual
        return self.TABLE.get(func, func)(*args, **(kwargs or {}))


def _reference_model(m: torch.nn.Module) -> torch.nn.Module:
    """The double-backward reference's copy of a model: train-mode BatchNorm layers lose their
    running statistics, whose in-place update ``torch.func.jvp`` refuses ("mutate a captured
    Tensor"); train mode normalises with the batch statistics either way."""
    m = copy.deepcopy(m)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.training:
            mod.running_mean = mod.running_var = mod.num_batches_tracked = None
    return m


class Float64Throughout(TorchFunctionMode):
    """Casts from float64 to float32 inside a model's forward become no-ops.

    Hugging Face's RMS norms (Llama, Mistral, Qwen2, Mixtral: ``hidden_states.to(torch.float32)``;
    T5: ``.to(torch.float32).pow(2)``), routers (``softmax(..., dtype=torch.float)``) and timm's
    EfficientViT attention (``q.float()``) compute in float32 whatever the model's dtype: meant as
    upcasts from half precision, they are downcasts in a float64 model. The ε⁰/ε¹ planes and the
    plain/jvp reference then agree only to float32 rounding (1e-5 relative), which would hide any
    smaller error. Under this mode (applied to the LC run and the reference alike) such a model
    computes in float64 throughout, and the tight float64 tolerances apply."""

    _CASTS = {torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if src is not None and src.dtype == f64:
            if func in self._CASTS:
                return src
            if func is torch.Tensor.to:
                args = tuple(
                    f64 if isinstance(a, torch.dtype) and a.is_floating_point else a for a in args
                )
                if (
                    isinstance(kwargs.get("dtype"), torch.dtype)
                    and kwargs["dtype"].is_floating_point
                ):
                    kwargs["dtype"] = f64
        if isinstance(kwargs.get("dtype"), torch.dtype) and kwargs["dtype"] in (
            torch.float32,
            torch.float16,
            torch.bfloat16,
        ):
            if any(isinstance(a, torch.Tensor) and a.dtype == f64 for a in args):
                kwargs["dtype"] = f64  # softmax(x, dtype=torch.float32) and the like
        return func(*args, **kwargs)


def _flat(y):
    if isinstance(y, (tuple, list)):
        return [t for item in y for t in _flat(item)]
    return [y]


def check_forward(
    model,
    f,
    xs,
    vs=None,
    *,
    modes=("no_grad", "grad"),
    train=False,
    seed=0,
    tol=None,
    context=contextlib.nullcontext,
):
    """``f(model, *lifted xs)`` against ``f(model, *xs)`` (ε⁰) and ``jvp`` (ε¹).

    ``f`` returns a tensor or a tuple of tensors (the outputs compared). Every run is on a fresh copy
    of ``model`` (train-mode BatchNorm updates its running statistics) under the same seed (dropout),
    inside ``context()`` (e.g. :class:`Float64Throughout`)."""
    tol = TOL if tol is None else tol
    xs = list(xs)
    vs = (
        [randn(*x.shape, seed=seed + 101 + i) for i, x in enumerate(xs)] if vs is None else list(vs)
    )
    model.train(train)

    def run(*ts, ctx=contextlib.nullcontext, ref=False):
        m = _reference_model(model) if ref else copy.deepcopy(model)
        torch.manual_seed(seed)
        with ctx(), context():
            return f(m, *ts)

    with torch.no_grad():
        val = run(*xs)
        with _reference_kernels():
            jval, tan = jvp(lambda *ts: run(*ts, ref=True), tuple(xs), tuple(vs))
    vals, jvals, tans = _flat(val), _flat(jval), _flat(tan)
    # the reference's own consistency: jvp's primal is the plain output
    for k, (a, b) in enumerate(zip(vals, jvals)):
        assert_close(
            b, a, **tol, msg=lambda m, k=k: f"reference: jvp's primal {k} != plain output: {m}"
        )
    ctxs = {"no_grad": torch.no_grad, "grad": contextlib.nullcontext}
    for mode in modes:
        y = _flat(run(*[x.nonstd(v) for x, v in zip(xs, vs)], ctx=ctxs[mode]))
        assert len(y) == len(vals), mode
        for k, (yk, vk, tk) in enumerate(zip(y, vals, tans)):
            assert torchlc.is_lc(yk), f"{mode}: output {k} is not an LCTensor"
            assert yk.shape == vk.shape, (
                f"{mode}: output {k} shape {tuple(yk.shape)} != {tuple(vk.shape)}"
            )
            assert set(torchlc.support(yk)) <= {0, 1}, (
                f"{mode}: output {k} support {torchlc.support(yk)}"
            )
            assert_close(
                torchlc.coeff(yk, 0),
                vk,
                **tol,
                msg=lambda m, mode=mode, k=k: f"{mode} output {k} ε⁰: {m}",
            )
            assert_close(
                torchlc.coeff(yk, 1),
                tk,
                **tol,
                msg=lambda m, mode=mode, k=k: f"{mode} output {k} ε¹: {m}",
            )


def _loss(outs):
    return sum((c0**2).sum() + (c1**2).sum() for c0, c1 in outs)


def check_train_grads(
    model,
    f,
    x,
    v=None,
    *,
    seed=0,
    tol=None,
    grad_tol=None,
    fd_checks=2,
    fd_h=1e-6,
    fd_tol=1e-5,
    max_arbitrations=4,
    context=contextlib.nullcontext,
):
    """Train mode: ∂/∂θ of ``Σ c₀² + Σ c₁²`` on the LC run against double backward through jvp.

    The reference runs the normalisations decomposed (``_DecomposedNorms``). A
    parameter whose two gradients disagree is arbitrated by a central finite difference of the loss
    at its entry of largest disagreement (at most ``max_arbitrations`` of them, each costs two jvp
    runs): the test fails if the LC gradient disagrees with the finite difference, and a disagreeing
    reference is reported as a warning naming the parameter. ``fd_checks`` parameters spread over the
    model, the first included, are also checked against the finite difference at their largest entry.
    The step ``fd_h`` is small on purpose: the loss has kinks (the ε¹ plane jumps where a ReLU input
    crosses 0). Returns the reference's disagreements that the finite difference settled for LC."""
    tol = TOL if tol is None else tol
    grad_tol = dict(rtol=1e-8, atol=1e-8) if grad_tol is None else grad_tol
    v = randn(*x.shape, seed=seed + 101) if v is None else v
    model.train(True)

    def lc_loss(m):
        torch.manual_seed(seed)
        with context():
            y = _flat(f(m, x.nonstd(v)))
        return _loss([(torchlc.coeff(t, 0), torchlc.coeff(t, 1)) for t in y]), y

    def ref_loss(m):  # m: a _reference_model copy
        torch.manual_seed(seed)
        with _reference_kernels(), _DecomposedNorms(), context():
            val, tan = jvp(lambda t: f(m, t), (x,), (v,))
        return _loss(list(zip(_flat(val), _flat(tan)))), _flat(val), _flat(tan)

    m_lc, m_ref = copy.deepcopy(model), _reference_model(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    loss_lc, y = lc_loss(m_lc)
    loss_ref, val, tan = ref_loss(m_ref)
    for k, (yk, vk, tk) in enumerate(zip(y, val, tan)):
        assert_close(
            torchlc.coeff(yk, 0), vk, **tol, msg=lambda m, k=k: f"train output {k} ε⁰: {m}"
        )
        assert_close(
            torchlc.coeff(yk, 1), tk, **tol, msg=lambda m, k=k: f"train output {k} ε¹: {m}"
        )
    p_lc = dict(m_lc.named_parameters())
    p_ref = dict(m_ref.named_parameters())
    g_lc = torch.autograd.grad(loss_lc, [p_lc[n] for n in names], allow_unused=True)
    g_ref = torch.autograd.grad(loss_ref, [p_ref[n] for n in names], allow_unused=True)

    def fd(name, idx):
        """Central difference of the loss in parameter ``name`` at flat index ``idx`` (forward AD only)."""
        out = []
        for sign in (1, -1):
            m = _reference_model(model)
            with torch.no_grad():  # jvp's forward AD runs under no_grad too
                p = dict(m.named_parameters())[name]
                h = fd_h * max(1.0, abs(float(p.view(-1)[idx])))
                p.view(-1)[idx] += sign * h
                out.append(float(ref_loss(m)[0]))
        return (out[0] - out[1]) / (2 * h)

    def fd_agrees(gval, fdval, scale):
        return abs(gval - fdval) <= fd_tol * max(abs(fdval), scale)

    mismatched, scales = [], {}
    for name, a, b in zip(names, g_lc, g_ref):
        a = torch.zeros_like(p_lc[name]) if a is None else a
        b = torch.zeros_like(p_ref[name]) if b is None else b
        scales[name] = float(b.abs().max().clamp_min(1e-12))
        diff = (a - b).abs()
        if not bool((diff <= grad_tol["atol"] + grad_tol["rtol"] * b.abs()).all()):
            idx = int(diff.view(-1).argmax())
            mismatched.append((name, idx, float(a.reshape(-1)[idx]), float(b.reshape(-1)[idx])))
    report = "\n".join(
        f"  {n}[{i}]: LC {ga:.10g}, double backward {gb:.10g}" for n, i, ga, gb in mismatched
    )
    assert len(mismatched) <= max_arbitrations, (
        f"{len(mismatched)} of {len(names)} parameters' gradients disagree with the double-backward "
        f"reference (more than {max_arbitrations} to arbitrate by finite differences):\n{report}"
    )
    bad_refs, failures = [], []
    for name, idx, ga, gb in mismatched:
        ref_fd = fd(name, idx)
        line = f"{name}[{idx}]: LC {ga:.10g}, double backward {gb:.10g}, finite difference {ref_fd:.10g}"
        (bad_refs if fd_agrees(ga, ref_fd, scales[name]) else failures).append(line)
    assert not failures, "LC gradients disagree with the finite difference:\n" + "\n".join(failures)
    if bad_refs:
        warnings.warn(
            "double-backward reference wrong (LC agrees with the finite difference): "
            + "; ".join(bad_refs),
            stacklevel=2,
        )
    # always: a few entries against the finite difference, the first parameter (the longest backward
    # path) and others spread over the model, at their largest gradient entry
    agreed = [
        k for k, n in enumerate(names) if scales[n] > 1e-8 and n not in {m[0] for m in mismatched}
    ]
    picks = (
        [agreed[round(j * (len(agreed) - 1) / max(fd_checks - 1, 1))] for j in range(fd_checks)]
        if agreed
        else []
    )
    for k in dict.fromkeys(picks):
        name, a = names[k], g_lc[k]
        idx = int(g_ref[k].abs().view(-1).argmax())
        ref_fd, ga = fd(name, idx), float(a.reshape(-1)[idx])
        assert fd_agrees(ga, ref_fd, scales[name]), (
            f"{name}[{idx}]: LC {ga:.10g} vs finite difference {ref_fd:.10g}"
        )
    assert picks or not fd_checks, "no parameter was cross-checked with a finite difference"
    return bad_refs
