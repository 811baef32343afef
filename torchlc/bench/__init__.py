"""torchlc benchmarks: ``python -m torchlc.bench`` (never part of the test suite).

Sections (``--only`` picks some of them):

* ``core``   — add, mul, sin, abs, floor, heaviside on 10⁶-element first-order inputs ``x.nonstd(v)``
  as a ratio to the plain torch op on the same data in the same run (``torch.utils.benchmark.Timer``,
  ``blocked_autorange``). Bars: add/mul ≤ 5×, analytic and discontinuous ≤ 10×. The ``kernels``
  column counts the compute kernels (leaf aten ops other than views/metadata) one LC op launches,
  measured with ``torch.profiler``.
* ``bytes``  — storage bytes per element of each layout (``torchlc.layouts.bytes_per_element``).
* ``memory`` — peak memory of one op, plain vs LC. CUDA: ``torch.cuda.max_memory_allocated`` above the
  live baseline. CPU: tracemalloc does not see torch's allocator, so the peak resident set is used:
  ``/proc/self/clear_refs`` is reset (``5``), the op runs, and ``VmHWM`` (peak RSS) minus the ``VmRSS``
  before the op is reported. It runs in a child process in which glibc's ``mallopt`` forces every
  allocation ≥ 64 KiB through mmap/munmap, so freed tensors leave the RSS at once and the number is
  the op's own peak (inputs excluded, output and temporaries included).
* ``small``  — µs per op on small tensors (64×64): add, mul, mm, sin, relu, for plain tensors,
  LCTensors and ``torch.autograd.forward_ad`` dual tensors (the Python dispatch floor).
* ``models`` — MLP (4 × Linear 1024 + ReLU) and TransformerEncoder (d 256, 4 layers, nhead 4, seq 128)
  forward under ``no_grad`` in eval mode: plain, plain on twice the rows (the two-plane bound),
  ``torch.func.jvp`` and LC (``model(x.nonstd(v))``), fp32 and bf16, eager and ``torch.compile``
  (``fullgraph=True``; a failure is reported as ``n/a: <reason>``).
* ``attention`` — causal ``F.scaled_dot_product_attention`` on first-order q, k, v (views of (B, L, H,
  D) projections), bf16 on CUDA (float32 on CPU): plain, 2×rows, ``torch.func.jvp`` (math backend,
  the only one with forward AD), LC, and LC with the flash-style jet turned off (the formulas, which
  write the score and weight planes), with peak memory on CUDA.
* ``real``   — torchvision resnet50, vit_b_16, convnext_tiny and transformers GPT-2 and a Llama-style
  decoder (on ``inputs_embeds``), built from constructors and configs with random weights (nothing is
  downloaded; a row says what to install when torchvision or transformers is missing): plain, 2×rows,
  jvp and LC, fp32 and bf16, eager, ``torchlc.compile`` and (CUDA) CUDA graphs, against issue 16's
  bars; per forward the host and GPU time, kernels, LC dispatches and peak memory (CUDA); and the
  host time per LC dispatch in eager mode. Small sizes on CPU (compiled rows only with ``--modes``).
* ``jet``    — higher order on CPU float64 against JAX's jitted ``jax.experimental.jet`` (optional
  extra ``pip install "torchlc[jax]"``; one skip line without it): ``exp(sin(x))·tanh(x)²`` on 10⁶
  elements and an MLP of 3 × (Linear 256 + tanh) at batch 4096, K = 1…6, with nested
  ``torch.func.jvp`` for K ≤ 3, the coefficients checked against jet's (× k!). Bar: LC/jet ≤ 1.5×.

Sizes: ``--quick`` is tiny (CI smoke test); the default on CPU shrinks the model batches (MLP batch
1024 instead of 4096, Transformer batch 8 instead of 32) so the run finishes in minutes on 2 cores;
``--device cuda`` uses the full sizes of the issues.

Output is markdown, printed and, with ``--md FILE --section NAME``, written into FILE under the
heading ``## NAME`` (replacing that section if it exists, appending it otherwise).
"""

from .cli import main, run
from .config import SECTIONS, Config
from .measure import count_kernels, kernel_names, time_fn, time_many
from .report import environment, md_table, write_section

__all__ = ["SECTIONS", "Config", "count_kernels", "environment", "kernel_names", "main", "md_table", "run",
           "time_fn", "time_many", "write_section"]
