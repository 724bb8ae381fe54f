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

import hashlib
import inspect
import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader
from tqdm import tqdm

import echogen
from echogen.data.ef_clips import ClipSpec, EFClipDataset, estimate_mean_std
from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, write_json
from echogen.data.manifest import read_manifest
from echogen.models.regressor import (
    MODEL_PRESETS,
    EFRegressor,
    load_kinetics_trunk,
    load_published_weights,
)
from echogen.training.state import (
    deterministic,
    jsonable,
    resume,
    save_checkpoint,
    write_log,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
PRETRAINED_KINDS = ("published", "kinetics")
DEVICES = ("cpu", "cuda")
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

    def __post_init__(self):
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
        },
    },
    # EchoDiffusion's reference regressor: 64 frames at 32 fps, x/255, Adam, 100 epochs
    # (PAPERS.md §3). All-clip test averages windows 16 frames (0.5 s) apart.
    "echodiffusion": {
        "model": MODEL_PRESETS["echodiffusion"],
        "clips": {
            "frames": 64,
            "period": 1,
            "fps": 32.0,
            "size": 112,
            "channels": 3,
            "normalisation": "unit",
            "pad": 0,
            "test_clip_stride": 16,
        },
        "train": {
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 0.0,
            "lr_step_epochs": None,
            "epochs": 100,
            "batch_size": 16,
        },
    },
    # D'ARTAGNAN's expert: grey 64-frame clips at 32 fps, /255, Adam 1e-4, lr x0.1 after 25
    # of 50 epochs (PAPERS.md §6); its batch size is not recorded, 16 as EchoDiffusion.
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
            "lr_step_epochs": 25,
            "lr_gamma": 0.1,
            "epochs": 50,
            "batch_size": 16,
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


