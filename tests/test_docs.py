"""The documentation's examples are tests.

* Every ```python block of ``docs/*.md`` is run. Blocks written as doctests (``>>>`` prompts) must
  print exactly what the page shows (doctest's ELLIPSIS is on, nothing else); the blocks of one page
  share their names, in order, as a reader typing them into one session would. Blocks without
  prompts are executed as plain code.
* The docstring examples of torchlc's public functions (``torchlc``, ``torchlc.api``,
  ``torchlc.errors``, ``torchlc.layouts``) are run with doctest. Docstrings whose expected output
  disagrees with what the code prints are listed in ``KNOWN_DOCSTRING_MISMATCHES`` and marked xfail
  (strict, so the mark has to go once the docstring or the code is fixed).
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
import torch

import torchlc
import torchlc.api
import torchlc.errors
import torchlc.layouts

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FLAGS = doctest.ELLIPSIS
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)

# docstring test name -> why it is expected to fail (the actual output is in the reason)
KNOWN_DOCSTRING_MISMATCHES: dict = {}


@pytest.fixture(autouse=True)
def _defaults():
    """Examples assume torch's default print options and float32 as the default dtype."""
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    torch.set_printoptions(profile="default")
    try:
        yield
    finally:
        torch.set_default_dtype(old_dtype)
        torch.set_printoptions(profile="default")


def _run(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out: list[str] = []
    runner.run(test, out=out.append, clear_globs=False)
    result = runner.summarize(verbose=False)
    if result.failed:
        pytest.fail("".join(out), pytrace=False)


# -- docs/*.md ---------------------------------------------------------------------------------------

PAGES = sorted(p for p in DOCS.glob("*.md") if BLOCK.search(p.read_text(encoding="utf-8")))


def test_pages_with_examples_exist():
    names = {p.name for p in PAGES}
    assert {"api.md", "concepts.md", "layouts.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_markdown_examples(page: Path):
    text = page.read_text(encoding="utf-8")
    globs: dict = {"__name__": f"docs.{page.stem}"}
    parser = doctest.DocTestParser()
    for k, m in enumerate(BLOCK.finditer(text)):
        src = m.group(1)
        line = text[: m.start()].count("\n") + 1
        if ">>>" in src:
            test = parser.get_doctest(src, globs, f"{page.name}[block {k}]", str(page), line)
            _run(test)
            globs.update(test.globs)  # DocTest copies its globals: carry names on to the next block
        else:
            exec(compile(src, f"{page.name}:{line}", "exec"), globs)


# -- docstrings --------------------------------------------------------------------------------------


def _docstring_tests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen: dict[str, doctest.DocTest] = {}
    for mod in (torchlc, torchlc.api, torchlc.errors, torchlc.layouts):
        for t in finder.find(mod):
            if t.examples and t.name not in seen:
                seen[t.name] = t
    return [seen[k] for k in sorted(seen)]


DOCSTRING_TESTS = _docstring_tests()


def test_docstring_examples_found():
    names = {t.name for t in DOCSTRING_TESTS}
    for fn in (
        "nonstd",
        "eps",
        "from_terms",
        "terms",
        "coeff",
        "coeffs",
        "support",
        "exact_through",
        "standard_part",
        "leading",
        "layout",
        "ngrad",
        "njvp",
        "njacfwd",
    ):
        assert f"torchlc.api.{fn}" in names, fn
    assert set(KNOWN_DOCSTRING_MISMATCHES) <= names


@pytest.mark.parametrize(
    "test",
    [
        pytest.param(
            t,
            id=t.name,
            marks=pytest.mark.xfail(reason=KNOWN_DOCSTRING_MISMATCHES[t.name], strict=True),
        )
        if t.name in KNOWN_DOCSTRING_MISMATCHES
        else pytest.param(t, id=t.name)
        for t in DOCSTRING_TESTS
    ],
)
def test_docstring_examples(test: doctest.DocTest):
    test = doctest.DocTest(
        test.examples, dict(test.globs), test.name, test.filename, test.lineno, test.docstring
    )
    _run(test)


# -- figures -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_make_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import runpy

    mod = runpy.run_path(str(DOCS / "make_plots.py"), run_name="docs_make_plots")
    mod["main"](["--out-dir", str(tmp_path)])
    for name in ("ngrad_round_floor.png", "sqrt_abs.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        assert (DOCS / "img" / name).exists(), (
            f"docs/img/{name} is missing: run python docs/make_plots.py"
        )
