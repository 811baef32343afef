"""The OpInfo coverage tool (torchlc.coverage, ``python -m torchlc.coverage``): nothing may be 'wrong'."""

import subprocess
import sys

import pytest
import torch

import torchlc
from torchlc import coverage

# A small fixed subset across the rule families (fast: a few seconds after op_db is imported).
SUBSET = [
    "add",
    "mul",
    "sub",
    "div.no_rounding_mode",
    "sin",
    "exp",
    "abs",
    "clamp",
    "nn.functional.relu",
    "where",
    "sum",
    "mean",
    "std",
    "softmax",
    "mm",
    "cat",
    "stack",
    "transpose",
    "sort",
    "floor",
]


@pytest.fixture(scope="module")
def subset_results():
    return coverage.run(SUBSET, max_samples=2, timeout=10.0)


def test_subset_nothing_wrong(subset_results):
    names = {r.name for r in subset_results}
    assert names == set(SUBSET), set(SUBSET) ^ names
    wrong = [(r.name, r.note) for r in subset_results if r.status == "wrong"]
    assert not wrong, wrong


def test_subset_statuses_are_known(subset_results):
    for r in subset_results:
        assert r.status in coverage.STATUSES
        assert r.samples <= 2


def test_markdown_rendering(subset_results):
    md = coverage.render_markdown(subset_results, elapsed=1.0, max_samples=2)
    assert "## Totals" in md and "Pass rate" in md
    assert torch.__version__ in md
    for r in subset_results:
        assert f"`{r.name}`" in md


def test_kink_is_one_sided_not_wrong():
    # abs at 0 along v: torchlc gives |v|·ε (the one-sided derivative), jvp gives sign(0)·v = 0.
    class FakeSample:
        input = torch.tensor([0.0, 1.5, -2.0], dtype=torch.float64)
        args = ()
        kwargs = {}

        @staticmethod
        def output_process_fn_grad(x):
            return x

    class FakeOp:
        name = "abs"

        @staticmethod
        def get_op():
            return torch.abs

        @staticmethod
        def gradcheck_wrapper(op, *a, **k):
            return op(*a, **k)

    gen = torch.Generator().manual_seed(0)
    s = coverage._Sample(FakeOp, FakeSample, gen, input_only=False)
    ref = torch.func.jvp(lambda *xs: s.call(xs), s.primals, s.tangents)
    assert coverage.check_sample(s, ref[0], ref[1], 0) == "kink"


def test_mismatch_is_detected():
    # a deliberately wrong "op" on LC inputs: its ε¹ plane is doubled
    def bad(x):
        if torchlc.is_lc(x):
            return x + (x - torchlc.standard_part(x))
        return x

    class FakeSample:
        input = torch.tensor([0.5, 1.5], dtype=torch.float64)
        args = ()
        kwargs = {}

        @staticmethod
        def output_process_fn_grad(x):
            return x

    class FakeOp:
        name = "bad"

        @staticmethod
        def get_op():
            return bad

        @staticmethod
        def gradcheck_wrapper(op, *a, **k):
            return op(*a, **k)

    gen = torch.Generator().manual_seed(0)
    s = coverage._Sample(FakeOp, FakeSample, gen, input_only=False)
    ref = torch.func.jvp(lambda *xs: s.call(xs), s.primals, s.tangents)
    with pytest.raises(coverage._Mismatch):
        coverage.check_sample(s, ref[0], ref[1], 0)


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "torchlc.coverage", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python -m torchlc.coverage") and "--max-samples" in r.stdout


MISSING_EXPECTTEST = """
import sys
sys.modules["expecttest"] = None  # as if it were not installed
from torchlc import coverage
try:
    coverage.load_ops(["sin"])
except coverage.MissingDependencyError as e:
    print(e)
sys.exit(coverage.main(["--ops", "sin", "-q"]))
"""


def test_missing_expecttest_names_the_extra():
    r = subprocess.run([sys.executable, "-c", MISSING_EXPECTTEST], capture_output=True, text=True, timeout=120)
    hint = "the coverage tool needs expecttest: pip install 'torchlc[dev]'"
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith(hint), r.stdout + r.stderr
    assert "Traceback" not in r.stderr and hint in r.stderr


@pytest.mark.slow
def test_full_run_nothing_wrong():
    results = coverage.run(max_samples=4, timeout=10.0)
    wrong = [(r.name, r.note) for r in results if r.status == "wrong"]
    assert not wrong, wrong
