"""PyTorch's distributed engines train LC models: DDP and FSDP2 (fully_shard) over 2 gloo processes on
CPU end with the parameters of single-process training; non-reentrant activation checkpointing gives
the gradients of the plain run.

The loss uses both planes of ``model(x.nonstd(v))`` (value and directional derivative), as Sobolev
training does. FSDP2 re-gathers resharded parameters in pre-backward hooks on module outputs: an
LCTensor reports ``requires_grad`` from its planes and registers hooks on them, so those hooks fire.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import torchlc

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

STEPS, LR = 3, 0.1


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 2)).double()


def _batch(rank):
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g)
    return x, torch.randn(x.shape, dtype=torch.float64, generator=g)


def _loss(model, x, v):
    y = model(x.nonstd(v))
    return (torchlc.coeff(y, 0) ** 2).mean() + (torchlc.coeff(y, 1) ** 2).mean()


def _single_process(world):
    """The reference: one process, the mean of the ranks' losses (what DDP/FSDP gradients average)."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        loss = sum(_loss(model, *_batch(r)) for r in range(world)) / world
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach() for p in model.parameters()]


def _worker(rank, world, port, engine, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model()
        if engine == "ddp":
            model = torch.nn.parallel.DistributedDataParallel(model)
        else:
            from torch.distributed.fsdp import fully_shard

            for m in model:
                if isinstance(m, torch.nn.Linear):
                    fully_shard(m)  # default: reshard after forward, re-gather before backward
            fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        x, v = _batch(rank)
        for _ in range(STEPS):
            loss = _loss(model, x, v)
            opt.zero_grad()
            loss.backward()
            opt.step()
        params = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]
        if rank == 0:
            torch.save([p.detach() for p in params], out)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("engine", ["ddp", "fsdp2"])
def test_distributed_training_matches_single_process(engine, tmp_path):
    out = tmp_path / "params.pt"
    mp.spawn(_worker, args=(2, _free_port(), engine, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    for a, b in zip(got, _single_process(2)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_non_reentrant_checkpointing_gives_the_plain_gradients():
    from torch.utils.checkpoint import checkpoint

    model = _model()
    x, v = _batch(0)
    ref = torch.autograd.grad(_loss(model, x, v), list(model.parameters()))

    def loss_ckpt():
        y = checkpoint(model, x.nonstd(v), use_reentrant=False)
        return (torchlc.coeff(y, 0) ** 2).mean() + (torchlc.coeff(y, 1) ** 2).mean()

    got = torch.autograd.grad(loss_ckpt(), list(model.parameters()))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_lc_outputs_expose_their_planes_to_engine_hooks():
    lin = torch.nn.Linear(3, 2)
    y = lin(torch.randn(4, 3).nonstd())
    assert y.requires_grad  # the planes require grad
    seen = []
    h = y.register_hook(lambda g: seen.append(g.shape))
    torchlc.coeff(y, 1).sum().backward()
    assert seen == [(2, 4, 2)]  # the hook received the planes' gradient
    h.remove()
    with torch.no_grad():
        assert not lin(torch.randn(4, 3).nonstd()).requires_grad
    x = torch.randn(3).nonstd()
    x.requires_grad = True  # on the planes, which become autograd leaves (Wav2Vec2 does this)
    assert x.requires_grad and torchlc.coeffs(x).is_leaf and torchlc.coeffs(x).requires_grad
    y.requires_grad_()  # planes computed from parameters: they require grad already
    with pytest.raises(RuntimeError, match="not autograd leaves"):
        y.requires_grad_(False)


def test_distributed_example_runs_under_torchrun(tmp_path):
    import pathlib
    import subprocess
    import sys

    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "distributed_sobolev.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(example), "--engine", "fsdp2", "--steps", "60"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "OK" in r.stdout and not list(tmp_path.iterdir())  # learned, and wrote nothing


def test_full_backward_hooks_do_not_cost_parameter_gradients():
    # torch wraps a hooked module's outputs in an autograd.Function that returns them unchanged; the
    # LC planes must stay connected through it (at 14af904 the weight got no gradient at all)
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64).nonstd()
    plain, hooked = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    hooked.load_state_dict(plain.state_dict())
    hooked.register_full_backward_hook(lambda m, gi, go: None)
    for m in (plain, hooked):
        torchlc.coeff(m(x), 1).sum().backward()
    torch.testing.assert_close(hooked.weight.grad, plain.weight.grad, rtol=0, atol=0)
