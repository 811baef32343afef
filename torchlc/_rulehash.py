"""A fingerprint of the code that computes LC results: part of every LCTensor's flatten context, so
torch.compile's caches never serve a graph built with other rules.

It covers the modules whose code decides an op's numbers (the series algebra, the layouts, the tensor
and dispatch layers, the rules, the jets, the kernels and smoothing) and nothing else: editing the
benchmarks, the docs tooling or the public API's wrappers does not invalidate compiled artifacts. The
files are read, never imported, so this module sits at the bottom of the import graph.
"""

from __future__ import annotations

import hashlib
import pathlib

__all__ = ["RULES_HASH", "RULE_CODE"]

_ROOT = pathlib.Path(__file__).resolve().parent

# paths relative to the package: files, or folders whose .py files all count
RULE_CODE = (
    "_algebra.py", "_series.py", "_context.py", "_dispatch.py", "_graphs.py", "_jet.py", "_support.py", "_taylor.py",
    "_tensor.py", "kernels", "layouts", "ops", "_smoothing",
)


def _files():
    for entry in RULE_CODE:
        p = _ROOT / entry
        if p.is_dir():
            yield from sorted(p.rglob("*.py"))
        elif p.exists():
            yield p


def _rules_hash() -> str:
    h = hashlib.sha256()
    for p in _files():
        h.update(str(p.relative_to(_ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


RULES_HASH = _rules_hash()
