"""Supervised video tasks for the trainer engine: clips in, one target per video out.

The EF regressors and the downstream classifiers (and, next, the RV-failure streams and
D'ARTAGNAN's expert) train a video network on clip datasets with per-item randomness drawn
from ``(seed, epoch, index)`` (:class:`~echogen.data.ef_clips.EFClipDataset`).
:class:`ClipTask` holds what they share: the epoch's data order as a pure function of
``(seed, epoch)``, this process's loaders, the optimiser, one optimiser step and the
gathering of validation outputs across processes. A subclass adds its loss, its validation
values and its export.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.utils.data import DataLoader, Dataset

from echogen.training.engine import Task

OPTIMIZERS = ("sgd", "adam", "adamw")


DECAY_ON = ("all", "kernels")


def make_optimizer(
    model: torch.nn.Module,
    optimizer: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    decay_on: str = "all",
) -> torch.optim.Optimizer:
    """``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"`` (decoupled weight decay) over
    every parameter of ``model``; ``decay_on`` ``"kernels"`` decays only the weights of
    convolutions and linear layers (parameters of two or more dimensions: Keras' kernels),
    not biases or normalisation parameters."""
    if decay_on not in DECAY_ON:
        raise ValueError(f"decay_on must be one of {DECAY_ON}, got {decay_on!r}")
    params = list(model.parameters())
    if decay_on == "kernels":
        params = [
            {"params": [p for p in params if p.ndim >= 2]},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def epoch_order(
    n: int, steps_per_epoch: int, batch_size: int, accelerator: Accelerator, seed: int, epoch: int
) -> list[int]:
    """This process's dataset indices for one epoch, batch after batch.

    Global batch ``b`` is ``perm[b*G:(b+1)*G]`` with ``G = batch_size * processes``; process
    ``r`` takes its ``r``-th slice, so the global order is fixed by ``(seed, epoch)`` alone.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    world = accelerator.num_processes
    batches = perm[: steps_per_epoch * batch_size * world].reshape(steps_per_epoch, world, -1)
    return batches[:, accelerator.process_index].reshape(-1).tolist()


def epoch_loader(dataset, steps_per_epoch: int, batch_size: int, accelerator: Accelerator,
                 seed: int, epoch: int, start: int,
                 num_workers: int = 0) -> DataLoader:  # fmt: skip
    """This process's loader for ``epoch`` from batch ``start`` on, in :func:`epoch_order`.

    The loader has its own generator: creating it must not draw from the global RNG (which
    dropout uses), or a mid-epoch resume would shift every later draw.
    """
    order = epoch_order(len(dataset), steps_per_epoch, batch_size, accelerator, seed, epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=order[start * batch_size:],
                      num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip


def rows_digest(rows: pd.DataFrame, columns: dict[str, type]) -> str:
    """sha256 of the rows' ``columns`` (each cast by its type: ``str``, ``float``, ``int``), in
    order: the training set a checkpoint belongs to."""
    cast = list(columns.values())
    values = zip(*(rows[c] for c in columns), strict=True)
    listing = [[kind(v) for kind, v in zip(cast, row, strict=True)] for row in values]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def on_device(clips, device) -> list[torch.Tensor]:
    """A batch's model inputs on ``device``: one clip tensor, or one per stream (a list)."""
    if isinstance(clips, torch.Tensor):
        return [clips.to(device)]
    return [c.to(device) for c in clips]


class ClipTask(Task):
    """A supervised task over two clip datasets (TRAIN with augmentation, VAL without).

    Subclasses implement :meth:`make_model`, :meth:`loss` and :meth:`validate` (with
    :meth:`validation_outputs`) and :meth:`export`; they may override :meth:`start_epoch`
    (an epoch-wise learning rate) and :meth:`after_step` (a step-wise scheduler).

    Args:
        train_set: yields ``(clip, target)`` (``clip`` a tensor, or a tuple of tensors that
            the model takes as separate inputs); has ``set_epoch(epoch)``.
        val_set: yields ``(clip, target)`` without augmentation.
        train: the task's training settings: ``batch_size`` (clips per process per step),
            ``num_workers`` and the :func:`make_optimizer` fields (``optimizer``, ``lr``,
            ``momentum``, ``weight_decay``, ``decay_on``).
        steps_per_epoch: optimiser steps per epoch (all processes together).
        seed: the data order's seed.
    """

    def __init__(
        self, train_set: Dataset, val_set: Dataset, train, steps_per_epoch: int, seed: int
    ):
        self.train_set, self.val_set = train_set, val_set
        self.batch_size, self.num_workers = train.batch_size, train.num_workers
        self.steps_per_epoch, self.seed = steps_per_epoch, seed
        self.optimizer_kwargs = {
            "optimizer": train.optimizer,
            "lr": train.lr,
            "momentum": getattr(train, "momentum", 0.0),
            "weight_decay": train.weight_decay,
            "decay_on": getattr(train, "decay_on", "all"),
        }
        self.model = self.optimizer = None

    # -------------------------------------------------------------- for subclasses

    def make_model(self) -> torch.nn.Module:
        """The network, with any published or pretrained weights loaded."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch (``output`` in fp32)."""
        raise NotImplementedError

    def register(self, accelerator: Accelerator, optimizer: torch.optim.Optimizer) -> None:
        """Hook after the optimiser is built (e.g. a scheduler registered for checkpoints)."""

    def start_epoch(self, epoch: int) -> None:
        """Hook at the start of every epoch, before its batches."""

    def after_step(self) -> None:
        """Hook after every optimiser step."""

    # -------------------------------------------------------------- the engine's interface

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        model = self.make_model()
        optimizer = make_optimizer(model, **self.optimizer_kwargs)
        self.register(accelerator, optimizer)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        return self.model

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        self.train_set.set_epoch(epoch)
        self.start_epoch(epoch)
        self.model.train()
        return epoch_loader(self.train_set, self.steps_per_epoch, self.batch_size, accelerator,
                            self.seed, epoch, start, self.num_workers)  # fmt: skip

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        clips, target = batch
        output = self.model(*on_device(clips, accelerator.device))
        loss = self.loss(output.float(), target.to(accelerator.device))
        accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.after_step()
        return {"train_loss": accelerator.reduce(loss.detach(), "mean").item()}

    @torch.no_grad()
    def validation_outputs(self, accelerator: Accelerator) -> list[tuple[list, list]]:
        """``(output, target)`` as lists for the single clip of every VAL video, in the order
        of the processes' shares gathered (each process scores every ``world``-th video)."""
        net = accelerator.unwrap_model(self.model)  # no DDP collectives: shares differ
        net.eval()
        world, rank = accelerator.num_processes, accelerator.process_index
        loader = DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            sampler=list(range(rank, len(self.val_set), world)),
            num_workers=self.num_workers,
            generator=torch.Generator(),  # leaves the global RNG alone
        )
        pairs = []
        for clips, target in loader:
            output = net(*on_device(clips, accelerator.device)).float().cpu()
            pairs += list(zip(output.tolist(), target.tolist(), strict=True))
        return gather_object(pairs)
