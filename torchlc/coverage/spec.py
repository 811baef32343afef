"""What is compared and how: statuses, tolerances, the random ops that are skipped, the known and
legitimate differences from torch (:data:`ALLOWED`), and the per-op result record."""

from __future__ import annotations

import dataclasses

import torch

STATUSES = ("pass", "not-implemented", "wrong", "error", "skipped")
DTYPE = torch.float64
COMPLEX_DTYPE = torch.complex128  # for ops without float64 support (view_as_real, imag, istft)
RTOL = 1e-7
ATOL = 1e-7
FD_STEP = 1e-6
FD_RTOL = 1e-3
FD_ATOL = 1e-4

# Ops whose outputs are random draws: the LC run and the jvp reference consume the generator
# differently (or the op draws per element), so their numbers cannot be compared sample by sample.
RANDOM_OPS = {
    "bernoulli",
    "multinomial",
    "normal",
    "normal.number_mean",
    "rand_like",
    "randn_like",
    "randint_like",
    "randint",
    "nn.functional.dropout",
    "nn.functional.dropout2d",
    "nn.functional.dropout3d",
    "nn.functional.alpha_dropout",
    "nn.functional.feature_alpha_dropout",
    "nn.functional.rrelu",
    "uniform",
    "empty_like",
    "empty",
    "empty_permuted",
    "new_empty",
    "new_empty_strided",
    "empty_strided",
}


# Known, legitimate differences from torch, op by op: (reason, mask of excused output elements).
# Each mask is computed from the sample's primals, the output index k, torchlc's ε⁰ plane and
# torch's primal output, and must be as narrow as the reason.
def _entr_at_zero(primals, k, p0, exp):
    x = primals[0]
    return (
        (x == 0) & torch.isnan(p0)
        if x.shape == p0.shape
        else torch.zeros_like(p0, dtype=torch.bool)
    )


ALLOWED = {
    "special.entr": (
        "at x = 0: entr(vε) = −vε·log(vε) is outside the Levi-Civita field, so torchlc gives NaN "
        "(DomainError under torchlc.strict()) where torch gives entr(0) = 0",
        _entr_at_zero,
    ),
}


@dataclasses.dataclass
class OpResult:
    name: str  # OpInfo full name (name.variant)
    status: str
    note: str = ""
    samples: int = 0  # samples compared (pass) or attempted
    passed: int = 0
    skipped: int = 0
    kinks: int = 0  # samples where a one-sided (kink/jump/tie) difference was accepted
    jvp_off: int = (
        0  # samples where jvp disagreed with two-sided finite differences; torchlc agreed
    )
    allowed: int = 0  # samples where an ALLOWED difference was accepted
    reordered: int = 0  # samples rerun at a higher truncation order after a TruncationError
    seconds: float = 0.0
    # the extra samples: "pass", "fail", "n/a" (no such sample: the plain op refuses every zero-size
    # variant, or no floating input of ≥ 2 elements), "" (not run: nothing comparable)
    zero_size: str = ""
    noncontig: str = ""
    cause: str = ""  # root-cause key for not-implemented / error
    repro: str = ""  # for wrong: a snippet
