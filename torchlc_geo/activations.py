"""Activations of GeoSparseNet: relu, tanh, gelu, heaviside, psann sine, phase_psann, mixed.

All activations act elementwise along a feature dimension ``dim`` (default 0, the feature-major
layout of the network) and use plain tensor ops only, so they run on ``torchlc.LCTensor`` inputs.

The ``psann`` activation is ``A · exp(-d · g(z)) · sin(f · z)`` with per-neuron amplitude ``A``,
frequency ``f`` and damping ``d`` (each ``softplus`` of a raw parameter; initial values
``A = 1, f = 1, d = 0.1``) and ``g`` one of ``abs``, ``relu``, ``none`` (``decay_mode``).
``phase_psann`` adds a learnable per-neuron phase: ``sin(f · z + φ)``.

Activation-config keys (``activation_config`` dict; aliases in brackets):
``amplitude_init`` [``amp_init``], ``frequency_init`` [``freq_init``], ``decay_init``
[``damp_init``] (scalars); ``amp_init_std``/``freq_init_std``/``damp_init_std`` (per-neuron
normal jitter of the init); ``amp_range``/``freq_range``/``damp_range`` (per-neuron uniform init,
overrides the scalar); ``learnable`` [``trainable``] (subset of ``amplitude, frequency, decay``,
or a bool); ``bounds`` (``{name: (lo, hi)}`` clamps of the positive values); ``decay_mode``;
``phase_init``, ``phase_trainable``; for ``mixed``: ``activation_types`` [``types``],
``activation_ratios`` [``ratios``], ``mix_layout`` (``random``/``contiguous``), ``mix_seed``;
``seed`` seeds the per-neuron init sampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "Heaviside",
    "MixedActivation",
    "PSANNActivation",
    "activation_param_count",
    "build_activation",
    "normalize_activation_config",
]

ACTIVATIONS = ("relu", "tanh", "gelu", "heaviside", "psann", "phase_psann", "mixed")
_ALIASES = {"sine": "psann", "respsann": "psann", "phasepsann": "phase_psann", "step": "heaviside"}
_PARAM_NAMES = ("amplitude", "frequency", "decay")
_KEY_ALIASES = {
    "amp_init": "amplitude_init",
    "freq_init": "frequency_init",
    "damp_init": "decay_init",
    "trainable": "learnable",
    "types": "activation_types",
    "ratios": "activation_ratios",
    "layout": "mix_layout",
}
_KEYS = {
    "amplitude_init", "frequency_init", "decay_init", "amp_init_std", "freq_init_std",
    "damp_init_std", "amp_range", "freq_range", "damp_range", "learnable", "bounds", "decay_mode",
    "phase_init", "phase_trainable", "activation_types", "activation_ratios", "mix_layout",
    "mix_seed", "seed",
}
_DEFAULTS: dict[str, Any] = {
    "amplitude_init": 1.0, "frequency_init": 1.0, "decay_init": 0.1, "amp_init_std": 0.0,
    "freq_init_std": 0.0, "damp_init_std": 0.0, "amp_range": None, "freq_range": None,
    "damp_range": None, "learnable": _PARAM_NAMES, "bounds": None, "decay_mode": "abs",
    "phase_init": 0.0, "phase_trainable": True, "activation_types": None, "activation_ratios": None,
    "mix_layout": "random", "mix_seed": None, "seed": 0,
}


def normalize_activation_name(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return key


def normalize_activation_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Resolve aliases and defaults of an activation-config dict; unknown keys raise ``ValueError``.

    Example:
        >>> c = normalize_activation_config({"amp_init": 2.0, "trainable": False})
        >>> c["amplitude_init"], c["learnable"]
        (2.0, ())
    """
    out = dict(_DEFAULTS)
    for key, val in dict(cfg or {}).items():
        key = _KEY_ALIASES.get(key, key)
        if key not in _KEYS:
            raise ValueError(f"unknown activation_config key {key!r}; known: {sorted(_KEYS)}")
        out[key] = val
    learn = out["learnable"]
    if isinstance(learn, bool):
        learn = _PARAM_NAMES if learn else ()
    elif isinstance(learn, str):
        learn = (learn,)
    learn = tuple(learn)
    bad = [x for x in learn if x not in _PARAM_NAMES]
    if bad:
        raise ValueError(f"learnable entries must be among {_PARAM_NAMES}, got {bad}")
    out["learnable"] = learn
    if out["decay_mode"] not in ("abs", "relu", "none"):
        raise ValueError("decay_mode must be 'abs', 'relu' or 'none'")
    for name in ("amplitude_init", "frequency_init"):
        if float(out[name]) <= 0:
            raise ValueError(f"{name} must be positive")
    if float(out["decay_init"]) < 0:
        raise ValueError("decay_init must be non-negative")
    return out


def _inv_softplus(v: torch.Tensor) -> torch.Tensor:
    v = v.clamp(min=1e-6)
    return v + torch.log(-torch.expm1(-v))


