"""The one-pass first-order max-pool kernel (CUDA; the Triton interpreter here) against the formulas of
``ops.pool`` (windows gathered, reduced in the field's order, then torch's NaN rule): the same values
and indices, bit for bit, for kernels, strides, paddings, dilations and ceil_mode, on inputs full of
ties (small integers in both planes) and with ±inf and NaN in either plane."""

import os

import pytest
from interpreter import run as run_in_interpreter

pytest.importorskip("triton")

CASES = r"""
import itertools, torch, torch.nn.functional as F, torchlc
from torchlc.kernels import jets
from torchlc.ops import pool
assert jets.INTERPRET
configs = [((2, 3, 9, 8), 3, 2, 1, 1, False), ((2, 3, 9, 8), (3, 2), (2, 1), (1, 0), (1, 2), True),
           ((1, 2, 7, 7), 2, 2, 0, 1, True), ((2, 2, 5, 6), 3, 1, 1, 2, False), ((3, 5, 5), 2, 2, 1, 1, True),
           ((2, 4, 11, 13), 3, 2, 1, 1, True), ((1, 1, 1, 1), 1, 1, 0, 1, False), ((0, 2, 5, 5), 2, 2, 0, 1, False)]
calls = []
real = jets.max_pool2d_jet
def counted(*a):
    res = real(*a)
    if res is not None:
        calls.append(1)
    return res
jets.max_pool2d_jet = counted
n_cases = 0
for (shape, k, s, p, d, ceil), dtype, specials, cl in itertools.product(
        configs, (torch.float32, torch.float64), range(3), (False, True)):
    if cl and len(shape) != 4:
        continue
    g = torch.Generator().manual_seed(hash((shape, specials)) % 1000)
    x = torch.randint(-2, 3, shape, generator=g).to(dtype)
    v = torch.randint(-2, 3, shape, generator=g).to(dtype)
    if specials and x.numel() >= 8:
        special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0], dtype=dtype)
        i = torch.randint(0, x.numel(), (max(2, x.numel() // 6),), generator=g)
        (x if specials == 1 else v).view(-1)[i] = special[torch.arange(i.numel()) % 4]
    if cl:  # channels-last planes: read in place, channels-last results
        x, v = x.to(memory_format=torch.channels_last), v.to(memory_format=torch.channels_last)
    X = x.nonstd(v)
    if cl and min(shape[0], shape[1], shape[2] * shape[3]) > 1:
        assert X.lc_planes()[0].is_contiguous(memory_format=torch.channels_last) and not X.lc_planes()[0].is_contiguous()
    with torch.no_grad():
        calls.clear()
        got, gi = F.max_pool2d(X, k, s, p, d, ceil, return_indices=True)
        assert calls, "the kernel was not taken"
        jets.max_pool2d_jet = lambda *a: None  # the formulas
        want, wi = F.max_pool2d(X, k, s, p, d, ceil, return_indices=True)
        jets.max_pool2d_jet = counted
    a, b = torchlc.coeffs(got), torchlc.coeffs(want)
    assert a.shape == b.shape and torch.equal(a.nan_to_num(7.5), b.nan_to_num(7.5)), (shape, k, s, p, d, ceil, dtype, specials)
    assert torch.equal(a.signbit(), b.signbit()) and torch.equal(gi, wi), (shape, k, s, p, d, ceil, dtype, specials)
    if not specials:  # and torch's own max pooling of the ε⁰ plane, in its layout
        ref = F.max_pool2d(x, k, s, p, d, ceil)
        assert torch.equal(a[0], ref)
        assert a[0].stride() == ref.stride() or a[0].numel() <= 1 or min(a[0].shape[-3], a[0].shape[-1] * a[0].shape[-2]) == 1, (a[0].stride(), ref.stride())
    n_cases += 1
# autograd recording: the formulas (the kernel has no backward), and gradients flow
x = torch.randn(1, 2, 6, 6, requires_grad=True)
calls.clear()
y = F.max_pool2d(x.nonstd(torch.randn(1, 2, 6, 6)), 2)
assert not calls
torchlc.coeff(y, 0).sum().backward()
assert x.grad is not None and x.grad.sum() == 9 * 2
# traced with grad off (torchlc.compile's inference trace): the opaque op, on the devices listed
pool.OPAQUE_POOL_DEVICES = {"cpu"}
m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True))
x = torch.randn(2, 2, 12, 11)
v = torch.randn(2, 2, 12, 11)
v.view(-1)[::13] = float("nan")
with torch.no_grad():
    want = m(x.nonstd(v))
    f = torchlc.compile(m, fullgraph=True, dynamic=False)
    f(x.nonstd(v))  # traced and compiled
    calls.clear()
    got = f(x.nonstd(v))
    assert calls, "the compiled graph did not call the kernel"
assert torch.equal(torchlc.coeffs(got).nan_to_num(7.5), torchlc.coeffs(want).nan_to_num(7.5))
print("ok", n_cases)
"""


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="already inside the interpreter")
def test_max_pool_jet_kernel_matches_the_formulas():
    r = run_in_interpreter(["-c", CASES], timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
