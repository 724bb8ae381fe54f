"""What the speed benches share: synchronise, reset and read the GPU's peak memory, count
parameters. Every helper is a no-op (or None) on the CPU."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import torch


def sync(device: str) -> None:
    """Wait for the GPU's queued work (timings end here)."""
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    """Free cached blocks and restart the peak-memory count."""
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    """Peak GPU memory allocated since :func:`reset_peak`, in GiB (None on the CPU)."""
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def emit(rows: list[dict], row: dict, device: str, out: str | None) -> None:
    """Free the finished row's memory, then print ``row`` as one JSON line and rewrite
    ``out`` (when given) with every row so far, so a run cut short keeps what it measured."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    rows.append(row)
    print(json.dumps(row), flush=True)
    if out:
        Path(out).write_text(json.dumps({"rows": rows}, indent=2))
