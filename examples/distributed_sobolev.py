"""Sobolev training with PyTorch's distributed engines: fit a function *and its derivative*.

Each step runs the model once on ``x.nonstd(v)``: the ε⁰ plane of the output is the value, the ε¹ plane
the exact directional derivative along v. The loss matches both to a target (sin(3x)·cos(2y) and its
directional derivative), so the model learns the function and its slope. The model is wrapped in
DistributedDataParallel or FSDP2 (``fully_shard`` on every Linear and on the root, default
resharding); each rank draws its own batch.

Run (CPU, gloo; or GPUs, nccl — picked automatically):

    torchrun --nproc_per_node 2 examples/distributed_sobolev.py              # DDP
    torchrun --nproc_per_node 2 examples/distributed_sobolev.py --engine fsdp2
    python examples/distributed_sobolev.py                                   # one process

It prints the loss as it trains (rank 0) and exits non-zero if the final value or slope error is not
well below the starting one. It writes nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import torch
import torch.distributed as dist

import torchlc


def target(xy):
    """f(x, y) = sin(3x)·cos(2y) and its gradient, for the directional derivative."""
    x, y = xy[:, 0], xy[:, 1]
    f = torch.sin(3 * x) * torch.cos(2 * y)
    grad = torch.stack([3 * torch.cos(3 * x) * torch.cos(2 * y), -2 * torch.sin(3 * x) * torch.sin(2 * y)], 1)
    return f, grad


def make_model():
    torch.manual_seed(0)  # the same initial weights on every rank
    return torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                               torch.nn.Linear(64, 1))


def sobolev_loss(model, xy, v):
    out = model(xy.nonstd(v)).squeeze(-1)
    value, slope = torchlc.coeff(out, 0), torchlc.coeff(out, 1)  # f(xy) and ∇f(xy)·v, exactly
    f, grad = target(xy)
    return ((value - f) ** 2).mean(), ((slope - (grad * v).sum(1)) ** 2).mean()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=["ddp", "fsdp2"], default="ddp")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256, help="points per rank and step")
    args = ap.parse_args(argv)

    distributed = "RANK" in os.environ  # started by torchrun
    cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)

    model = make_model().to(device)
    if distributed and args.engine == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    elif distributed:
        from torch.distributed.fsdp import fully_shard

        for m in model:
            if isinstance(m, torch.nn.Linear):
                fully_shard(m)
        fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator(device=device).manual_seed(1000 + rank)  # each rank its own data

    first = last = None
    for step in range(args.steps + 1):
        xy = torch.rand(args.batch, 2, device=device, generator=gen) * 2 - 1
        v = torch.nn.functional.normalize(torch.randn(args.batch, 2, device=device, generator=gen), dim=1)
        value_err, slope_err = sobolev_loss(model, xy, v)
        loss = value_err + slope_err
        opt.zero_grad()
        loss.backward()
        opt.step()
        errs = torch.stack([value_err.detach(), slope_err.detach()])
        if distributed:
            dist.all_reduce(errs)
            errs /= world
        if first is None:
            first = errs.tolist()
        last = errs.tolist()
        if rank == 0 and step % max(1, args.steps // 10) == 0:
            print(f"[{args.engine if distributed else 'single'} × {world}] step {step:4d}: "
                  f"value MSE {last[0]:.4f}  slope MSE {last[1]:.4f}", flush=True)
    ok = last[0] < 0.5 * first[0] and last[1] < 0.5 * first[1]
    if rank == 0:
        print(f"value MSE {first[0]:.4f} -> {last[0]:.4f}, slope MSE {first[1]:.4f} -> {last[1]:.4f}: "
              + ("OK" if ok else "FAILED to learn"))
    if distributed:
        # release the sharded model (its parameters hold the device mesh and so the process group)
        # and wait for every rank before the group is torn down: left to the interpreter's exit, a
        # rank sometimes aborted there (exit code -6 with FSDP2 on gloo, torch 2.13)
        del model, opt
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
