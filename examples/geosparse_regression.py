"""GeoSparseNet on a regression task with geometric structure, beside its dense baselines.

Run:  python examples/geosparse_regression.py  [--epochs 30] [--shape 8 8] [--depth 4] [--k 9] [--activation tanh]

The target is a sum of smooth local interactions on an 8x8 grid (torchlc_geo.train.local_field_task).
Every model is trained with the same split, seed, optimizer, batch, epochs and stopping rule; the
dense baselines are matched to the sparse net by parameters, by FLOPs and by neurons.
"""

import argparse
import time

import torch

from torchlc_geo import GeoSparseConfig, GeoSparseNet, count_params, dense_baselines, seed_all
from torchlc_geo.train import TrainConfig, fit, local_field_task


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs=2, default=[8, 8])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (small models: 1 is fastest)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = local_field_task(tuple(args.shape), args.samples, seed=args.seed)
    n = args.shape[0] * args.shape[1]
    cfg = GeoSparseConfig(shape=tuple(args.shape), depth=args.depth, k=args.k, activation=args.activation,
                          seed=args.seed)
    tcfg = TrainConfig(epochs=args.epochs, seed=args.seed)
    seed_all(args.seed)
    models = {"GeoSparseNet": GeoSparseNet(n, 1, cfg)}
    if not args.no_baselines:
        seed_all(args.seed)
        for name, (m, _info) in dense_baselines(n, 1, cfg).items():
            models[f"dense {name}"] = m
    print(f"task: local field on a {args.shape[0]}x{args.shape[1]} grid, "
          f"{data.x_train.shape[0]} train / {data.x_test.shape[0]} test samples")
    print(f"{'model':<24}{'params':>10}{'test R2':>10}{'epochs':>8}{'train s':>9}")
    results = {}
    for name, model in models.items():
        t = time.perf_counter()
        r = fit(model, data, tcfg)
        results[name] = r
        print(f"{name:<24}{count_params(model):>10,}{r['test_r2']:>10.3f}{r['epochs_run']:>8}"
              f"{time.perf_counter() - t:>9.1f}")
    return results


if __name__ == "__main__":
    main()