def load_regressor(model_dir: str | Path) -> tuple[EFRegressor, ClipSpec]:
    """The exported model of :func:`train_regressor` and the clip settings it was trained with."""
    model_dir = Path(model_dir)
    clips_json = model_dir / "clips.json"
    if not clips_json.is_file():
        raise DataError(
            model_dir,
            "not an exported EF regressor (clips.json missing)",
            "point at the out_dir written by train_regressor",
        )
    spec = ClipSpec.from_dict(json.loads(clips_json.read_text()))
    return EFRegressor.from_pretrained(model_dir), spec


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
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    _check_pretrained(pretrained)
    manifest, state_dir, out_dir = Path(manifest), Path(state_dir), Path(out_dir)
    rows = read_manifest(manifest)
    train_rows = _split_rows(rows, "TRAIN", manifest)
    val_rows = _split_rows(rows, "VAL", manifest)
    train = config.train

    accelerator = Accelerator(cpu=device == "cpu", project_dir=str(state_dir))
    world = accelerator.num_processes
    steps_per_epoch = len(train_rows) // (train.batch_size * world)
    if steps_per_epoch == 0:
        raise DataError(
            manifest,
            f"{len(train_rows)} TRAIN videos do not fill one batch of "
            f"{train.batch_size} x {world} process(es)",
            "lower train.batch_size or add TRAIN videos",
        )
    total = train.epochs * steps_per_epoch
    if train.max_steps is not None:
        total = min(total, train.max_steps)

    spec = config.clips
    if spec.normalisation == "zscore" and (spec.mean is None or spec.std is None):
        mean, std = estimate_mean_std(train_rows, spec, seed=seed, root=root)
        spec = ClipSpec.from_dict({**spec.to_dict(), "mean": float(mean), "std": float(std)})
        log.info("clip normalisation from TRAIN: mean %.4f std %.4f", spec.mean, spec.std)
    resolved = RegressorConfig(model=config.model, clips=spec, train=train)
    # Everything that shapes the trajectory; a checkpoint only resumes a run with the same.
    fingerprint = jsonable(
        {
            "model": config.model,
            "clips": spec.to_dict(),
            "train": {k: v for k, v in train.to_dict().items() if k not in BUDGET_FIELDS},
            "seed": seed,
            "num_processes": world,
            "train_rows": _rows_digest(train_rows),
            "pretrained": pretrained,
        }
    )
    train_set = EFClipDataset(train_rows, spec, train=True, seed=seed, root=root)
    val_set = EFClipDataset(val_rows, spec, train=False, seed=seed, root=root)

    with deterministic():
        set_seed(seed)
        model = EFRegressor(**config.model)
        if pretrained is not None and pretrained["kind"] == "published":
            load_published_weights(model, pretrained["path"])
        elif pretrained is not None:
            load_kinetics_trunk(model, pretrained["path"])
        optimizer = _optimizer(model, train)
        scheduler = None
        if train.lr_step_epochs is not None:
            # Stepped per optimiser step so that a mid-epoch resume needs no special case;
            # registered (not prepared) so accelerate does not step it once per process.
            scheduler = StepLR(optimizer, train.lr_step_epochs * steps_per_epoch, train.lr_gamma)
            accelerator.register_for_checkpointing(scheduler)
        model, optimizer = accelerator.prepare(model, optimizer)

        progress = {"step": 0, "loss_sum": 0.0, "loss_count": 0, "log": []}
        record = resume(accelerator, state_dir, fingerprint)
        resumed_from = None
        if record is not None:
            progress = record["progress"]
            resumed_from = progress["step"]
            log.info("resuming at step %d of %d", resumed_from, total)

        step = progress["step"]
        bar = tqdm(
            total=total,
            initial=step,
            desc="train regressor",
            leave=False,
            disable=not accelerator.is_local_main_process,
        )
        while step < total:
            epoch, done = divmod(step, steps_per_epoch)
            train_set.set_epoch(epoch)
            order = _epoch_order(
                len(train_set), steps_per_epoch, train.batch_size, accelerator, seed, epoch
            )
            loader = DataLoader(
                train_set,
                batch_size=train.batch_size,
                sampler=order[done * train.batch_size :],
                num_workers=train.num_workers,
            )
            model.train()
            for clips, ef in loader:
                prediction = model(clips.to(accelerator.device))
                loss = F.mse_loss(prediction.float(), ef.to(accelerator.device).float())
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if scheduler is not None:
                    scheduler.step()
                step += 1
                progress["step"] = step
                progress["loss_sum"] += accelerator.reduce(loss.detach(), "mean").item()
                progress["loss_count"] += 1
                bar.update(1)
                if step % train.log_every == 0:
                    log.info(
                        "step %d/%d loss %.3f lr %.3g",
                        step,
                        total,
                        progress["loss_sum"] / progress["loss_count"],
                        optimizer.param_groups[0]["lr"],
                    )
                if step % steps_per_epoch == 0:
                    progress["log"].append(
                        _epoch_row(model, val_set, train, accelerator, epoch, step, progress)
                    )
                    progress.update(loss_sum=0.0, loss_count=0)
                    if accelerator.is_main_process:
                        write_log(state_dir / "log.csv", progress["log"], LOG_COLUMNS)
                if step % train.checkpoint_every == 0 or step == total:
                    record = {
                        "echogen_version": echogen.__version__,
                        "step": step,
                        "seed": seed,
                        "config": resolved.to_dict(),
                        "fingerprint": fingerprint,
                        "progress": progress,
                    }
                    save_checkpoint(accelerator, state_dir, record, train.checkpoints_total_limit)
                if step == total:
                    break
        bar.close()

        epoch_log = list(progress["log"])
        if progress["loss_count"]:
            # The budget ended mid-epoch: report that partial epoch too.
            epoch = step // steps_per_epoch
            epoch_log.append(_epoch_row(model, val_set, train, accelerator, epoch, step, progress))

    train_mean_ef = float(train_rows["EF"].mean())
    if accelerator.is_main_process:
        with atomic_dir(out_dir) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
            write_json(tmp / "clips.json", spec.to_dict())
            write_json(
                tmp / "train.json",
                {
                    "echogen_version": echogen.__version__,
                    "model": jsonable(config.model),
                    "train": train.to_dict(),
                    "seed": seed,
                    "steps": step,
                    "steps_per_epoch": steps_per_epoch,
                    "num_processes": world,
                    "n_train": len(train_rows),
                    "n_val": len(val_rows),
                    "train_mean_ef": train_mean_ef,
                    "pretrained": pretrained,
                },
            )
            write_log(tmp / "log.csv", epoch_log, LOG_COLUMNS)
        log.info("exported the regressor to %s", out_dir)
    accelerator.wait_for_everyone()
    return {
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "resumed_from": resumed_from,
        "train_mean_ef": train_mean_ef,
        "val_loss": epoch_log[-1]["val_loss"] if epoch_log else math.nan,
        "val_mae": epoch_log[-1]["val_mae"] if epoch_log else math.nan,
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


def _rows_digest(rows: pd.DataFrame) -> str:
    """sha256 of the rows' FileName and EF, in order: the training set a checkpoint belongs to."""
    pairs = zip(rows["FileName"], rows["EF"], strict=True)
    listing = json.dumps([[str(name), float(ef)] for name, ef in pairs])
    return hashlib.sha256(listing.encode()).hexdigest()


def _optimizer(model: EFRegressor, train: TrainSpec) -> torch.optim.Optimizer:
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=train.lr,
            momentum=train.momentum,
            weight_decay=train.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)


def _epoch_order(
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


@torch.no_grad()
def _validate(
    model, val_set: EFClipDataset, train: TrainSpec, accelerator: Accelerator
) -> tuple[float, float]:
    """MSE and MAE on the first clip of every VAL video (each process scores its share)."""
    net = accelerator.unwrap_model(model)  # no DDP collectives: processes score different rows
    net.eval()
    mine = list(range(accelerator.process_index, len(val_set), accelerator.num_processes))
    loader = DataLoader(
        val_set, batch_size=train.batch_size, sampler=mine, num_workers=train.num_workers
    )
    pairs = []
    for clips, ef in loader:
        prediction = net(clips.to(accelerator.device)).float().cpu()
        pairs += list(zip(prediction.tolist(), ef.float().tolist(), strict=True))
    pairs = np.asarray(gather_object(pairs), dtype=np.float64)
    error = pairs[:, 0] - pairs[:, 1]
    return float(np.mean(error**2)), float(np.mean(np.abs(error)))


def _epoch_row(model, val_set, train, accelerator, epoch: int, step: int, progress: dict) -> dict:
    val_loss, val_mae = _validate(model, val_set, train, accelerator)
    train_loss = progress["loss_sum"] / progress["loss_count"]
    log.info(
        "epoch %d (step %d): train loss %.3f, val loss %.3f, val MAE %.3f",
        epoch,
        step,
        train_loss,
        val_loss,
        val_mae,
    )
    return {
        "epoch": epoch,
        "step": step,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_mae": val_mae,
    }
