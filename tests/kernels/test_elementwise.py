"""Fused first-order kernels under the Triton interpreter (CPU) give the torch formulas' numbers."""

import os

import pytest
from interpreter import run as run_in_interpreter

pytest.importorskip("triton")

IN_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"

CASES = r"""
import torch, torchlc
from torchlc import kernels
from torchlc.kernels.elementwise import usable
nan, inf = float("nan"), float("inf")
a = torch.tensor([1.5, -2.0, 0.0, 0.0, 0.0, nan, 0.0, -0.0, inf, 3.0] * 301, dtype=torch.float64)
b = torch.tensor([7.0, 1.0, 2.0, -2.0, 0.0, 1.0, nan, 1.0, 1.0, -inf] * 301, dtype=torch.float64)
for dtype in (torch.float32, torch.float64):
    x = torchlc.from_terms({0: a.to(dtype), 1: b.to(dtype)})
    p = torchlc.coeffs(x).contiguous()
    assert usable(p)
    with torchlc.layouts.force("planes"):
        import torchlc.kernels.elementwise as E
        E.HAVE_TRITON = False          # torch formulas
        y = torchlc.from_terms({0: b.to(dtype).flip(0), 1: a.to(dtype)})
        vals = torch.linspace(-1, 2, a.numel(), dtype=dtype)
        fns = [torch.relu, torch.abs, lambda z: z * y, torch.floor, lambda z: torch.heaviside(z, vals),
               lambda z: z ** 3, lambda z: torch.pow(z, 4)]
        # transcendentals: libdevice/numpy vs the float64 torch formulas rounded to dtype. ATen's own
        # float32 CPU sin is no reference: in some processes it returned sin(3.0) 60 ulp off
        # (pytorch/pytorch#188792, MKL VML's first-call dispatch race picking a low-precision kernel)
        fns_close = [torch.sin, torch.cos, torch.exp, torch.sigmoid, torch.nn.functional.silu,
                     torch.nn.functional.gelu]
        refs = [f(x) for f in fns]
        x64 = torchlc.from_terms({0: a, 1: b})
        close_refs = [torchlc.coeffs(f(x64)).to(dtype) for f in fns_close]
        E.HAVE_TRITON = True           # fused kernels
        gots = [f(x) for f in fns]
        close_gots = [f(x) for f in fns_close]
        for ref, got in zip(close_refs, close_gots):
            torch.testing.assert_close(torchlc.coeffs(got), ref, equal_nan=True)
    for ref, got in zip(refs, gots):
        assert torch.equal(torchlc.coeffs(ref).nan_to_num(7.5), torchlc.coeffs(got).nan_to_num(7.5))
# x**3 and x**4 in one kernel: the product path's two mul2 launches, bit for bit, on random values
# (not bfloat16: the interpreter has no bfloat16 arithmetic; tests/test_gpu.py checks it on CUDA)
g = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.float64):
    p = torch.randn(2, 3001, generator=g).to(dtype)
    s2 = kernels.mul2(p, p)
    for n, want in ((3, kernels.mul2(s2, p)), (4, kernels.mul2(s2, s2))):
        assert torch.equal(kernels.powint2(p, n), want), (dtype, n)
        got = torchlc.coeffs(torchlc.from_terms({0: p[0], 1: p[1]}) ** n)
        assert torch.equal(got, want), (dtype, n)
# support (0, 1) at order 2 is not the first-order jet: the fused kernels must not take it (ε² term)
x2 = torchlc.from_terms({0: torch.tensor([0.5, -1.0]), 1: torch.tensor([1.0, 2.0])}, order=2)
for f in [torch.sin, torch.cos, torch.exp, torch.sigmoid, torch.nn.functional.silu, torch.nn.functional.gelu]:
    y = f(x2)
    assert 2 in torchlc.support(y) and bool((torchlc.coeff(y, 2) != 0).all()), f
print("ok")
"""


@pytest.mark.skipif(IN_INTERPRETER, reason="already inside the interpreter")
def test_fused_first_order_kernels_match_torch_formulas():
    r = run_in_interpreter(["-c", CASES], timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
