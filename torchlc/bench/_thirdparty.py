"""The optional model libraries (torchvision, transformers): importing them offline, the torchvision
shim for CPU-only torch builds, and the install hint when one is missing.

Used by the ``real`` bench section and by the third-party model tests (``tests/models/helpers.py``);
this is the only copy of the shim.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch

#: what to install when a model library is missing (docs/models.md, "Third-party models")
INSTALL_HINT = (
    "the `models` extra: pip install --no-deps <its pins in pyproject.toml> (docs/models.md)"
)

_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def hf_offline() -> None:
    """Set the Hugging Face libraries' offline switches (unless already set): nothing may be fetched,
    the models are built from configs with random weights. Call before importing transformers."""
    for k, v in _OFFLINE.items():
        os.environ.setdefault(k, v)


_TV_SHIM = None  # the torch.library fragment of the shim, kept alive while the process runs


def ensure_torchvision_importable() -> None:
    """Make ``import torchvision`` work where its compiled extension does not load.

    PyPI's torchvision wheels are built against PyPI's CUDA torch; against a CPU torch build their
    ``_C`` extension fails to load, torchvision then runs without its C++ ops (``nms``, ``roi_align``,
    …), but its ``_meta_registrations`` still registers fake kernels for ``torchvision::nms`` and
    ``torchvision::qnms`` unconditionally, which raises "operator torchvision::nms does not exist" and
    aborts the import. timm and transformers import torchvision when it is installed, so they fail
    the same way.

    The shim: when (and only when) that import fails this way, define the two schemas with
    ``torch.library`` (no kernels: calling them raises) and import again. None of the benchmarked or
    tested models calls a torchvision C++ op; the models are pure Python. Where the extension loads,
    nothing is defined. Not installed: returns without error (the caller's import then fails).
    """
    global _TV_SHIM
    if "torchvision" in sys.modules or _TV_SHIM is not None:
        return
    try:
        import torchvision  # noqa: F401

        return
    except ImportError:
        return  # not installed: the callers skip
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        if not hasattr(torch.ops.torchvision, op):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_SHIM = lib
    import torchvision  # noqa: F401


class MissingLibrary(ImportError):
    """An optional model library is not installed; the message says what to install."""


def import_model_library(name: str):
    """``torchvision`` or ``transformers``, offline and with the torchvision shim applied; raises
    :class:`MissingLibrary` (naming the pip command) when it is not installed."""
    hf_offline()
    ensure_torchvision_importable()  # transformers imports torchvision when it is installed
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise MissingLibrary(
            f"{name} is not installed ({type(e).__name__}): pip install --no-deps {name} (the `models` "
            "extra; its pinned versions and the command: docs/models.md, \"Third-party models\")"
        ) from e
