"""Op coverage report against PyTorch's OpInfo database.

``python -m torchlc.coverage`` runs every OpInfo op that declares forward-AD support on (at most
``--max-samples``) of its float64 CPU sample inputs, lifted to ``x.nonstd(v)`` with a random tangent
``v``, and compares the result with :func:`torch.func.jvp` of the same op along the same tangents:

* the ε⁰ plane must equal the primal output and the ε¹ plane the jvp tangent (float64,
  ``rtol=atol=1e-7``, NaNs equal); integer/bool outputs must equal the plain op exactly;
* where they differ, the element is accepted only if torchlc's answer is the *one-sided* limit along
  ``v`` — the value and derivative of ``t ↦ f(x + t·v)`` as ``t → 0⁺`` (checked with one-sided finite
  differences) — which is what a Levi-Civita number computes at a kink, a jump or a tie, where
  ``torch.func.jvp`` returns a conventional (almost-everywhere) derivative instead;
* or where torchlc's element is infinite (nonzero ε⁻¹·… terms) and the reference is not finite.

Ops without float64 support run complex128 samples (complex LC inputs). Each op also runs two derived
samples, compared the same way: a *zero-size* one (a dimension of a sample's input, and of the
arguments that share it, narrowed to 0; the first variant the plain op accepts) and a
*non-contiguous* one (the lifted inputs are transposed or strided views). A sample whose ε¹
coefficient is not exact at order 1 (TruncationError naming the order needed) is recomputed at that
order.

Each op is classified ``pass`` (every sample matches), ``not-implemented`` (torchlc raised a clear
NotImplementedError/TypeError naming what is missing), ``wrong`` (numbers differ), ``error`` (any other
exception) or ``skipped`` (no float64 sample with a floating tensor, the jvp reference itself fails,
or the op is random). The report is written to ``docs/coverage.md``; every op is seeded on its own, so
the report does not depend on ``--ops`` or ``--jobs``, and ``tests/test_coverage_page.py`` checks that
the committed page is exactly what the tool produces.

Usage::

    python -m torchlc.coverage                     # full run, writes docs/coverage.md
    python -m torchlc.coverage --ops sin,add,cat   # a subset, prints the table
    python -m torchlc.coverage --json results.json # also dump machine-readable results
    python -m torchlc.coverage --jobs 2            # in 2 worker processes (same report)
"""

from .cli import main
from .compare import _Mismatch, _Sample, check_sample
from .report import render_markdown, totals
from .runner import MissingDependencyError, check_op, full_name, load_ops, run
from .spec import ALLOWED, RANDOM_OPS, STATUSES, OpResult

__all__ = ["OpResult", "load_ops", "check_op", "run", "render_markdown", "main", "ALLOWED", "RANDOM_OPS",
           "STATUSES", "MissingDependencyError", "check_sample", "full_name", "totals", "_Mismatch", "_Sample"]
