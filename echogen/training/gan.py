"""What adversarial tasks share: one generator pass and one discriminator pass per micro-batch.

A GAN task on the engine (:class:`echogen.training.vae.VAETask` today; D'ARTAGNAN's generator
and SPADE next) does its own two backward passes inside ``train_step``. The pieces that are
easy to get subtly wrong live here once:

- the generator's adversarial term must not train the discriminator, and under DDP the
  discriminator must not expect a gradient from that pass: :func:`discriminator_frozen`
  freezes the bare (unwrapped) module for the generator's loss;
- gradient accumulation skips the all-reduce of every micro-batch but the last:
  :func:`accumulating`;
- the discriminator's optimiser steps only once the discriminator has joined
  (``disc_start``): :func:`step` takes each optimiser with whether it is active;
- every random draw of a step is a function of ``(seed, stream, step, process)``, never of
  a generator's state, so a resumed run draws the same: :func:`seeded`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn


def accumulating(accelerator: Accelerator, module: nn.Module, syncing: bool):
    """``accelerator.no_sync(module)`` for every micro-batch but the last (``syncing``)."""
    return nullcontext() if syncing else accelerator.no_sync(module)


@contextmanager
def discriminator_frozen(accelerator: Accelerator, discriminator: nn.Module) -> Iterator[nn.Module]:
    """The bare discriminator, frozen for the generator's pass, unfrozen afterwards.

    Calling the unwrapped module (not the DDP wrapper) keeps DDP from waiting for gradients
    the generator's pass never produces.
    """
    plain = accelerator.unwrap_model(discriminator)
    plain.requires_grad_(False)
    try:
        yield plain
    finally:
        plain.requires_grad_(True)


def step(*optimizers: tuple[torch.optim.Optimizer, bool]) -> None:
    """Step and clear each ``(optimizer, active)`` pair whose ``active`` is true."""
    for optimizer, active in optimizers:
        if active:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def seeded(seed: int, stream: int, *keys: int) -> tuple[np.random.Generator, int]:
    """A numpy generator of ``(seed, stream, *keys)`` and a torch seed drawn from it."""
    rng = np.random.default_rng([int(seed), stream, *(int(k) for k in keys)])
    return rng, int(rng.integers(2**62))
