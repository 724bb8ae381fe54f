"""Downstream video classifier: train on real, synthetic or real+synthetic videos.

EchoDream (``/work/shared/PAPERS.md`` §5; Marshall-mk/Echodream ``echo/classification``)
judges its class-conditioned CardiacNet generator by training ``r3d_18`` classifiers (ASD vs
Non-ASD, classes 0/1; PAH vs Non-PAH, 2/3) on real, synthetic or real+synthetic videos and
testing them on real TEST videos. Its ``train.py`` uses 32-frame clips taken every 2nd
frame of the 32 fps videos, a Kinetics-pretrained ``r3d_18`` with dropout 0.5 before the
classifier, inverse-frequency class-weighted cross-entropy, SGD (lr 5e-4, momentum 0.9,
weight decay 1e-4) with per-epoch cosine annealing over 45 epochs, batch 8, and tests the
weights of the epoch with the best validation accuracy. :data:`CLASSIFIER_PRESETS` holds
that configuration (``echodream``) and a CPU-sized one (``tiny``).

EchoDream's 5-fold cross-validation is ``evaluation.classification.cv_folds`` (one
classifier per fold, :class:`~echogen.data.class_rows.Folds`); its one clip per video, 32
frames spread evenly over the whole video, is ``ClipSpec.sampling="uniform"`` (the
``echodream`` preset; ``"window"`` cuts contiguous windows and averages all of them at test,
as the ``tiny`` preset does). Differences from EchoDream, deliberately: pixels are z-scored
with TRAIN statistics instead of ImageNet's per-channel ones (the videos are grey); colour
jitter is not applied.

:func:`~echogen.data.class_rows.training_rows` builds the labelled TRAIN and VAL rows of
one training source (fixed splits or one fold). :func:`train_classifier` trains with the same
resumable pattern as :mod:`echogen.training.regressor`: data order from ``(seed, epoch)``,
clip draws from ``(seed, epoch, index)``, checkpoints through :mod:`echogen.training.state`,
so a run cut anywhere and re-run ends with the same weights, bit for bit on CPU.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from echogen.data.class_rows import Folds, training_rows
from echogen.data.ef_clips import ClassClipDataset, ClipSpec, with_statistics
from echogen.data.errors import DataError
from echogen.data.io import write_json
from echogen.models.regressor import (
    DEFAULT_LAYERS,
    DEFAULT_WIDTHS,
    EFRegressor,
    load_kinetics_trunk,
)
from echogen.training.engine import SELECTIONS, Budget, RunResult, accelerator_for, steps_per_epoch
from echogen.training.engine import train as engine_train
from echogen.training.state import jsonable
from echogen.training.supervised import OPTIMIZERS, ClipTask, rows_digest

log = logging.getLogger(__name__)

SCHEDULES = ("cosine",)
LOG_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_accuracy"]
# ClassifierTrainSpec fields that only say how long, how often or how fast: a run may be
# resumed with other values (e.g. a larger max_steps) and follow the same trajectory.
# ``epochs`` is not one of them: it sets the cosine schedule's length.
BUDGET_FIELDS = ("max_steps", "checkpoint_every", "checkpoints_total_limit", "num_workers")
BUDGET_FIELDS += ("log_every",)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ClassifierTrainSpec:
    """Optimisation and budget of a classifier run.

    Args:
        optimizer (str, "sgd"): ``"sgd"`` (with ``momentum``) or ``"adam"``.
        lr (float, 5e-4): learning rate (EchoDream's default).
        momentum (float, 0.9): SGD momentum (unused by Adam).
        weight_decay (float, 1e-4): L2 weight decay.
        lr_schedule (str | None, "cosine"): ``"cosine"`` = EchoDream's
            ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch (lr of epoch ``e`` is
            ``lr * (1 + cos(pi * e / epochs)) / 2``); None keeps the lr constant.
        epochs (int, 45): epochs of the full budget.
        batch_size (int, 8): clips per process per optimiser step; the last incomplete batch
            of an epoch is dropped, as in EchoDream.
        class_weighted (bool, True): weight the cross-entropy by inverse class frequency in
            the training rows, normalised to sum to the number of classes (EchoDream).
        dropout (float, 0.5): dropout on the pooled features before ``fc`` while training
            (EchoDream's head ``Dropout(0.5), Linear``).
        select (str, "best_val"): export the weights of the epoch with the best validation
            accuracy (first on ties, as EchoDream) or the ``"last"`` weights.
        max_steps (int | None, None): optimiser steps of the budget; None = ``epochs`` times the
            steps per epoch, else the smaller of the two.
        checkpoint_every (int, 500): save the training state every this many steps (and at
            the end).
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        num_workers (int, 0): data loader worker processes.
        log_every (int, 10): log the running loss every this many steps.
    """

    optimizer: str = "sgd"
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str | None = "cosine"
    epochs: int = 45
    batch_size: int = 8
    class_weighted: bool = True
    dropout: float = 0.5
    select: str = "best_val"
    max_steps: int | None = None
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    num_workers: int = 0
    log_every: int = 10

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule is not None and self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be None or one of {SCHEDULES}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.momentum < 0:
            raise ValueError(
                f"lr must be > 0, weight_decay and momentum >= 0; got {self.lr}, "
                f"{self.weight_decay}, {self.momentum}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        positive = ["epochs", "batch_size", "checkpoint_every", "checkpoints_total_limit"]
        for name in [*positive, "log_every"]:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be None or >= 0, got {self.max_steps}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassifierConfig:
    """A resolved classifier configuration.

    Args:
        model: :class:`~echogen.models.regressor.EFRegressor` keyword arguments (without
            ``out_features``, which :func:`train_classifier` sets to the number of classes).
        clips: how clips are cut and normalised.
        train: optimisation and budget.
    """

    model: dict
    clips: ClipSpec
    train: ClassifierTrainSpec

    def to_dict(self) -> dict:
        return jsonable(
            {"model": self.model, "clips": self.clips.to_dict(), "train": self.train.to_dict()}
        )


CLASSIFIER_PRESETS: dict[str, dict] = {
    # EchoDream's CardiacNet classifiers (PAPERS.md §5; echo/classification/README.md and
    # train.py): r3d_18, one clip per video of 32 frames spread evenly over every 2nd frame of
    # the whole video (data.py's "uniform" sampling, --sampling-rate 2), 112 px, batch 8,
    # 45 epochs, SGD 5e-4 with cosine annealing, class-weighted CE, dropout 0.5.
    "echodream": {
        "model": {
            "arch": "r3d_18",
            "in_channels": 3,
            "widths": DEFAULT_WIDTHS,
            "layers": DEFAULT_LAYERS,
            "fc_bias_init": 0.0,
        },
        "clips": {
            "frames": 32,
            "period": 2,
            "fps": 32.0,
            "size": 112,
            "channels": 3,
            "normalisation": "zscore",
            "pad": 0,
            "sampling": "uniform",
        },
        "train": {
            "optimizer": "sgd",
            "lr": 5e-4,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "lr_schedule": "cosine",
            "epochs": 45,
            "batch_size": 8,
            "class_weighted": True,
            "dropout": 0.5,
            "select": "best_val",
        },
    },
    # CPU-sized, for tests and the phantom demo: the tiny EF regressor's network and clips
    # (r3d widths 8-16-32-32, one block per stage, grey 48 px, 16 frames every 4th), Adam.
    "tiny": {
        "model": {
            "arch": "r3d_18",
            "in_channels": 1,
            "widths": (8, 16, 32, 32),
            "layers": (1, 1, 1, 1),
            "fc_bias_init": 0.0,
        },
        "clips": {
            "frames": 16,
            "period": 4,
            "fps": None,
            "size": 48,
            "channels": 1,
            "normalisation": "zscore",
            "pad": 4,
            "test_clip_stride": 8,
        },
        "train": {
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 0.0,
            "lr_schedule": "cosine",
            "epochs": 25,
            "batch_size": 8,
            "class_weighted": True,
            "dropout": 0.5,
            "select": "best_val",
        },
    },
}


def _model_keys() -> list[str]:
    keys = inspect.signature(EFRegressor.__init__).parameters
    return [p for p in keys if p not in ("self", "out_features")]


def resolve_classifier_config(preset: str, overrides: dict | None = None) -> ClassifierConfig:
    """A preset with nested overrides applied.

    Args:
        preset: a key of :data:`CLASSIFIER_PRESETS`.
        overrides: ``{"model": {...}, "clips": {...}, "train": {...}}``, any part optional; each
            value replaces the preset's.

    Returns:
        The resolved configuration.

    Raises:
        ValueError: unknown preset, section or key (named; ``model.out_features`` is set from
            the classes, not configured), or a model whose ``in_channels`` differs from the
            clips' ``channels``.
    """
    if preset not in CLASSIFIER_PRESETS:
        choices = list(CLASSIFIER_PRESETS)
        raise ValueError(f"unknown classifier preset {preset!r}; choose one of {choices}")
    overrides = overrides or {}
    allowed = {
        "model": _model_keys(),
        "clips": [f.name for f in fields(ClipSpec)],
        "train": [f.name for f in fields(ClassifierTrainSpec)],
    }
    for section, values in overrides.items():
        if section not in allowed:
            raise ValueError(f"unknown config section {section!r}; expected {list(allowed)}")
        if not isinstance(values, dict):
            raise ValueError(f"overrides[{section!r}] must be a dict, got {values!r}")
        for key in values:
            if key not in allowed[section]:
                raise ValueError(f"unknown key {section}.{key}; expected one of {allowed[section]}")
    base = CLASSIFIER_PRESETS[preset]
    merged = {s: {**base[s], **overrides.get(s, {})} for s in allowed}
    config = ClassifierConfig(
        model=merged["model"],
        clips=ClipSpec(**merged["clips"]),
        train=ClassifierTrainSpec(**merged["train"]),
    )
    in_channels = config.model.get("in_channels", 3)
    if in_channels != config.clips.channels:
        raise ValueError(
            f"model.in_channels ({in_channels}) must equal clips.channels ({config.clips.channels})"
        )
    return config


# ---------------------------------------------------------------- training


class ClassifierTask(ClipTask):
    """Video classification for the trainer engine: (class-weighted) cross-entropy, VAL
    cross-entropy and accuracy every epoch, export of the best-VAL (or last) weights.

    Args:
        config: the resolved configuration (clip statistics filled in).
        n_classes: K, the classifier's outputs.
        train_set: TRAIN clips (augmented) with labels.
        val_set: VAL clips (first clip, no augmentation) with labels.
        steps_per_epoch: optimiser steps per epoch (all processes together).
        seed: the data order's seed.
        pretrained: torchvision Kinetics-400 weights to start the trunk from, or None.
    """

    name = "classifier"
    log_columns = LOG_COLUMNS
    select_metric = "val_accuracy"
    select_mode = "max"

    def __init__(
        self,
        config: ClassifierConfig,
        n_classes: int,
        train_set: ClassClipDataset,
        val_set: ClassClipDataset,
        steps_per_epoch: int,
        seed: int,
        pretrained: str | Path | None,
    ):
        train = config.train
        super().__init__(train_set, val_set, train, steps_per_epoch, seed)
        self.config, self.pretrained, self.select = config, pretrained, train.select
        self.model_kwargs = {**config.model, "out_features": n_classes}
        self.counts = np.bincount(train_set.labels, minlength=n_classes)
        self.weight = None
        if train.class_weighted:
            w = len(train_set.labels) / (n_classes * self.counts)
            self.weight = torch.tensor(w / w.sum() * n_classes, dtype=torch.float32)
        self.records: dict = {}

    def make_model(self) -> EFRegressor:
        model = EFRegressor(**self.model_kwargs)
        if self.pretrained is not None:
            load_kinetics_trunk(model, self.pretrained)
        if self.config.train.dropout > 0:
            model.fc.register_forward_pre_hook(_dropout_hook(self.config.train.dropout))
        return model

    def start_epoch(self, epoch: int) -> None:
        """The epoch's lr, a function of the epoch alone (nothing to checkpoint)."""
        train = self.config.train
        lr = train.lr
        if train.lr_schedule == "cosine":
            lr = train.lr * (1 + math.cos(math.pi * epoch / train.epochs)) / 2
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(output.device)
        return F.cross_entropy(output, target, weight)

    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        """Cross-entropy (the training criterion) and accuracy on the first clip of every VAL
        video."""
        records = self.validation_outputs(accelerator)
        logits = torch.tensor([r[0] for r in records], dtype=torch.float32)
        labels = torch.tensor([r[1] for r in records], dtype=torch.int64)
        loss = F.cross_entropy(logits, labels, self.weight)
        accuracy = (logits.argmax(dim=1) == labels).double().mean()
        return {"val_loss": float(loss), "val_accuracy": float(accuracy)}

    def export(self, folder: Path, model: EFRegressor, result: RunResult) -> dict:
        model.save_pretrained(folder)
        write_json(folder / "clips.json", self.config.clips.to_dict())
        return {
            **self.records,
            "model": jsonable(self.model_kwargs),
            "train": self.config.train.to_dict(),
            "class_weights": None if self.weight is None else self.weight.tolist(),
            "pretrained": None if self.pretrained is None else str(self.pretrained),
        }


def train_classifier(
    rows: pd.DataFrame,
    out_dir: str | Path,
    state_dir: str | Path,
    config: ClassifierConfig,
    n_classes: int,
    seed: int,
    device: str = "cpu",
    root: str | Path = ".",
    pretrained: str | Path | None = None,
) -> dict:
    """Train a video classifier on the TRAIN rows, validating on the VAL rows every epoch.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` through
    :func:`echogen.training.state.save_checkpoint` (model, optimiser, RNG states, the best
    validation weights so far, and ``progress.json``); a run finding one resumes from the
    newest (the settings, seed, rows and process count must be those it was saved with; the
    budget may differ). ``state_dir/log.csv`` is the running per-epoch log. Resuming is
    bitwise exact for the same device and thread count.

    Args:
        rows: from :func:`training_rows` (FileName, Path, FPS, Split TRAIN/VAL, class_id,
            class_name, label, source).
        out_dir: export folder, replaced atomically at the end: ``save_pretrained`` files (the
            ``select``-ed weights), ``clips.json`` (with the normalisation statistics),
            ``train.json`` (classes, settings, counts, the selected epoch) and ``log.csv``
            (epoch, step, train_loss, val_loss, val_accuracy; a last partial epoch when the
            budget ends mid-epoch).
        state_dir: folder of the resumable training state (not a workflow output).
        config: from :func:`resolve_classifier_config`; zscore statistics left None are
            estimated on the TRAIN rows.
        n_classes: K; labels must be ``0..K-1`` and every class needs TRAIN rows.
        seed: seeds the initialisation, data order, clip draws and dropout.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        root: folder the ``Path`` column is relative to.
        pretrained: torchvision Kinetics-400 weights of ``config.model["arch"]`` to start the
            trunk from (EchoDream's ``--pretrained``); None = random init.

    Returns:
        Summary: steps, steps_per_epoch, resumed_from (step or None), the last val_loss and
        val_accuracy, the selected epoch/step/val_accuracy, mean/std and out_dir.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if "out_features" in config.model:
        raise ValueError("config.model must not set out_features; n_classes sets it")
    state_dir, out_dir = Path(state_dir), Path(out_dir)
    source = str(rows.attrs.get("source", "rows"))
    train_rows, val_rows = _split(rows, "TRAIN", n_classes), _split(rows, "VAL", n_classes)
    classes = _class_list(train_rows, n_classes, source)
    train = config.train

    accelerator = accelerator_for(device, state_dir)
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(train_rows), train.batch_size, world, source)
    budget = Budget.of(train, per_epoch)
    spec = with_statistics(config.clips, train_rows.assign(EF=0.0), seed, root)
    resolved = ClassifierConfig(model=config.model, clips=spec, train=train)
    task = ClassifierTask(
        resolved,
        n_classes=n_classes,
        train_set=ClassClipDataset(train_rows, spec, train=True, seed=seed, root=root),
        val_set=ClassClipDataset(val_rows, spec, train=False, seed=seed, root=root),
        steps_per_epoch=budget.steps_per_epoch,
        seed=seed,
        pretrained=pretrained,
    )
    # Everything that shapes the trajectory; a checkpoint only resumes a run with the same.
    fingerprint = {
        "model": task.model_kwargs,
        "clips": spec.to_dict(),
        "train": {k: v for k, v in train.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(train_rows, {"FileName": str, "source": str, "label": int}),
        # The VAL rows select the exported epoch: another VAL set (validation real|source,
        # another fold) is another run even when the TRAIN rows are the same.
        "val_rows": rows_digest(val_rows, {"FileName": str, "source": str, "label": int}),
        "pretrained": None if pretrained is None else str(pretrained),
    }
    task.records = {
        "classes": classes,
        "n_classes": n_classes,
        "n_train": {s: int(n) for s, n in train_rows["source"].value_counts().items()},
        "n_train_per_class": task.counts.tolist(),
        "n_val": len(val_rows),
    }
    result = engine_train(
        task,
        accelerator,
        state_dir=state_dir,
        out_dir=out_dir,
        budget=budget,
        seed=seed,
        fingerprint=fingerprint,
        config=resolved.to_dict(),
    )
    return {
        "steps": result.step,
        "steps_per_epoch": result.steps_per_epoch,
        "resumed_from": result.resumed_from,
        "val_loss": result.last("val_loss"),
        "val_accuracy": result.last("val_accuracy"),
        "selected": result.selected,
        "mean": spec.mean,
        "std": spec.std,
        "out_dir": str(out_dir),
    }


def train_classifier_from_config(
    source: str,
    manifest: str,
    filelist: str | None,
    out_dir: str,
    state_dir: str,
    classification: dict,
    classes: list[int],
    seed: int,
    device: str = "cpu",
    root: str = ".",
    pretrained: str | None = None,
    fold: int | None = None,
) -> dict:
    """:func:`train_classifier` from the ``evaluation.classification`` config (JSON-able
    arguments, so ``echogen.workflow.run_distributed`` can start it on N processes).

    ``source`` is ``real``, ``synthetic`` or ``real+synthetic``; ``filelist`` is the synthetic
    dataset's FileList.csv (its folder holds the videos), None for ``real``; ``classes`` the
    task's class ids (label k = the k-th); ``pretrained`` a torchvision Kinetics-400 weights
    file of the preset's architecture, or None for a random start; ``fold`` the fold (1..k)
    of ``classification["cv_folds"]`` = k folds (shuffled with ``seed``), None without
    cross-validation. ``classification["validation"]`` (default ``"real"``) goes to
    :func:`~echogen.data.class_rows.training_rows`.
    """
    samples_dir = Path(filelist).parent if filelist else None
    folds = None
    if fold is not None:
        if not classification.get("cv_folds"):
            raise ValueError(f"fold {fold} given but classification.cv_folds is not set")
        folds = Folds(int(classification["cv_folds"]), int(fold), seed)
    validation = classification.get("validation", "real")
    rows = training_rows(source, manifest, samples_dir, classes, root, validation, folds)
    config = resolve_classifier_config(classification["preset"], classification.get("overrides"))
    return train_classifier(
        rows, out_dir, state_dir, config, len(classes), seed, device, root, pretrained
    )


def _split(rows: pd.DataFrame, split: str, n_classes: int) -> pd.DataFrame:
    """The rows of one split, with labels checked to lie in ``0..n_classes-1``."""
    source = str(rows.attrs.get("source", "rows"))
    missing = [c for c in ("FileName", "Path", "FPS", "Split", "label") if c not in rows.columns]
    if missing:
        raise DataError(source, f"rows lack columns {missing}", "build them with training_rows")
    selected = rows[rows["Split"] == split].copy()
    if selected.empty:
        raise DataError(source, f"no {split} rows", "build the rows with training_rows")
    labels = pd.to_numeric(selected["label"], errors="coerce")
    bad = ~labels.isin(range(n_classes))
    if bad.any():
        raise DataError(
            source,
            f"video {selected.loc[bad, 'FileName'].iloc[0]} has label "
            f"{selected.loc[bad, 'label'].iloc[0]!r}, not in 0..{n_classes - 1}",
            "pass n_classes = len(classes) given to training_rows",
        )
    if "source" not in selected.columns:
        selected["source"] = "real"
    selected.attrs["source"] = source
    return selected


def _class_list(train_rows: pd.DataFrame, n_classes: int, source: str) -> list[dict]:
    """``[{"label", "class_id", "class_name"}]`` per label; every label must have TRAIN rows."""
    classes = []
    for label in range(n_classes):
        of_label = train_rows[train_rows["label"] == label]
        if of_label.empty:
            raise DataError(
                source,
                f"no TRAIN videos of label {label}",
                "add training videos of every class (sample more, or use fewer "
                "cross-validation folds)",
            )
        first = of_label.iloc[0]
        classes.append(
            {
                "label": label,
                "class_id": int(first["class_id"]) if "class_id" in of_label else label,
                "class_name": str(first["class_name"]) if "class_name" in of_label else str(label),
            }
        )
    return classes


def _dropout_hook(p: float):
    """A forward pre-hook on ``fc``: dropout on its input (the pooled features) in training."""

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        return (F.dropout(args[0], p=p, training=module.training),)

    return hook
