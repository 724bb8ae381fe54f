"""EF regressor training: EchoNet-style video regression that resumes bit for bit.

EchoNet-Dynamic (Ouyang et al., Nature 2020) trains ``r2plus1d_18`` on 32-frame clips with
an MSE loss on EF (%); EchoDiffusion and D'ARTAGNAN train the same family with other clip
and optimiser settings (``/work/shared/PAPERS.md`` §1, §3, §6). :data:`REGRESSOR_PRESETS`
holds the four configurations (``tiny`` is the CPU-sized one for tests and the phantom) and
:func:`resolve_config` turns a preset plus nested overrides into a :class:`RegressorConfig`.

:func:`train_regressor` runs a finite budget with accelerate. The data order is a
permutation drawn from ``(seed, epoch)`` and each clip's augmentation from
``(seed, epoch, index)`` (:class:`~echogen.data.ef_clips.EFClipDataset`), so nothing depends
on a data loader's internal state: a run killed at any point and started again resumes from
its newest checkpoint, skips the batches already done in the current epoch and ends with
the same weights, bit for bit on CPU, as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.optim.lr_scheduler import StepLR

from echogen.data.ef_clips import ClipSpec, EFClipDataset, with_statistics
from echogen.data.errors import DataError
from echogen.data.io import write_json
from echogen.data.manifest import read_manifest
from echogen.models.regressor import (
    MODEL_PRESETS,
    EFRegressor,
    load_kinetics_trunk,
    load_published_weights,
)
from echogen.training.engine import (
    SELECTIONS,
    Budget,
    RunResult,
    accelerator_for,
    steps_per_epoch,
)
from echogen.training.engine import train as engine_train
from echogen.training.settings import PRECISIONS, mixed_precision
from echogen.training.state import jsonable
from echogen.training.supervised import OPTIMIZERS, ClipTask, rows_digest

PRETRAINED_KINDS = ("published", "kinetics")
LOG_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_mae"]
# TrainSpec fields that only say how long, how often or how fast: a run may be resumed with
# other values (e.g. a larger budget) and still follow the same trajectory.
BUDGET_FIELDS = (
    "epochs",
    "max_steps",
    "checkpoint_every",
    "checkpoints_total_limit",
    "num_workers",
    "log_every",
)


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation and budget of a regressor run.

    Args:
        optimizer (str, "sgd"): ``"sgd"`` (with ``momentum``) or ``"adam"``.
        lr (float, 1e-4): learning rate.
        momentum (float, 0.9): SGD momentum (unused by Adam).
        weight_decay (float, 1e-4): L2 weight decay.
        lr_step_epochs (int | None, 15): multiply the lr by ``lr_gamma`` every this many epochs
            (EchoNet's StepLR); None keeps it constant.
        lr_gamma (float, 0.1): the lr factor per step of the schedule.
        epochs (int, 45): epochs of the full budget.
        batch_size (int, 20): clips per process per optimiser step; the last incomplete batch
            of an epoch is dropped, as in EchoNet.
        max_steps (int | None, None): optimiser steps of the budget; None = ``epochs`` times the
            steps per epoch, else the smaller of the two; 0 exports the initial (e.g.
            published) weights untrained.
        checkpoint_every (int, 500): save the training state every this many steps (and at
            the end).
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        num_workers (int, 0): data loader worker processes.
        log_every (int, 10): log the running loss every this many steps.
        select (str, "best_val"): the weights exported: ``"best_val"``, those of the epoch
            with the lowest VAL loss (EchoNet tests its ``best.pt``, the lowest VAL loss;
            EchoDiffusion a top-3 VAL checkpoint, of which echogen takes the best), or
            ``"last"``. ``train.json`` records which (``selected``).
        precision (str, "fp32"): ``"fp16"`` trains with fp16 autocast and loss scaling on a
            GPU (EchoDiffusion's Lightning ``precision=16``); on the CPU it falls back to fp32
            with a warning; ``"bf16"`` trains under bf16 autocast on a GPU. ``train.json``
            records what ran (``mixed_precision``).
    """

    optimizer: str = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step_epochs: int | None = 15
    lr_gamma: float = 0.1
    epochs: int = 45
    batch_size: int = 20
    max_steps: int | None = None
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    num_workers: int = 0
    log_every: int = 10
    select: str = "best_val"
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.momentum < 0 or self.lr_gamma <= 0:
            raise ValueError(
                "lr and lr_gamma must be > 0, weight_decay and momentum >= 0; got "
                f"{self.lr}, {self.lr_gamma}, {self.weight_decay}, {self.momentum}"
            )
        positive = ["epochs", "batch_size", "checkpoint_every", "checkpoints_total_limit"]
        positive += ["log_every"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be None or >= 0, got {self.max_steps}")
        if self.lr_step_epochs is not None and self.lr_step_epochs < 1:
            raise ValueError(f"lr_step_epochs must be None or >= 1, got {self.lr_step_epochs}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RegressorConfig:
    """A resolved regressor configuration.

    Args:
        model: :class:`~echogen.models.regressor.EFRegressor` keyword arguments.
        clips: how clips are cut and normalised.
        train: optimisation and budget.
    """

    model: dict
    clips: ClipSpec
    train: TrainSpec

    def to_dict(self) -> dict:
        return jsonable(
            {"model": self.model, "clips": self.clips.to_dict(), "train": self.train.to_dict()}
        )


REGRESSOR_PRESETS: dict[str, dict] = {
    # EchoNet-Dynamic's `echonet video` defaults (PAPERS.md §1).
    "echonet": {
        "model": MODEL_PRESETS["echonet"],
        "clips": {
            "frames": 32,
            "period": 2,
            "fps": None,
            "size": 112,
            "channels": 3,
            "normalisation": "zscore",
            "pad": 12,
            "test_clip_stride": 1,
            # Echo(split="train") at random starts: training, VAL and the one-clip test number;
            # pad-12 crops at offsets 0..23; mean/std per channel over one 16-frame clip of
            # 128 TRAIN videos (echonet/utils/video.py, echonet/datasets/echo.py).
            "train_start": "random",
            "clip_start": "random",
            "crop": "echonet",
            "statistics": "one_clip",
        },
        "train": {
            "optimizer": "sgd",
            "lr": 1e-4,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "lr_step_epochs": 15,
            "lr_gamma": 0.1,
            "epochs": 45,
            "batch_size": 20,
            # EchoNet tests best.pt: the epoch of lowest VAL loss.
            "select": "best_val",
        },
    },
    # EchoDiffusion's reference regressor (ef_regression/: dataset.py, train_reference.py,
    # config_reference/ef_112_32_2.yaml; PAPERS.md §3): each video resampled to 32 fps by
    # linear interpolation (scipy zoom, order 1), x/255, trained on its first 64 frames with
    # Pad(12) + RandomCrop(112) (offsets 0..24), Adam 1e-4, batch 16, 100 epochs, fp16; its
    # eval.py scores the first 64 frames of VAL (one clip). The all-clip mean, which it does
    # not report, averages windows 16 frames (0.5 s) apart.
    "echodiffusion": {
        "model": MODEL_PRESETS["echodiffusion"],
        "clips": {
            "frames": 64,
            "period": 1,
            "fps": 32.0,
            "size": 112,
            "channels": 3,
            "normalisation": "unit",
            "pad": 12,
            "test_clip_stride": 16,
            "resample": "linear",
            "train_start": "first",
            "crop": "torchvision",
            "clip_start": "first",
        },
        "train": {
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 0.0,
            "lr_step_epochs": None,
            "epochs": 100,
            "batch_size": 16,
            # EchoDiffusion tests a top-3 VAL checkpoint; echogen exports the best one.
            "select": "best_val",
            "precision": "fp16",
        },
    },
    # D'ARTAGNAN's expert (pl_modules/models/expert_trainer.py, README command): grey 64-frame
    # clips at 32 fps, /255, MSE on EF 0-100, Adam 1e-4, batch 4, 50 epochs. Its
    # ExponentialLR(0.95) is returned under the key "scheduler", which Lightning ignores
    # (it reads "lr_scheduler"), so the lr it trains with is constant: lr_step_epochs None.
    # The reference reads the processed 64-frame clips (one fixed window between ES and ED);
    # echogen's regressor draws a random 64-frame window of the whole video each epoch.
    "dartagnan_expert": {
        "model": MODEL_PRESETS["dartagnan_expert"],
        "clips": {
            "frames": 64,
            "period": 1,
            "fps": 32.0,
            "size": 112,
            "channels": 1,
            "normalisation": "unit",
            "pad": 0,
            "test_clip_stride": 16,
        },
        "train": {
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 0.0,
            "lr_step_epochs": None,
            "epochs": 50,
            "batch_size": 4,
            # Which checkpoint D'ARTAGNAN's expert is tested with is not recorded.
            "select": "last",
        },
    },
    # CPU-sized, for tests and the phantom demo. On a phantom Dynamic of 200/40/60 videos
    # (100-140 frames at 50 Hz, 112 px) it reached TEST MAE 3.1 / 3.0 EF points (all-clip
    # mean; seeds 0 / 1) against 16.2 for predicting the TRAIN mean, in about 3 minutes of
    # training on 2 shared CPU cores. The 61-frame span (16 frames, period 4) covers a beat
    # at 50 bpm; 48 px keeps a step of 8 clips near 0.2 s.
    "tiny": {
        "model": MODEL_PRESETS["tiny"],
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
            "lr_step_epochs": 18,
            "lr_gamma": 0.1,
            "epochs": 25,
            "batch_size": 8,
            "select": "last",
        },
    },
}


def _model_keys() -> list[str]:
    return [p for p in inspect.signature(EFRegressor.__init__).parameters if p != "self"]


def resolve_config(preset: str, overrides: dict | None = None) -> RegressorConfig:
    """A preset with nested overrides applied.

    Args:
        preset: a key of :data:`REGRESSOR_PRESETS`.
        overrides: ``{"model": {...}, "clips": {...}, "train": {...}}``, any part optional; each
            value replaces the preset's.

    Raises:
        ValueError: unknown preset, section or key (named), or a model whose ``in_channels``
            differs from the clips' ``channels``.
    """
    if preset not in REGRESSOR_PRESETS:
        choices = list(REGRESSOR_PRESETS)
        raise ValueError(f"unknown regressor preset {preset!r}; choose one of {choices}")
    overrides = overrides or {}
    allowed = {
        "model": _model_keys(),
        "clips": [f.name for f in fields(ClipSpec)],
        "train": [f.name for f in fields(TrainSpec)],
    }
    for section, values in overrides.items():
        if section not in allowed:
            raise ValueError(f"unknown config section {section!r}; expected {list(allowed)}")
        if not isinstance(values, dict):
            raise ValueError(f"overrides[{section!r}] must be a dict, got {values!r}")
        for key in values:
            if key not in allowed[section]:
                raise ValueError(f"unknown key {section}.{key}; expected one of {allowed[section]}")
    base = REGRESSOR_PRESETS[preset]
    merged = {s: {**base[s], **overrides.get(s, {})} for s in allowed}
    config = RegressorConfig(
        model=merged["model"], clips=ClipSpec(**merged["clips"]), train=TrainSpec(**merged["train"])
    )
    in_channels = config.model.get("in_channels", 3)
    if in_channels != config.clips.channels:
        raise ValueError(
            f"model.in_channels ({in_channels}) must equal clips.channels ({config.clips.channels})"
        )
    return config


class RegressorTask(ClipTask):
    """EF regression for the trainer engine: MSE on EF (%), VAL MSE and MAE every epoch.

    Args:
        config: the resolved configuration (clip statistics filled in).
        train_set: TRAIN clips (augmented).
        val_set: VAL clips (the single clip of ``clip_start``, no augmentation).
        steps_per_epoch: optimiser steps per epoch (all processes together).
        seed: the data order's seed.
        pretrained: ``{"kind", "path"}`` of published weights or a Kinetics trunk, or None.
        counts: ``n_train`` and ``n_val`` for ``train.json``.
        train_mean_ef: the TRAIN mean EF, recorded in ``train.json`` (the trivial predictor).
    """

    name = "regressor"
    log_columns = LOG_COLUMNS
    select_metric = "val_loss"
    select_mode = "min"

    def __init__(
        self,
        config: RegressorConfig,
        train_set: EFClipDataset,
        val_set: EFClipDataset,
        steps_per_epoch: int,
        seed: int,
        pretrained: dict | None,
        counts: dict,
        train_mean_ef: float,
    ):
        train = config.train
        super().__init__(train_set, val_set, train, steps_per_epoch, seed)
        self.config, self.pretrained, self.select = config, pretrained, train.select
        self.counts, self.train_mean_ef = counts, train_mean_ef
        self.scheduler = None
        self.mixed_precision = "no"

    def make_model(self) -> EFRegressor:
        model = EFRegressor(**self.config.model)
        if self.pretrained is not None and self.pretrained["kind"] == "published":
            load_published_weights(model, self.pretrained["path"])
        elif self.pretrained is not None:
            load_kinetics_trunk(model, self.pretrained["path"])
        return model

    def register(self, accelerator: Accelerator, optimizer: torch.optim.Optimizer) -> None:
        self.mixed_precision = accelerator.mixed_precision
        train = self.config.train
        if train.lr_step_epochs is not None:
            # Stepped per optimiser step so that a mid-epoch resume needs no special case;
            # registered (not prepared) so accelerate does not step it once per process.
            period = train.lr_step_epochs * self.steps_per_epoch
            self.scheduler = StepLR(optimizer, period, train.lr_gamma)
            accelerator.register_for_checkpointing(self.scheduler)

    def after_step(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.float())

    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        """MSE and MAE on the single clip (``clips.clip_start``) of every VAL video."""
        pairs = np.asarray(self.validation_outputs(accelerator), dtype=np.float64)
        error = pairs[:, 0] - pairs[:, 1]
        return {"val_loss": float(np.mean(error**2)), "val_mae": float(np.mean(np.abs(error)))}

    def export(self, folder: Path, model: EFRegressor, result: RunResult) -> dict:
        model.save_pretrained(folder)
        write_json(folder / "clips.json", self.config.clips.to_dict())
        return {
            "model": jsonable(self.config.model),
            "train": self.config.train.to_dict(),
            **self.counts,
            "train_mean_ef": self.train_mean_ef,
            "pretrained": self.pretrained,
            "mixed_precision": self.mixed_precision,
        }


def train_regressor(
    manifest: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    config: RegressorConfig,
    seed: int,
    device: str = "cpu",
    pretrained: dict | None = None,
    root: str | Path = ".",
) -> dict:
    """Train an EF regressor on a manifest's TRAIN rows, validating on its VAL rows.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` (accelerate state plus
    ``progress.json``: step, running loss, epoch log, config, seed), written under a
    temporary name and renamed when complete; the newest ``checkpoints_total_limit`` are
    kept. A run finding checkpoints resumes from the newest (the model, clip, optimisation
    settings, seed and process count must be those it was saved with; the budget may
    differ). ``state_dir/log.csv`` is the running per-epoch log. Resuming is bitwise exact
    for the same device and thread count.

    Args:
        manifest: harmonised manifest csv (FileName, EF, FPS, Path, Split).
        out_dir: export folder, replaced atomically at the end: ``save_pretrained`` files,
            ``clips.json`` (with the normalisation statistics used), ``train.json`` and
            ``log.csv`` (epoch, step, train_loss, val_loss, val_mae; a last partial epoch
            when the budget ends mid-epoch).
        state_dir: folder of the resumable training state (not a workflow output).
        config: from :func:`resolve_config`; zscore statistics left None are estimated on
            TRAIN.
        seed: seeds the initialisation, data order and augmentation.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        pretrained: ``{"kind": "published" | "kinetics", "path": ...}`` to start from
            EchoNet's released weights or a Kinetics-400 trunk; None = random init.
        root: folder the manifest's ``Path`` column is relative to.

    Returns:
        Summary: steps, steps_per_epoch, resumed_from (step or None), train_mean_ef, the
        last val_loss/val_mae, the normalisation mean/std and out_dir.
    """
    _check_pretrained(pretrained)
    manifest, state_dir, out_dir = Path(manifest), Path(state_dir), Path(out_dir)
    rows = read_manifest(manifest)
    train_rows = _split_rows(rows, "TRAIN", manifest)
    val_rows = _split_rows(rows, "VAL", manifest)
    train = config.train

    accelerator = accelerator_for(device, state_dir, mixed_precision(train.precision, device))
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(train_rows), train.batch_size, world, manifest)
    budget = Budget.of(train, per_epoch)
    spec = with_statistics(config.clips, train_rows, seed, root)
    resolved = RegressorConfig(model=config.model, clips=spec, train=train)
    # Everything that shapes the trajectory; a checkpoint only resumes a run with the same.
    fingerprint = {
        "model": config.model,
        "clips": spec.to_dict(),
        "train": {k: v for k, v in train.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(train_rows, {"FileName": str, "EF": float}),
        "pretrained": pretrained,
    }
    task = RegressorTask(
        resolved,
        train_set=EFClipDataset(train_rows, spec, train=True, seed=seed, root=root),
        val_set=EFClipDataset(val_rows, spec, train=False, seed=seed, root=root),
        steps_per_epoch=budget.steps_per_epoch,
        seed=seed,
        pretrained=pretrained,
        counts={"n_train": len(train_rows), "n_val": len(val_rows)},
        train_mean_ef=float(train_rows["EF"].mean()),
    )
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
        "train_mean_ef": task.train_mean_ef,
        "val_loss": result.last("val_loss"),
        "val_mae": result.last("val_mae"),
        "mean": spec.mean,
        "std": spec.std,
        "out_dir": str(out_dir),
    }


