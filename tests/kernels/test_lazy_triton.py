"""Triton is imported only when a kernel is first needed: ``import torchlc`` / ``import torchlc_geo`` and
CPU work never import it (nor the benchmark and coverage tools); a kernel's first launch does."""

import importlib.util
import os
import subprocess
import sys

import pytest

CPU_WORK = r"""
import sys
import torch
import torchlc, torchlc_geo
assert "triton" not in sys.modules, "import torchlc, torchlc_geo imported triton"
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
x = torch.randn(3, 4)
y = mlp(x.nonstd())
assert torchlc.is_lc(y)
torch.abs(x.nonstd()) * x.nonstd()
torch.softmax(x.nonstd(), -1)
attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
q = torch.randn(1, 3, 8).nonstd()
attn(q, q, q, need_weights=False)
net = torchlc_geo.GeoSparseNet(16, 2, torchlc_geo.GeoSparseConfig(shape=(4, 4), depth=1, k=4))
net(torch.randn(5, 16))
net(torch.randn(5, 16).nonstd())
loaded = sorted(m for m in sys.modules if m == "triton" or m.startswith("triton.")
                or m.startswith(("torchlc.bench", "torchlc.coverage", "torchlc.kernels._triton")))
assert not loaded, loaded
print("ok")
"""

FIRST_KERNEL = r"""
import sys
import torch
import torchlc
assert "triton" not in sys.modules
from torchlc.kernels import usable
p = torch.randn(2, 16)
assert usable(p)  # the check itself imports triton (once: an eligible tensor reached it)
assert "triton" in sys.modules and "torchlc.kernels._triton_elementwise" not in sys.modules
torch.relu(torch.randn(16).nonstd())  # the fused relu: the kernels' module is loaded on launch
assert "torchlc.kernels._triton_elementwise" in sys.modules
print("ok")
"""


def _run(code, **env):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_import_and_cpu_work_do_not_import_triton():
    r = _run(CPU_WORK)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_the_first_kernel_imports_triton():
    r = _run(FIRST_KERNEL, TRITON_INTERPRET="1")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
