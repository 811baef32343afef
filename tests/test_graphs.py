"""Eager CUDA graphs of multi-kernel jets (torchlc/_graphs.py): a replayed graph must give exactly the
eager result, follow in-place weight updates and new input values, and fall back to eager when it
cannot capture. The CUDA tests are skipped without a GPU."""

import pytest
import torch

import torchlc
from torchlc import _graphs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _fresh_cache():
    old = torchlc.set_cuda_graphs(True)
    _graphs.clear()
    yield
    torchlc.set_cuda_graphs(old)


def test_cpu_tensors_run_eagerly_and_are_not_cached():
    calls = []

    def fn(t):
        calls.append(1)
        return t * 2

    t = torch.arange(3.0)
    for _ in range(3):
        assert torch.equal(_graphs.graphed("cpu", fn, (t,), (), ()), torch.tensor([0.0, 2.0, 4.0]))
    assert len(calls) == 3 and not _graphs._cache


def test_set_cuda_graphs_returns_the_previous_setting_and_clears():
    _graphs._cache["k"] = _graphs._SEEN
    assert torchlc.set_cuda_graphs(False) is True
    assert not _graphs._cache
    assert torchlc.set_cuda_graphs(True) is False


def _encoder(dtype=torch.float32, norm_first=False, activation="relu"):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first,
                                             activation=activation)
    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to("cuda", dtype).eval()


def _eager(model, *args, **kwargs):
    """The model with graphs off, keeping the captured ones (set_cuda_graphs(False) would free them)."""
    old, _graphs._enabled = _graphs._enabled, False
    try:
        return model(*args, **kwargs)
    finally:
        _graphs._enabled = old


def _assert_same(y, ref):
    for k in (0, 1):
        assert torch.equal(torchlc.coeff(y, k), torchlc.coeff(ref, k))


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_replays_the_eager_kernels(dtype, norm_first, activation):
    model = _encoder(dtype, norm_first, activation)
    with torch.no_grad():
        for seed in range(4):  # eager, capture, replay, replay: new values every call
            g = torch.Generator(device="cuda").manual_seed(seed)
            x = torch.randn(3, 5, 32, device="cuda", dtype=dtype, generator=g)
            v = torch.randn(3, 5, 32, device="cuda", dtype=dtype, generator=g)
            _assert_same(model(x.nonstd(v)), _eager(model, x.nonstd(v)))
    assert sum(isinstance(e, _graphs._Graph) for e in _graphs._cache.values()) == 2  # one per layer


@cuda
def test_replay_reads_weights_updated_in_place_and_masks_by_value():
    model = _encoder()
    x = torch.randn(3, 5, 32, device="cuda").nonstd(torch.randn(3, 5, 32, device="cuda"))
    with torch.no_grad():
        for i in range(4):
            model.layers[0].linear1.weight.add_(0.01)
            mask = torch.zeros(3, 5, dtype=torch.bool, device="cuda")
            mask[:, 5 - 1 - i % 3 :] = True  # padding positions change between calls
            _assert_same(model(x, src_key_padding_mask=mask), _eager(model, x, src_key_padding_mask=mask))


@cuda
def test_inference_mode_and_no_grad_calls_mix():
    model = _encoder()
    x = torch.randn(3, 5, 32, device="cuda").nonstd(torch.randn(3, 5, 32, device="cuda"))
    for ctx in (torch.inference_mode, torch.inference_mode, torch.no_grad, torch.no_grad, torch.inference_mode):
        with ctx():
            _assert_same(model(x), _eager(model, x))


@cuda
def test_a_host_sync_falls_back_to_eager():
    from torchlc.kernels import launch, relu2

    # the Triton launch probe (run at a process's first launch) syncs: inside the jet's sync check it
    # must not count as the jet's sync. Forget the probe and the compiled launches to replay that.
    launch._state["direct"] = None
    launch._compiled.clear()

    def fn(t):
        return relu2(t.view(2, -1)).reshape(-1) * t.sum().item()

    t = torch.ones(4, device="cuda")
    for _ in range(3):
        assert torch.equal(_graphs.graphed("sync", fn, (t,), (), ()), torch.full((4,), 4.0, device="cuda"))
    assert _graphs._FAILED in _graphs._cache.values()
    assert torch.randn(2, device="cuda").shape == (2,)  # no capture was tried: the RNG is untouched
    assert launch.direct_launches() == launch._probe()  # decided as without the sync check


@cuda
def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(_graphs, "MAX_GRAPHS", 2)
    for n in (1, 2, 3, 4):
        t = torch.ones(n, device="cuda")
        for _ in range(2):
            assert torch.equal(_graphs.graphed("n", lambda a: a + 1, (t,), (), ()), t + 1)
    assert len(_graphs._cache) == 2
    # the pool outlives evictions while a graph uses it, and a fresh one follows the last eviction
    _graphs._cache.popitem(last=False)
    _graphs._remember("k", _graphs._SEEN)
    _graphs._remember("k2", _graphs._SEEN)
    assert not _graphs._pools
    t = torch.ones(5, device="cuda")
    for _ in range(2):
        assert torch.equal(_graphs.graphed("n", lambda a: a + 1, (t,), (), ()), t + 1)


@cuda
def test_no_warning_reaches_the_user():
    """torch warns once per process when the sync debug mode is first set ("a prototype feature"):
    torchlc's own uses (the launch probe, the graphs' sync check) must not show it. A fresh process,
    warnings as errors."""
    import subprocess
    import sys

    code = """
import warnings
import torch
import torchlc
warnings.simplefilter("error")
x = torch.randn(4, 8, device="cuda")
torch.relu(x.nonstd(torch.randn_like(x)))
layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
m = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).cuda().eval()
with torch.no_grad():
    for _ in range(3):
        m(torch.randn(2, 5, 32, device="cuda").nonstd())
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@cuda
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_encoder_runs_the_eager_jet(mode, dtype):
    """Under torchlc.compile each fused layer is one opaque op running the eager jet (its own CUDA
    graph in default mode; kernels captured into Inductor's graph under reduce-overhead): results
    are the eager results bit for bit."""
    model = _encoder(dtype)
    f = torchlc.compile(model, mode=mode)
    with torch.no_grad():
        for seed in range(4):  # warm-up, capture, replay
            g = torch.Generator(device="cuda").manual_seed(seed)
            x = torch.randn(3, 5, 32, device="cuda", dtype=dtype, generator=g)
            v = torch.randn(3, 5, 32, device="cuda", dtype=dtype, generator=g)
            _assert_same(f(x.nonstd(v)), _eager(model, x.nonstd(v)))
