"""Reproducibility and environment helpers."""

from __future__ import annotations

import os
import platform
import random

import torch

__all__ = ["environment", "seed_all"]


def seed_all(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy (if installed) and torch (CPU and CUDA) RNGs.

    ``deterministic=True`` also asks torch for deterministic algorithms (warn-only).

    Example:
        >>> seed_all(3); a = torch.rand(2)
        >>> seed_all(3); torch.equal(a, torch.rand(2))
        True
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG is the point
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def environment() -> dict:
    """The environment a benchmark ran in: versions, CPU/GPU, driver/CUDA, threads.

    Example:
        >>> "torch" in environment()
        True
    """
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   capability=f"{p.major}.{p.minor}")
        try:
            import subprocess

            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # pragma: no cover
            env["driver"] = None
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env
