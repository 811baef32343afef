"""repr of LCTensor (expecttest). Regenerate with EXPECTTEST_ACCEPT=1 after a deliberate format change,
then review the diff: the documented example in docs/api.md must not change."""

from fractions import Fraction as F

import expecttest
import torch

import torchlc


class TestRepr(expecttest.TestCase):
    def test_documented_example(self):
        x = torchlc.from_terms({0: torch.tensor([1., 0.]), 1: torch.tensor([2., 0.]),
                                -1: torch.tensor([0., 3.])})
        # exactly the string of docs/api.md
        self.assertEqual(repr(x), "LCTensor([1.0 + 2.0ε, 3.0ε⁻¹], order=1)")

    def test_scalar_nonstd(self):
        self.assertExpectedInline(repr(torch.tensor(2.0).nonstd()), """LCTensor(2.0 + 1.0ε, order=1)""")

    def test_negative_coefficients(self):
        x = torchlc.from_terms({0: torch.tensor([1.0, -1.0]), 1: torch.tensor([-2.0, 0.5])})
        self.assertExpectedInline(repr(x), """LCTensor([1.0 - 2.0ε, -1.0 + 0.5ε], order=1)""")

    def test_zero_element(self):
        x = torchlc.from_terms({0: torch.tensor([0.0, 1.0]), 1: torch.tensor([0.0, 0.0])})
        self.assertExpectedInline(repr(x), """LCTensor([0.0, 1.0], order=1)""")

    def test_rational_exponents(self):
        x = torchlc.eps(F(1, 3)) + torchlc.eps(F(-3, 2))
        self.assertExpectedInline(repr(x), """LCTensor(1.0ε⁻³ᐟ² + 1.0ε¹ᐟ³, order=1)""")

    def test_higher_order(self):
        x = torch.tensor(1.0).nonstd(order=3) ** 3
        self.assertExpectedInline(repr(x), """LCTensor(1.0 + 3.0ε + 3.0ε² + 1.0ε³, order=3)""")

    def test_exact_through_below_order(self):
        y = torchlc.eps(-1) * (torch.tensor(1.0).nonstd() ** 2)
        self.assertExpectedInline(repr(y), """LCTensor(1.0ε⁻¹ + 2.0 + o(ε⁰), order=1, exact_through=0)""")

    def test_matrix(self):
        x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).nonstd()
        self.assertExpectedInline(repr(x), """LCTensor([[1.0 + 1.0ε, 2.0 + 1.0ε], [3.0 + 1.0ε, 4.0 + 1.0ε]], order=1)""")

    def test_nan(self):
        self.assertExpectedInline(repr(torch.exp(torchlc.eps(-1))), """LCTensor(nan, order=1)""")

    def test_float64(self):
        x = torch.tensor([0.5], dtype=torch.float64).nonstd()
        self.assertExpectedInline(repr(x), """LCTensor([0.5 + 1.0ε], order=1, dtype=torch.float64)""")


if __name__ == "__main__":
    from torch.testing._internal.common_utils import run_tests

    run_tests()
