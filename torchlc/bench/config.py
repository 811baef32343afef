"""The benchmark's sizes and options (:class:`Config`, from the command line) and its sections."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SECTIONS = ("core", "bytes", "memory", "small", "models", "attention", "real", "jet", "ragged")


@dataclass
class Config:
    device: str = "cpu"
    quick: bool = False
    min_run_time: float = 0.5
    rounds: int = 3
    n_core: int = 10**6
    small: int = 64
    mlp_width: int = 1024
    mlp_batch: int = 4096
    tf_d: int = 256
    tf_layers: int = 4
    tf_heads: int = 4
    tf_seq: int = 128
    tf_batch: int = 32
    tf_ff: int = 2048
    attention: tuple = ((8, 16, 1024, 64), (4, 16, 4096, 64))  # (B, H, L, D)
    compile: bool = True
    dtypes: tuple = ("float32", "bfloat16")
    models: tuple = ()  # model names to run (default: all)
    modes: tuple = ()  # model modes to run, e.g. "compiled, CUDA graphs" (default: all)
    notes: list = field(default_factory=list)
    extra_notes: tuple = ()

    @classmethod
    def make(cls, args) -> Config:
        c = cls(device=args.device)
        if args.quick:
            c.quick = True
            c.min_run_time = 0.01
            c.rounds = 1
            c.n_core = 10**4
            c.small = 8
            c.mlp_width, c.mlp_batch = 32, 16
            c.tf_d, c.tf_layers, c.tf_heads, c.tf_seq, c.tf_batch, c.tf_ff = 16, 1, 2, 8, 2, 32
            c.attention = ((1, 2, 8, 16),)
            c.compile = False
            c.notes.append("--quick: tiny sizes for the CI smoke test; numbers are not meaningful")
        elif c.device == "cpu":
            c.mlp_batch, c.tf_batch = 1024, 8
            c.attention = ((2, 8, 512, 64),)
            c.notes.append(
                "CPU: MLP batch 1024 (not 4096), Transformer batch 8 (not 32) and attention B 2, H 8, "
                "L 512 so the run finishes in minutes; every other size is as in the issues"
            )
        c.extra_notes = tuple(args.note or ())
        if args.rounds is not None:
            c.rounds = args.rounds
        if args.min_run_time is not None:
            c.min_run_time = args.min_run_time
        if args.n is not None:
            c.n_core = args.n
        if args.compile is not None:
            c.compile = args.compile
        if args.dtypes:
            c.dtypes = tuple(args.dtypes.split(","))
        c.models = tuple(m.strip() for m in (args.models or "").split(",") if m.strip())
        c.modes = tuple(m.strip() for m in (args.modes or "").split(";") if m.strip())
        return c


def _attention_dtype(cfg: Config):
    """bf16 on CUDA, where the flash-style jet runs (half precision only); float32 on CPU."""
    return torch.bfloat16 if cfg.device == "cuda" else torch.float32
