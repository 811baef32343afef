"""Smoke test for ``python -m torchlc.bench`` (the package ``torchlc/bench/``): it runs on tiny sizes and
produces rows.

Not a timed test: no assertion looks at a number, only at the shape of the output.
"""

from __future__ import annotations

import subprocess
import sys

import torchlc.bench as bench


def test_bench_quick_runs_and_writes_markdown(tmp_path, capsys):
    md = tmp_path / "benchmarks.md"
    md.write_text("# Benchmarks\n\n## keep me\n\nuntouched\n\n## smoke\n\nold text\n")
    rc = bench.main(["--quick", "--min-run-time", "0.001", "--md", str(md), "--section", "smoke"])
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
