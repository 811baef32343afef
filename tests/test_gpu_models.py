"""On a CUDA device: torchlc.compile of real architectures (torchvision resnet50, vit_b_16,
convnext_tiny; transformers GPT-2 and a Llama-style decoder with grouped-query attention) matches
eager LC, value and tangent planes. Small configurations of the same architectures keep the compile
time down; skipped without CUDA or without the library."""

from __future__ import annotations

import os

import pytest
import torch

import torchlc
from torchlc.bench.models import _fastpath

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _vision(name):
    tv = pytest.importorskip("torchvision")
    kw = {"image_size": 64} if name == "vit_b_16" else {}
    return getattr(tv.models, name)(num_classes=10, **kw), torch.randn(2, 3, 64, 64)


def _gpt2():
    tr = pytest.importorskip("transformers")
    cfg = tr.GPT2Config(n_layer=2, n_embd=128, n_head=4, n_positions=64, vocab_size=100)
    return tr.GPT2Model(cfg), torch.randn(2, 32, 128)


def _llama():
    tr = pytest.importorskip("transformers")
    cfg = tr.LlamaConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=256, vocab_size=100, max_position_embeddings=64)
    return tr.LlamaModel(cfg), torch.randn(2, 32, 128)


MODELS = {"resnet50": lambda: _vision("resnet50"), "vit_b_16": lambda: _vision("vit_b_16"),
          "convnext_tiny": lambda: _vision("convnext_tiny"), "gpt2": _gpt2, "llama": _llama}


@pytest.fixture
def full_fp32(monkeypatch):
    """fp32 matmuls and convolutions in full precision: cuDNN's convolutions default to TF32 (10-bit
    mantissas), and eager and compiled runs pick different algorithms, so they would differ at 1e-3."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_real_models_match_eager(name, full_fp32):
    torch.manual_seed(0)
    model, x = MODELS[name]()
    model = model.cuda().eval()
    x = x.cuda()
    v = torch.randn_like(x)
    hf = name in ("gpt2", "llama")

    def run(m, inp):
        out = m(inputs_embeds=inp) if hf else m(inp)
        return out.last_hidden_state if hf else out

    with torch.no_grad():
        eager = run(model, x.nonstd(v))
        compiled = torchlc.compile(lambda inp: run(model, inp))
        got = compiled(x.nonstd(v))
        # the reference through the composite attention path: on CUDA the fused kernels that eval
        # nn.MultiheadAttention (_native_multi_head_attention) and SDPA (efficient, flash) pick have
        # no forward AD, so torch.func.jvp of ViT and GPT-2 would raise there
        with _fastpath(False):
            ref = torch.func.jvp(lambda t: run(model, t), (x,), (v,))
    for q, r in ((0, ref[0]), (1, ref[1])):
        torch.testing.assert_close(torchlc.coeff(got, q), torchlc.coeff(eager, q), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torchlc.coeff(eager, q), r, rtol=2e-3, atol=2e-3)
