"""How arithmetic runs, for training, sampling and metrics alike.

One home for the process-wide numeric switches every layer needs (training, inference and
metrics import it; it imports nothing of echogen):

- :func:`deterministic`: deterministic kernels inside a block (the trainer's and the sampling
  rule's), restored afterwards;
- :func:`tf32_off`: TF32 matmuls and convolutions off inside a block (StyleGAN-V's metric
  setting, and the RV-failure reference's TF1-era arithmetic);
- :data:`AUTOCAST`: the autocast dtype of each ``precision`` name a sampler accepts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# A sampler's ``precision`` -> the autocast dtype of its denoiser (None: no autocast, fp32).
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the block (warn-only where none exists), then restore.

    Sets cuBLAS's fixed workspace (which must happen before CUDA starts, so enter the block
    before the first CUDA operation), deterministic algorithms (which include cuDNN's) and
    no cuDNN autotuning. A given seed, batch shape and precision then repeat bit for bit on
    one device. On the CPU the flags change nothing measurable."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


@contextmanager
def tf32_off() -> Iterator[None]:
    """TF32 matmuls and convolutions off inside the block, then restore."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
