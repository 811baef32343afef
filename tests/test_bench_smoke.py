"""Smoke test for ``python -m torchlc.bench`` (the package ``torchlc/bench/``): it runs on tiny sizes and
produces rows.

Not a timed test: no assertion looks at a number, only at the shape of the output.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import torchlc.bench as bench


def test_bench_quick_runs_and_writes_markdown(tmp_path, capsys):
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\n## keep me\n\nuntouched\n\n## smoke\n\nold text\n")
    # every section but `real` (its own smoke test below: the model libraries are optional)
    only = ",".join(s for s in bench.SECTIONS if s != "real")
    rc = bench.main(["--quick", "--min-run-time", "0.001", "--only", only, "--md", str(md), "--section", "smoke"])
    assert rc == 0
    text = md.read_text()
    assert "## keep me\n\nuntouched" in text
    assert "old text" not in text
    for heading in (
        "Environment",
        "Core ops",
        "Bytes per element",
        "Peak memory",
        "Small-tensor per-op overhead",
        "Models",
        "Attention (F.scaled_dot_product_attention)",
    ):
        assert f"### {heading}" in text
    for op in ("add", "mul", "sin", "abs", "floor", "heaviside"):
        assert f"| {op} | " in text
    assert "| MLP | float32 | eager |" in text
    assert "| TransformerEncoder |" in text
    assert "| 1, 2, 8, 16 | " in text
    assert "torch" in text and "CPU count" in text
    # every core-op row has a PASS/FAIL/n/a verdict
    core = text.split("### Core ops")[1].split("###")[0]
    rows = [r for r in core.splitlines() if r.startswith("| ") and not r.startswith("| op")]
    assert len(rows) == 6 and all(any(v in r for v in ("PASS", "FAIL", "n/a")) for r in rows)
    assert "### Core ops" in capsys.readouterr().out


def _model_libraries_or_skip():
    from torchlc.bench._thirdparty import MissingLibrary, import_model_library

    for name in ("torchvision", "transformers"):
        try:
            import_model_library(name)
        except MissingLibrary as e:
            pytest.skip(str(e))


def test_bench_real_quick(tmp_path):
    """``--only real --quick``: one row per model, dtype and mode (eager only: --quick does not compile),
    the profile and per-dispatch tables; no assertion on a number."""
    _model_libraries_or_skip()
    import torch

    md = tmp_path / "benchmarks.md"
    threads = torch.get_num_threads()
    try:
        rc = bench.main(["--quick", "--only", "real", "--threads", "1", "--min-run-time", "0.001",
                         "--dtypes", "float32,bfloat16", "--md", str(md), "--section", "real"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    text = md.read_text()
    assert "### Real models (torchvision, transformers)" in text and "CPU count" in text
    body = text.split("### Real models")[1]
    tables = [[r for r in t.splitlines() if r.startswith("| ") and "---" not in r] for t in body.split("\n\n")]
    tables = [t for t in tables if t]
    assert len(tables) == 4, body  # times, profile per forward, host time per dispatch, kernels per rule
    models = ("resnet50", "vit_b_16", "convnext_tiny", "gpt2", "llama")
    for table in tables[:3]:
        rows = table[1:]
        dtype_col = 2 if table is tables[0] else 1  # the times table has an `input` column
        assert [(r.split(" | ")[0][2:], r.split(" | ")[dtype_col]) for r in rows] == [
            (m, d) for m in models for d in ("float32", "bfloat16")
        ], table
    # kernels per rule: the LC ops that launch most, most first, for every model and dtype; together no
    # more than the forward's kernels in the profile table
    rules = [r.split(" | ") for r in tables[3][1:]]
    forward_kernels = {(c[0][2:], c[1]): int(c[8]) for c in (r.split(" | ") for r in tables[1][1:])}
    for m in models:
        for d in ("float32", "bfloat16"):
            mine = [int(c[4]) for c in rules if (c[0][2:], c[1]) == (m, d)]
            assert mine and mine == sorted(mine, reverse=True), (m, d, mine)
            assert sum(mine) <= forward_kernels[(m, d)], (m, d)
    for row in tables[0][1:]:
        cells = row.split(" | ")
        assert cells[3] == "eager" and "skipped" not in row, row
        assert not cells[7].startswith("n/a"), row  # LC ran (jvp may fail: not LC's concern)
        assert cells[-1].rstrip(" |").split(" / ")[0] in ("PASS", "MISS"), row


def test_bench_real_skips_a_missing_library(monkeypatch):
    from torchlc.bench import real
    from torchlc.bench._thirdparty import MissingLibrary

    def missing(name):
        raise MissingLibrary(f"{name} is not installed (ModuleNotFoundError): pip install --no-deps {name}")

    monkeypatch.setattr(real, "import_model_library", missing)
    cfg = bench.Config(quick=True, models=("resnet50", "gpt2"))
    text, data = real.bench_real(cfg, log=lambda *a: None)
    assert data == []
    assert "| resnet50 | — | — | — | skipped: torchvision is not installed" in text
    assert "pip install --no-deps torchvision" in text
    assert "| gpt2 | — | — | — | skipped: transformers is not installed" in text


def test_write_section_appends_and_replaces(tmp_path):
    md = tmp_path / "b.md"
    bench.write_section(md, "A", "one")
    bench.write_section(md, "B", "two")
    bench.write_section(md, "A", "three")
    text = md.read_text()
    assert text.count("## A") == 1 and "three" in text and "one" not in text and "two" in text
    assert text.index("## A") < text.index("## B")


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "torchlc.bench", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python -m torchlc.bench") and "--only" in r.stdout
    assert "torchlc benchmarks: ``python -m torchlc.bench``" in r.stdout  # the package's docstring


def test_memory_worker_runs_as_a_module():
    # the CPU peak-memory section runs `python -m torchlc.bench --_memory-worker N` in a child process
    r = subprocess.run([sys.executable, "-m", "torchlc.bench", "--_memory-worker", "1000"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("MEMORY {") and '"add"' in r.stdout


def test_kernels_per_rule_accounts_for_every_kernel():
    """Each of the model's LC ops gets the kernels its rule (and the LC ops the rule calls) launched:
    on LC operands built beforehand, the rules' kernels add up to the whole call's."""
    import torch

    import torchlc  # noqa: F401
    from torchlc.bench.measure import count_kernels
    from torchlc.bench.real import kernels_per_rule

    x = torch.randn(64, 32).nonstd(torch.randn(64, 32))
    y = torch.randn(64, 32).nonstd(torch.randn(64, 32))

    def f():
        with torch.no_grad():
            return torch.nn.functional.softmax(torch.tanh(x * y) + x, -1).sum()

    rules = kernels_per_rule(f, "cpu")
    ops = {op: (n, k) for op, n, k in rules}
    assert set(ops) == {"mul.Tensor", "tanh.default", "add.Tensor", "_softmax.default", "sum.default"}, ops
    assert all(n == 1 and k >= 1 for n, k in ops.values()), ops
    assert sum(k for _, k in ops.values()) == count_kernels(f)
    assert [k for _, _, k in rules] == sorted((k for _, _, k in rules), reverse=True)


def test_kernels_per_rule_counts_triton_launches_once():
    """Along the CUDA code path (Triton's interpreter on CPU), each rule's Triton launch counts once and
    the interpreter's own aten ops inside it not at all: a linear layer (GEMM, bias into ε⁰), then
    the one-launch relu, layer norm and x³ (linear and layer norm arrive whole, see
    tests/test_composites.py)."""
    pytest.importorskip("triton")
    code = (
        "import torch, torchlc\n"
        "from torchlc.bench.real import kernels_per_rule\n"
        "m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.LayerNorm(16))\n"
        "x = torch.randn(8, 16).nonstd(torch.randn(8, 16))\n"
        "def f():\n"
        "    with torch.no_grad():\n"
        "        return m(x) ** 3\n"
        "print(sorted(kernels_per_rule(f, 'cpu')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TRITON_INTERPRET="1"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(sorted([
        ("layer_norm.default", 1, 1), ("linear.default", 1, 2), ("pow.Tensor_Scalar", 1, 1),
        ("relu.default", 1, 1)])), r.stdout
