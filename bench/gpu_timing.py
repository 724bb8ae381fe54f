"""What the speed benches share: synchronise, reset and read the GPU's peak memory, count
parameters. Every helper is a no-op (or None) on the CPU."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
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


def time_train_steps(
    task, accelerator, make_batch: Callable, steps: int, device: str, first_step: int = 0
) -> dict:
    """Run ``steps + 1`` of ``task.train_step`` on ``make_batch(step)`` batches from
    ``first_step`` on; the first warms up kernels and the allocator. Returns ``warmup_s``,
    ``s_per_step`` (mean of the timed steps, synchronised), ``peak_gib`` (peak since this
    call began), ``steps_timed`` and ``last_losses``."""
    reset_peak(device)
    times, values, warmup = [], {}, None
    for k in range(steps + 1):
        step = first_step + k
        batch = make_batch(step)
        sync(device)
        start = time.perf_counter()
        values = task.train_step(accelerator, batch, step)
        sync(device)
        if k:
            times.append(time.perf_counter() - start)
        else:
            warmup = time.perf_counter() - start
    return {
        "warmup_s": warmup,
        "s_per_step": sum(times) / len(times),
        "peak_gib": peak_gib(device),
        "steps_timed": len(times),
        "last_losses": values,
    }
