"""Markdown output: number formatting, tables, the environment table and ``--md`` sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

import torchlc

from .config import Config, _attention_dtype


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = msg.replace("|", "/")
    if len(msg) > 70:
        msg = msg[:67] + "..."
    return f"n/a: {type(e).__name__}: {msg}" if msg else f"n/a: {type(e).__name__}"


def _ms(t):
    return f"{t * 1e3:.3f}" if isinstance(t, float) else str(t)


def _us(t):
    return f"{t * 1e6:.1f}" if isinstance(t, float) else str(t)


def _ratio(a, b):
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return f"{a / b:.2f}×"
    return "n/a"


def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(cfg: Config) -> str:
    dev = torch.cuda.get_device_name() if cfg.device == "cuda" else _cpu_name()
    try:
        commit = (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or "unknown"
        )
    except Exception:
        commit = "unknown"
    rows = [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        (
            "torch",
            torch.__version__ + (f" (CUDA {torch.version.cuda})" if cfg.device == "cuda" else ""),
        ),
        ("torchlc", f"{torchlc.__version__} (git {commit})"),
        ("python", platform.python_version()),
        ("device", f"{cfg.device}: {dev}"),
        ("CPU count", f"{os.cpu_count()} (torch threads {torch.get_num_threads()})"),
        ("load average", " ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min, at start)"),
        (
            "dtype",
            "float32 for core/bytes/memory/small; " + " and ".join(cfg.dtypes) + " for models; "
            + str(_attention_dtype(cfg)).removeprefix("torch.") + " for attention",
        ),
        (
            "timer",
            f"torch.utils.benchmark.Timer.blocked_autorange(min_run_time={cfg.min_run_time}); "
            f"minimum over blocks of {cfg.rounds} rounds, the compared variants interleaved",
        ),
        ("command", "python -m torchlc.bench " + " ".join(sys.argv[1:])),
        # switches that change what runs (plane passes, fusion, launch path, CUDA graphs)
        ("TORCHLC_* set", ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                                    if k.startswith("TORCHLC_")) or "none (defaults)"),
    ]
    text = md_table(["", ""], rows)
    notes = cfg.notes + list(cfg.extra_notes)
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def write_section(path: Path, name: str, body: str):
    """Replace (or append) the ``## name`` section of the markdown file ``path``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"## {name}\n\n{body.strip()}\n"
    pat = re.compile(rf"^## {re.escape(name)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda m: block + "\n", text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
