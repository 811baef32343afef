"""The LC rules, one module per family of aten ops.

Each module registers its rules with :func:`torchlc._dispatch.implements` (one registration API, with a
rule *kind*); importing this package registers them all. Dispatch and the fallback chain live in
:mod:`torchlc._dispatch`.
"""

from __future__ import annotations

from .. import _rulehash
from .._dispatch import register_linear_op
from .._tensor import _rebuild  # noqa: F401  (0.1.0 pickles name torchlc.ops._rebuild)
from . import (  # noqa: F401  (each module registers its rules on import)
    analytic,
    arithmetic,
    attention,
    complex,
    conv,
    discontinuous,
    embedding,
    factories,
    fft,
    floats,
    gemm,
    linalg,
    linalg_decomp,
    linalg_general,
    memory,
    norm,
    pad,
    pool,
    ragged,
    random,
    reductions,
    resample,
    rnn,
    scatter,
    selection,
    shape,
    special,
    strided,
    transformer,
)

RULES_HASH = _rulehash.RULES_HASH

__all__ = ["register_linear_op", "RULES_HASH"]
