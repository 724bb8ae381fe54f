"""Training the 2-D U-Net segmenter of cardiGAN's experiment on the trainer engine.

The training pairs come from any number of sources (:func:`echogen.data.camus.pair_rows`):
the real CAMUS ``train`` split, a synthetic image dataset made from the TRAIN masks, or
both. The loss is MONAI's ``DiceCELoss`` (softmax Dice plus cross-entropy, one-hot
targets), Adam at a constant rate; validation (every epoch) is the mean Dice of the three
structures on the real ``valid`` split, and ``select: best_val`` (the default) exports the
weights of the best epoch. The data order is a permutation drawn from ``(seed, epoch)``;
left-right flips (off by default: an apical 4-chamber view has a side) from
``(seed, step, process)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from monai.losses import DiceCELoss

from echogen.data.camus import STRUCTURES, CamusPairSet, pair_rows
from echogen.models.segmenter import SEGMENTER_PRESETS, build_segmenter, dice_per_structure
from echogen.training.engine import (
    Budget,
    RunResult,
    Task,
    accelerator_for,
    steps_per_epoch,
)
from echogen.training.engine import train as engine_train
from echogen.training.settings import TrainSettings, mixed_precision
from echogen.training.supervised import epoch_loader, rows_digest

log = logging.getLogger(__name__)

VAL_COLUMNS = ["val_dice", *(f"val_dice_{name}" for name in STRUCTURES.values())]
LOG_COLUMNS = ["epoch", "step", "train_loss", *VAL_COLUMNS]
BUDGET_FIELDS = ("epochs", "max_steps", "checkpoint_every", "checkpoints_total_limit",
                 "log_every", "num_workers")  # fmt: skip
STEP_STREAM = 31


@dataclass(frozen=True)
class SegmenterTrainConfig(TrainSettings):
    """The segmenter's optimisation.

    Args:
        batch_size (int, 8): images per process per step.
        epochs (int, 50): epochs of the full budget.
        max_steps (int | None, None): cap on the steps.
        lr (float, 1e-3): Adam's constant rate.
        weight_decay (float, 0.0): Adam's weight decay.
        size (int, 256): images and masks are resized to ``size x size``.
        flip (bool, False): random left-right flips of training pairs.
        select (str, "best_val"): export the weights of the best VAL mean Dice, or the last.
        precision (str, "fp32"): ``"fp16"`` or ``"bf16"`` autocast on a GPU.
        checkpoint_every (int, 500), checkpoints_total_limit (int, 2), log_every (int, 10),
        num_workers (int, 0): the engine's cadences and the loader's workers.
    """

    batch_size: int = 8
    epochs: int = 50
    max_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    size: int = 256
    flip: bool = False
    select: str = "best_val"
    precision: str = "fp32"
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    log_every: int = 10
    num_workers: int = 0

    label: ClassVar[str] = "segmenter"
    positive: ClassVar[tuple[str, ...]] = (*TrainSettings.positive, "size")

    def __post_init__(self):
        self.check_engine_fields()
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("train.lr must be > 0 and train.weight_decay >= 0")


class SegmenterTask(Task):
    """The U-Net on image/mask pairs (epoch task, best VAL mean Dice)."""

    name = "segmenter"
    log_columns = LOG_COLUMNS
    select_metric = "val_dice"
    select_mode = "max"

    def __init__(self, model: dict, config: SegmenterTrainConfig, train_set: CamusPairSet,
                 val_set: CamusPairSet, steps_per_epoch: int, seed: int,
                 records: dict):  # fmt: skip
        self.model, self.config = model, config
        self.train_set, self.val_set = train_set, val_set
        self.steps_per_epoch, self.seed, self.records = steps_per_epoch, seed, records
        self.select = config.select
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        net = build_segmenter(**self.model)
        opt = torch.optim.Adam(net.parameters(), lr=self.config.lr,
                               weight_decay=self.config.weight_decay)  # fmt: skip
        self.net, self.opt = accelerator.prepare(net, opt)
        return self.net

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        return epoch_loader(self.train_set, self.steps_per_epoch, self.config.batch_size,
                            accelerator, self.seed, epoch, start,
                            self.config.num_workers)  # fmt: skip

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        images, labels = batch
        if self.config.flip:
            rng = np.random.default_rng([self.seed, STEP_STREAM, step, accelerator.process_index])
            flip = torch.from_numpy(rng.random(len(images)) < 0.5)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            labels = torch.where(flip[:, None, None], labels.flip(-1), labels)
        self.net.train()
        with accelerator.autocast():
            logits = self.net(images.to(accelerator.device))
            loss = self.loss(logits.float(), labels[:, None].to(accelerator.device))
        accelerator.backward(loss)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"train_loss": accelerator.reduce(loss.detach(), "mean").item()}

    @torch.no_grad()
    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        net = accelerator.unwrap_model(self.net)
        net.eval()
        preds = []
        for start in range(0, len(self.val_set), self.config.batch_size):
            images = torch.from_numpy(self.val_set.images[start : start + self.config.batch_size])
            preds.append(net.predict(images.to(accelerator.device)).cpu())
        net.train()
        scores = dice_per_structure(torch.cat(preds), self.val_set.labels)
        per = np.nanmean(scores, axis=0)
        return {"val_dice": float(np.nanmean(per)),
                **{f"val_dice_{name}": float(v) for name, v in zip(STRUCTURES.values(), per,
                                                                   strict=True)}}  # fmt: skip

    def export(self, folder: Path, model: torch.nn.Module, result: RunResult) -> dict:
        model.save_pretrained(folder / "segmenter")
        return {**self.records, "train": self.config.to_dict(), "model": self.model}


def resolve_model(model: dict | None) -> dict:
    """``preset`` plus overrides of :func:`build_segmenter`, checked by building it."""
    resolved = {"preset": "reference", **(model or {})}
    if resolved["preset"] not in SEGMENTER_PRESETS:
        raise ValueError(f"unknown segmenter preset {resolved['preset']!r}")
    build_segmenter(**resolved)
    return resolved


def train_segmenter(
    sources: Sequence[str | Path],
    val_index: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    model: dict | None = None,
    train: dict | SegmenterTrainConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Train the segmenter on the ``train`` pairs of every source, validating on the real
    ``valid`` split of ``val_index``.

    ``out_dir`` is replaced atomically at the end by ``segmenter/`` (``save_pretrained``),
    ``train.json`` and ``log.csv``; ``state_dir`` holds the resumable checkpoints.

    Args:
        sources: CAMUS ``index.csv`` files and/or synthetic image dataset folders.
        val_index: the real CAMUS ``index.csv`` (its ``valid`` split).
        out_dir: the model folder.
        state_dir: the training state (not a workflow output).
        model: ``preset`` and overrides (:data:`SEGMENTER_PRESETS`).
        train: :class:`SegmenterTrainConfig` or its fields.
        seed: the run's seed.
        device: ``"cpu"`` or ``"cuda"``.
    """
    config = train if isinstance(train, SegmenterTrainConfig) else \
        SegmenterTrainConfig.from_dict(train)  # fmt: skip
    if not sources:
        raise ValueError("train_segmenter needs at least one source of training pairs")
    model = resolve_model(model)
    channels = build_segmenter(**model).config.in_channels
    train_rows = pd.concat([pair_rows(s, "train") for s in sources], ignore_index=True)
    val_rows = pair_rows(val_index, "valid")
    accelerator = accelerator_for(device, state_dir, mixed_precision(config.precision, device))
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(train_rows), config.batch_size, world, sources[0])
    budget = Budget.of(config, per_epoch)
    fingerprint = {
        "model": model,
        "train": {k: v for k, v in config.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(train_rows, {"patient": str, "image": str, "label": str}),
    }
    task = SegmenterTask(
        model, config, CamusPairSet(train_rows, config.size, channels),
        CamusPairSet(val_rows, config.size, channels), budget.steps_per_epoch, seed,
        records={"sources": [str(s) for s in sources], "val_index": str(val_index),
                 "n_train": len(train_rows), "n_val": len(val_rows)},
    )  # fmt: skip
    result = engine_train(task, accelerator, state_dir=state_dir, out_dir=out_dir, budget=budget,
                          seed=seed, fingerprint=fingerprint,
                          config={"model": model, "train": config.to_dict()})  # fmt: skip
    return {"steps": result.step, "steps_per_epoch": per_epoch,
            "resumed_from": result.resumed_from, "val_dice": result.last("val_dice"),
            "out_dir": str(out_dir)}  # fmt: skip
