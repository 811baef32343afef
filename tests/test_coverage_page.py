"""docs/coverage.md can never claim more than the code does: the committed page must be exactly what
``python -m torchlc.coverage`` produces on the current code.

The tool runs in a subprocess, as a user runs it (full op list, default samples, same settings as the
committed page), and its page is compared with the committed one character for character, except the
one volatile line (generation date and runtime); it also requires 0 wrong and 0 error ops. Every op
is seeded on its own, so the page is deterministic. On a 2-core machine the run takes about 40 s (the whole op list with four samples
plus the zero-size and non-contiguous ones); nothing is cached.

When this test fails, regenerate the page: ``python -m torchlc.coverage`` (and commit it).
"""

from __future__ import annotations

import difflib
import pathlib
import re
import subprocess
import sys

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "coverage.md"
VOLATILE = re.compile(r"^- generated \d{4}-\d{2}-\d{2}(?: in \d+ s)?$", re.MULTILINE)


def normalized(text: str) -> str:
    return VOLATILE.sub("- generated <date> in <runtime>", text)


def test_volatile_line_is_the_only_one_masked():
    page = "a\n- generated 2026-01-02 in 41 s\nb\n- generated 2026-01-02 in 41 s and more\n"
    assert normalized(page) == "a\n- generated <date> in <runtime>\nb\n- generated 2026-01-02 in 41 s and more\n"


@pytest.mark.slow
def test_committed_coverage_page_is_what_the_tool_produces(tmp_path):
    pytest.importorskip("expecttest", reason="the coverage tool needs expecttest (the dev extra)")
    out = tmp_path / "coverage.md"
    r = subprocess.run([sys.executable, "-m", "torchlc.coverage", "-q", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    got, committed = normalized(out.read_text()), normalized(PAGE.read_text())
    for status in ("wrong", "error"):  # never a wrong number, never an unexplained exception
        assert f"\n| {status} | 0 |\n" in got, re.findall(rf"\| `[^`]+` \| {status} \|.*", got)[:10]
    torch_line = re.compile(r"^- torch [^,\s]+", re.MULTILINE)
    if torch_line.search(got)[0] != torch_line.search(committed)[0]:
        # PyTorch's op database and decompositions change between releases: the page is what the tool
        # gives on the torch it names (this run has checked 0 wrong and 0 error on this torch)
        pytest.skip(f"docs/coverage.md was generated on {torch_line.search(committed)[0][2:]}, "
                    f"this is {torch_line.search(got)[0][2:]}")
    if got != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), got.splitlines(True),
                                            "docs/coverage.md (committed)", "python -m torchlc.coverage", n=1))
        lines = diff.splitlines()
        shown = "\n".join(lines[:80]) + (f"\n… {len(lines) - 80} more diff lines" if len(lines) > 80 else "")
        pytest.fail("docs/coverage.md differs from what the tool produces on this code; regenerate it with "
                    f"`python -m torchlc.coverage`:\n{shown}")