def train_regressor_from_run(
    manifest: str,
    out_dir: str,
    state_dir: str,
    run: dict,
    seed: int,
    device: str = "cpu",
    weights: str | None = None,
    root: str = ".",
) -> dict:
    """:func:`train_regressor` from one ``regressors.runs.<name>`` config entry (JSON-able
    arguments, so ``echogen.workflow.run_distributed`` can start it on N processes).

    ``run["pretrained"]`` with ``weights`` (the published file) starts from those weights;
    ``finetune: false`` exports them as they are (zero optimiser steps).
    """
    overrides = run.get("overrides") or {}
    pretrained = None
    if run.get("pretrained"):
        pretrained = {"kind": run["pretrained"]["kind"], "path": weights}
        if not run["pretrained"].get("finetune", True):
            overrides = {**overrides, "train": {**overrides.get("train", {}), "max_steps": 0}}
    config = resolve_config(run["preset"], overrides)
    return train_regressor(manifest, out_dir, state_dir, config, seed, device, pretrained, root)


def _check_pretrained(pretrained: dict | None) -> None:
    if pretrained is None:
        return
    if set(pretrained) != {"kind", "path"} or pretrained["kind"] not in PRETRAINED_KINDS:
        raise ValueError(
            f"pretrained must be {{'kind': one of {PRETRAINED_KINDS}, 'path': ...}}, "
            f"got {pretrained!r}"
        )


def _split_rows(rows: pd.DataFrame, split: str, manifest: Path) -> pd.DataFrame:
    """The rows of one split; the manifest's index is kept so errors name its csv lines."""
    selected = rows[rows["Split"] == split].copy()
    if selected.empty:
        raise DataError(manifest, f"no {split} rows", "use a manifest with TRAIN and VAL videos")
    selected.attrs["source"] = str(manifest)
    return selected
