"""Direct Triton launches (``torchlc.kernels.launch``): the specialization key and argument order on any
machine; on CUDA, that direct launches give the numbers ``JITFunction.run`` gives, for every
specialization (alignment, ``n == 1``, ``n % 16``, dtypes)."""

import pytest
import torch

triton = pytest.importorskip("triton")

from torchlc.kernels import elementwise as E  # noqa: E402
from torchlc.kernels import launch as L  # noqa: E402


def test_key_separates_triton_specializations():
    x = torch.zeros(64)
    assert L._arg_key(x) == (torch.float32, True)
    assert L._arg_key(x[1:]) == (torch.float32, False)  # 4-byte offset: not 16-byte aligned
    assert L._arg_key(x.double()) == (torch.float64, True)
    assert L._arg_key(1) != L._arg_key(2) != L._arg_key(32)  # == 1, plain, divisible by 16
    assert L._arg_key(2**31) != L._arg_key(2**31 - 2**4)  # 64-bit vs 32-bit
    assert L._arg_key(16) == L._arg_key(48)
    assert L._arg_key(0.5) is float
    assert L._arg_key(True) is bool  # bools are not specialized as ints


def test_full_args_follow_the_signature():
    x, o = torch.zeros(4), torch.zeros(4)
    args = L._full_args(L._probe_kernel, (x, o, 4, 0.5), {"BLOCK": 128, "SHIFT": 3})
    assert args[:4] == [x, o, 4, 0.5]
    assert args[4:] == [3, 128]  # constexprs in signature order, not keyword order


def test_cpu_tensors_take_the_jit_path():
    calls = []

    class K:
        def __getitem__(self, grid):
            calls.append(grid)
            return lambda *a, **k: "jit"

    assert L.launch(K(), (1,), torch.zeros(2)) == "jit"
    assert calls == [(1,)]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 16, 1000, 4096])
@pytest.mark.parametrize("offset", [0, 1])
def test_direct_launches_match_jit(dtype, n, offset):
    g = torch.Generator(device="cuda").manual_seed(n)
    base = torch.randn(2, n + offset, generator=g, device="cuda").to(dtype)
    base[:, ::3] = 0  # ties at zero: relu keeps the sign of the ε¹ plane
    planes = base[:, offset:].contiguous() if offset == 0 else base.flatten()[offset : offset + 2 * n].view(2, n)
    p0, p1 = planes[0], planes[1]
    nonpos = ((p0 < 0) | ((p0 == 0) & (p1 <= 0))) & (p1 == p1)
    want = torch.where(nonpos, 0, planes)
    for _ in range(3):  # first call: JITFunction.run (cached); later calls: the direct launcher
        assert torch.equal(E.relu2(planes), want)
    assert L.direct_launches() is not None


@cuda
@pytest.mark.gpu
def test_probe_decides_once():
    E.relu2(torch.zeros(2, 8, device="cuda"))
    decided = L.direct_launches()
    assert decided in ("raw", "runner", False)
    assert L._probe() == decided