class Heaviside(nn.Module):
    """Hard step ``H(z) = 1 (z > 0), ½ (z = 0), 0 (z < 0)``; zero gradient almost everywhere.

    Built from comparisons, so on an ``LCTensor`` a pre-activation that is exactly on the threshold
    in its standard part is decided by its infinitesimal part (the source of Dirac masses in
    ``torchlc.ngrad``).

    Example:
        >>> Heaviside()(torch.tensor([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.5, 1.0]
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dt = z.dtype if z.dtype.is_floating_point else torch.get_default_dtype()
        return (z > 0).to(dt) + 0.5 * (z == 0).to(dt)


class PSANNActivation(nn.Module):
    """Parametric sine ``A·exp(-d·g(z))·sin(f·z [+ φ])`` with per-neuron ``A, f, d (, φ)``.

    ``A, f, d`` are ``softplus`` of raw parameters (clamped to ``bounds`` if given).  Parameters
    not in ``learnable`` are stored as buffers (so they are not counted as parameters).

    Example:
        >>> act = PSANNActivation(3, dim=-1)
        >>> z = torch.tensor([[0.5, -1.0, 2.0]])
        >>> torch.allclose(act(z), torch.exp(-0.1 * z.abs()) * torch.sin(z), atol=1e-6)
        True
        >>> sum(p.numel() for p in act.parameters())
        9
    """

    def __init__(self, features: int, config: Mapping[str, Any] | None = None, *, phase: bool = False,
                 dim: int = 0) -> None:
        super().__init__()
        cfg = normalize_activation_config(config)
        self.features, self.dim, self.phase = int(features), dim, bool(phase)
        self.decay_mode = cfg["decay_mode"]
        self.bounds = {k: tuple(v) for k, v in dict(cfg["bounds"] or {}).items()}
        g = torch.Generator().manual_seed(int(cfg["seed"] or 0))
        specs = {
            "amplitude": ("amplitude_init", "amp_init_std", "amp_range"),
            "frequency": ("frequency_init", "freq_init_std", "freq_range"),
            "decay": ("decay_init", "damp_init_std", "damp_range"),
        }
        for name, (ik, sk, rk) in specs.items():
            if cfg[rk] is not None:
                lo, hi = (float(v) for v in cfg[rk])
                val = lo + (hi - lo) * torch.rand(self.features, generator=g, dtype=torch.float64)
            else:
                val = torch.full((self.features,), float(cfg[ik]), dtype=torch.float64)
                if float(cfg[sk]) > 0:
                    val = val + float(cfg[sk]) * torch.randn(self.features, generator=g, dtype=torch.float64)
            raw = _inv_softplus(val).float()
            if name in cfg["learnable"]:
                setattr(self, f"raw_{name}", nn.Parameter(raw))
            else:
                self.register_buffer(f"raw_{name}", raw)
        if self.phase:
            ph = torch.full((self.features,), float(cfg["phase_init"]))
            if cfg["phase_trainable"]:
                self.phase_param = nn.Parameter(ph)
            else:
                self.register_buffer("phase_param", ph)

    @staticmethod
    def count_params(features: int, config: Mapping[str, Any] | None = None, phase: bool = False) -> int:
        """Trainable parameter count of this activation for ``features`` neurons.

        Example:
            >>> PSANNActivation.count_params(10, {"learnable": ["amplitude"]}, phase=True)
            20
        """
        cfg = normalize_activation_config(config)
        return features * (len(cfg["learnable"]) + (1 if phase and cfg["phase_trainable"] else 0))

    def _value(self, name: str) -> torch.Tensor:
        v = torch.nn.functional.softplus(getattr(self, f"raw_{name}"))
        if name in self.bounds:
            lo, hi = self.bounds[name]
            v = v.clamp(min=lo, max=hi)
        return v

    def _shape(self, z):
        s = [1] * z.ndim
        s[self.dim] = self.features
        return s

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = self._shape(z)
        amp, freq, decay = (self._value(n).reshape(s).to(z.dtype) for n in _PARAM_NAMES)
        arg = z * freq
        if self.phase:
            arg = arg + self.phase_param.reshape(s).to(z.dtype)
        out = amp * torch.sin(arg)
        if self.decay_mode == "abs":
            out = out * torch.exp(-(decay * z.abs()))
        elif self.decay_mode == "relu":
            out = out * torch.exp(-(decay * torch.relu(z)))
        return out

    def extra_repr(self) -> str:
        return f"{self.features}, phase={self.phase}, decay_mode={self.decay_mode!r}, dim={self.dim}"


class MixedActivation(nn.Module):
    """Per-neuron mixture of activations: neuron groups get different activation types.

    Neurons are assigned to ``types`` in proportions ``ratios`` (default equal) — contiguously or in
    a seeded random layout — and each group is evaluated on its own slice (``index_select``) and
    put back in place, so parametric activations only hold parameters for their own neurons.

    Example:
        >>> act = MixedActivation(6, ["relu", "tanh"], mix_layout="contiguous", dim=-1)
        >>> act(torch.full((1, 6), -1.0))[0].tolist()[:3], round(act(torch.full((1, 6), -1.0))[0, 5].item(), 4)
        ([0.0, 0.0, 0.0], -0.7616)
    """

    def __init__(self, features: int, types: Sequence[str], ratios: Sequence[float] | None = None, *,
                 mix_layout: str = "random", mix_seed: int | None = 0,
                 config: Mapping[str, Any] | None = None, dim: int = 0, ratio_sum_tol: float = 1e-3) -> None:
        super().__init__()
        types = [normalize_activation_name(t) for t in types]
        if not types or "mixed" in types:
            raise ValueError("mixed activation needs a non-empty list of non-mixed types")
        r = torch.tensor([1.0] * len(types) if ratios is None else [float(x) for x in ratios], dtype=torch.float64)
        if r.numel() != len(types) or bool((r < 0).any()):
            raise ValueError("activation_ratios must be non-negative, one per type")
        if ratios is not None and abs(float(r.sum()) - 1.0) > ratio_sum_tol:
            raise ValueError(f"activation_ratios must sum to 1 (got {float(r.sum())})")
        self.counts = self.split_counts(features, r)
        if mix_layout == "contiguous":
            perm = torch.arange(features)
        elif mix_layout == "random":
            perm = torch.randperm(features, generator=torch.Generator().manual_seed(int(mix_seed or 0)))
        else:
            raise ValueError("mix_layout must be 'random' or 'contiguous'")
        self.features, self.dim, self.types = int(features), dim, types
        bounds = torch.cumsum(torch.tensor([0, *self.counts]), 0).tolist()
        self.acts = nn.ModuleList()
        for i, t in enumerate(types):
            self.register_buffer(f"sel{i}", perm[bounds[i]:bounds[i + 1]].clone())
            self.acts.append(build_activation(t, self.counts[i], config, dim=dim))
        self.register_buffer("inv_perm", torch.argsort(perm))

    @staticmethod
    def split_counts(features: int, ratios: torch.Tensor) -> list[int]:
        """Neurons per type: largest-remainder rounding of ``features · ratios / Σ ratios``.

        Example:
            >>> MixedActivation.split_counts(10, torch.tensor([1.0, 1.0, 1.0]))
            [4, 3, 3]
        """
        r = ratios.double() / ratios.double().sum()
        exact = r * features
        base = torch.floor(exact).long()
        rem = features - int(base.sum())
        order = torch.argsort(-(exact - base), stable=True)
        base[order[:rem]] += 1
        return base.tolist()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = [act(z.index_select(self.dim, getattr(self, f"sel{i}")))
                 for i, act in enumerate(self.acts) if self.counts[i] > 0]
        return torch.cat(parts, dim=self.dim).index_select(self.dim, self.inv_perm)

    def extra_repr(self) -> str:
        return f"{self.features}, types={self.types}, counts={self.counts}"


def build_activation(name: str, features: int, config: Mapping[str, Any] | None = None, *,
                     dim: int = 0) -> nn.Module:
    """Build an activation module by name for ``features`` neurons along ``dim``.

    Example:
        >>> build_activation("phase_psann", 8, {"phase_init": 0.5}, dim=-1).phase_param.shape
        torch.Size([8])
        >>> type(build_activation("mixed", 8, {"types": ["relu", "psann"]})).__name__
        'MixedActivation'
    """
    key = normalize_activation_name(name)
    if key == "relu":
        return nn.ReLU()
    if key == "tanh":
        return nn.Tanh()
    if key == "gelu":
        return nn.GELU()
    if key == "heaviside":
        return Heaviside()
    if key in ("psann", "phase_psann"):
        return PSANNActivation(features, config, phase=key == "phase_psann", dim=dim)
    cfg = normalize_activation_config(config)
    if not cfg["activation_types"]:
        raise ValueError("activation='mixed' needs activation_config['activation_types']")
    sub = {k: v for k, v in dict(config or {}).items()
           if _KEY_ALIASES.get(k, k) not in ("activation_types", "activation_ratios", "mix_layout", "mix_seed")}
    return MixedActivation(features, cfg["activation_types"], cfg["activation_ratios"],
                           mix_layout=cfg["mix_layout"], mix_seed=cfg["mix_seed"], config=sub, dim=dim)


def activation_param_count(name: str, features: int, config: Mapping[str, Any] | None = None) -> int:
    """Analytic trainable-parameter count of :func:`build_activation` ``(name, features, config)``.

    Example:
        >>> activation_param_count("psann", 100), activation_param_count("relu", 100)
        (300, 0)
    """
    key = normalize_activation_name(name)
    if key in ("relu", "tanh", "gelu", "heaviside"):
        return 0
    if key in ("psann", "phase_psann"):
        return PSANNActivation.count_params(features, config, phase=key == "phase_psann")
    cfg = normalize_activation_config(config)
    types = [normalize_activation_name(t) for t in cfg["activation_types"]]
    ratios = cfg["activation_ratios"]
    r = torch.tensor([1.0] * len(types) if ratios is None else [float(x) for x in ratios])
    counts = MixedActivation.split_counts(features, r)
    sub = {k: v for k, v in dict(config or {}).items()
           if _KEY_ALIASES.get(k, k) not in ("activation_types", "activation_ratios", "mix_layout", "mix_seed")}
    return sum(activation_param_count(t, c, sub) for t, c in zip(types, counts))

