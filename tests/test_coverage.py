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
        assert r.samples <= 2 + 2  # max_samples, plus the zero-size and the non-contiguous sample
        assert r.zero_size in ("pass", "fail", "n/a", "") and r.noncontig in ("pass", "fail", "n/a", "")


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


# The full run (nothing wrong, nothing erroring, the page exactly as committed) is
# tests/test_coverage_page.py.


# -- the derived samples: zero-size and non-contiguous ----------------------------------------------
class _Plain:
    name = "f"

    @staticmethod
    def gradcheck_wrapper(op, *a, **k):
        return op(*a, **k)


def _fake_op(fn):
    class Op(_Plain):
        @staticmethod
        def get_op():
            return fn

    return Op


def _fake_sample(*tensors):
    class Sample:
        input = tensors[0]
        args = tuple(tensors[1:])
        kwargs = {}

        @staticmethod
        def output_process_fn_grad(x):
            return x

    return Sample


def test_zero_size_variants_narrow_the_input_and_the_matching_arguments():
    from torchlc.coverage import runner

    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    variants = runner._zero_size_variants([_fake_sample(a, b)])
    shapes = [[tuple(t.shape) for t in tr([a, b], 1)] for _, tr in variants]
    assert shapes[0] == [(0, 4), (0, 4)] and shapes[1] == [(0, 4), (3, 4)]  # batch dim, matching / alone
    assert [(3, 0), (3, 0)] in shapes
    op = _fake_op(torch.add)
    gen = torch.Generator().manual_seed(0)
    s, ref, err = runner._prepare(op, _fake_sample(a, b), gen, 0, transform=variants[0][1])
    assert err is None and coverage.check_sample(s, ref[0], ref[1], 0) == "pass"


def test_non_contiguous_samples_lift_views():
    gen = torch.Generator().manual_seed(0)
    seen = []

    def record(x, y):
        seen.append((x.is_contiguous(), y.is_contiguous(), torchlc.is_lc(x)))
        return x * y

    s = coverage._Sample(_fake_op(record), _fake_sample(torch.randn(3, 4, dtype=torch.float64),
                                                        torch.randn(5, dtype=torch.float64)[:4]),
                         gen, False, layout="non-contiguous")
    lifted = s.lift()
    assert not lifted[0].is_contiguous() and lifted[0].lc_view  # a transposed LC view
    assert not lifted[1].is_contiguous() and lifted[1].stride() == (2,)  # every other element
    ref = torch.func.jvp(lambda *xs: s.call(xs), tuple(s.plain(p) for p in s.primals),
                         tuple(s.plain(v) for v in s.tangents))
    assert coverage.check_sample(s, ref[0], ref[1], 0) == "pass"
    assert (False, False, True) in seen


def test_truncation_error_reruns_at_the_order_it_names():
    from torchlc.coverage import runner
    from torchlc.coverage.spec import OpResult

    # ‖x‖ at x = 0: at order 1 the ε¹ coefficient is not exact; at order 2 it is ‖v‖ (the one-sided
    # value of the kink, where jvp gives 0)
    op = _fake_op(torch.linalg.vector_norm)
    gen = torch.Generator().manual_seed(0)
    s, ref, _ = runner._prepare(op, _fake_sample(torch.zeros(3, dtype=torch.float64)), gen, 0)
    with pytest.raises(torchlc.TruncationError):
        coverage.check_sample(s, ref[0], ref[1], 0)
    res = OpResult("f", "pass")
    assert runner._check_at_needed_order(s, ref, 0, None, res) == "kink" and res.reordered == 1
