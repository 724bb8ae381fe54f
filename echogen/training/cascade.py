"""Training one stage of EchoDiffusion's cascade on the trainer engine.

EchoDiffusion (``diffusion/train.py`` of HReynaud/EchoDiffusion, ``/work/shared/PAPERS.md`` §3)
trains each stage of its cascade on its own with imagen-pytorch's ``ImagenTrainer``: the
whole ``ElucidatedImagen`` is built, and one stage's ``Unet3D`` learns the EDM denoising loss
on full-size, full-rate clips that the cascade itself resizes in space and time for that stage
(and, for a super-resolution stage, degrades into its low-resolution conditioning). The
conditioning is EF/100 as a one-token text embedding and a random frame of the clip. Its
optimiser is Adam (lr 5e-4 from the configs; beta 0.9/0.99, eps 1e-8, no weight decay, no
clipping: ``ImagenTrainer``'s defaults) and an EMA copy of the stage is kept (``ema_pytorch``
defaults: beta 0.9999, updates from step 100, every 10 steps), which is what the reference
samples with. ``train.py --ignore_time p`` makes a step an image step (no temporal layers)
when ``step % (1 / p) == 0``: every 4th step, from step 0, at the paper's ``p = 0.25``
(``ignore_time_schedule="periodic"``, the default); ``"random"`` makes each step one with
probability ``p`` instead.

:class:`CascadeStageTask` does the same on the engine: the batch of step ``s`` (which clips,
their windows and conditioning frames, whether the step ignores time) is a function of
``(seed, s)`` alone and the EDM draws come from the checkpointed global RNG, so a stage cut
anywhere and re-run ends with the same weights as a straight run. Unlike the reference's
loop, the budget is finite (``max_steps``) and there is no merge step: each stage exports its
own folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from echogen.data.cascade_clips import CascadeClipDataset, cascade_clip_spec
from echogen.data.io import write_json
from echogen.data.manifest import read_manifest
from echogen.models.cascade import (
    STAGE_FILE,
    STAGE_WEIGHTS,
    build_cascade,
    output_size,
    resolve_cascade,
)
from echogen.training.engine import Budget, RunResult, Task, accelerator_for
from echogen.training.engine import train as engine_train
from echogen.training.state import jsonable
from echogen.training.supervised import rows_digest

log = logging.getLogger(__name__)

LOG_COLUMNS = ["step", "loss", "lr"]
IGNORE_TIME_SCHEDULES = ("periodic", "random")
# CascadeTrainSpec fields that only say how long or how often: a run may be resumed with other
# values and follow the same trajectory.
BUDGET_FIELDS = ("max_steps", "checkpoint_every", "checkpoints_total_limit", "log_every")
WEIGHTS, EMA_WEIGHTS = STAGE_WEIGHTS["model"], STAGE_WEIGHTS["ema"]


@dataclass(frozen=True)
class CascadeTrainSpec:
    """Optimisation and budget of one cascade stage.

    Args:
        lr (float, 5e-4): Adam learning rate (EchoDiffusion's configs).
        beta1 (float, 0.9): Adam beta1 (ImagenTrainer's default).
        beta2 (float, 0.99): Adam beta2 (ImagenTrainer's default).
        eps (float, 1e-8): Adam epsilon.
        max_grad_norm (float | None, None): clip the stage's gradient norm; None = no clipping
            (ImagenTrainer's default).
        batch_size (int, 8): clips per process per step (EchoDiffusion's ``dataloader.
            batch_size``; its trainer does not split batches across processes).
        ignore_time (float, 0.25): share of steps that train the stage as an image model
            (``ignore_time=True``: temporal layers skipped), EchoDiffusion's ``--ignore_time``.
        ignore_time_schedule (str, "periodic"): ``periodic`` = the reference's steps with
            ``step % (1 / ignore_time) == 0``; ``random`` = each step with that probability.
        ema_beta (float, 0.9999): EMA decay of the exported ``unet_ema`` weights.
        ema_update_after_step (int, 100): the EMA copies the weights until this step.
        ema_update_every (int, 10): the EMA updates every this many steps.
        max_steps (int, 100000): optimiser steps of the budget (the reference never stops).
        checkpoint_every (int, 1000): save the state every this many steps (and at the end).
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        log_every (int, 50): a log row every this many steps.
    """

    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    max_grad_norm: float | None = None
    batch_size: int = 8
    ignore_time: float = 0.25
    ignore_time_schedule: str = "periodic"
    ema_beta: float = 0.9999
    ema_update_after_step: int = 100
    ema_update_every: int = 10
    max_steps: int = 100000
    checkpoint_every: int = 1000
    checkpoints_total_limit: int = 2
    log_every: int = 50

    def __post_init__(self):
        if self.lr <= 0 or self.eps <= 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("lr and eps must be > 0 and the Adam betas in [0, 1)")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be None or > 0, got {self.max_grad_norm}")
        if not 0 <= self.ignore_time <= 1 or not 0 <= self.ema_beta <= 1:
            raise ValueError("ignore_time and ema_beta must lie in [0, 1]")
        if self.ignore_time_schedule not in IGNORE_TIME_SCHEDULES:
            raise ValueError(f"ignore_time_schedule must be one of {IGNORE_TIME_SCHEDULES}, "
                             f"got {self.ignore_time_schedule!r}")  # fmt: skip
        positive = ["batch_size", "ema_update_every", "checkpoint_every"]
        for name in [*positive, "checkpoints_total_limit", "log_every"]:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0 or self.ema_update_after_step < 0:
            raise ValueError("max_steps and ema_update_after_step must be >= 0")

    def image_step(self, step: int, rng: np.random.Generator) -> bool:
        """Whether 0-based ``step`` ignores time (trains the stage on images)."""
        if self.ignore_time <= 0:
            return False
        if self.ignore_time_schedule == "periodic":
            return step % (1 / self.ignore_time) == 0  # the reference's test, floats and all
        return bool(rng.random() < self.ignore_time)

    def to_dict(self) -> dict:
        return asdict(self)


class CascadeStageTask(Task):
    """One stage of a cascade for the trainer engine: the EDM loss of ``ElucidatedImagen`` on
    that stage, Adam, an EMA copy; a log row (mean loss, lr) every ``log_every`` steps.

    Args:
        unets: every stage's ``Unet3D`` arguments (the cascade is built whole, as the
            reference builds it, so the stage sees its sizes and low-resolution conditioning).
        imagen: the cascade's ``ElucidatedImagen`` arguments.
        stage: the stage trained, 1-based.
        spec: optimisation and budget.
        dataset: the clips (:class:`~echogen.data.cascade_clips.CascadeClipDataset`).
        seed: seeds every step's batch.
        records: the task's keys of ``train.json``.
    """

    name = "cascade"
    log_columns = LOG_COLUMNS

    def __init__(
        self,
        unets: list[dict],
        imagen: dict,
        stage: int,
        spec: CascadeTrainSpec,
        dataset: CascadeClipDataset,
        seed: int,
        records: dict,
    ):
        self.unets, self.imagen, self.stage, self.spec = unets, imagen, stage, spec
        self.dataset, self.seed, self.records = dataset, seed, records
        self.cascade = self.unet = self.optimizer = self.ema = None

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        from ema_pytorch import EMA

        spec = self.spec
        cascade = build_cascade(self.unets, self.imagen).to(accelerator.device)
        unet = cascade.unets[self.stage - 1]
        optimizer = torch.optim.Adam(
            unet.parameters(), lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps
        )
        self.unet, self.optimizer = accelerator.prepare(unet, optimizer)
        self.cascade = cascade
        self.ema = EMA(
            accelerator.unwrap_model(self.unet),
            beta=spec.ema_beta,
            update_after_step=spec.ema_update_after_step,
            update_every=spec.ema_update_every,
            include_online_model=False,
        ).to(accelerator.device)
        accelerator.register_for_checkpointing(self.ema)
        return self.unet

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        """Step ``s``'s clips, this process's share: videos ``(B, C, T, H, W)`` in [0, 1],
        EF/100 ``(B, 1, 1)``, conditioning frames ``(B, C, H, W)``, and whether the step
        ignores time (the same on every process)."""
        per, world = self.spec.batch_size, accelerator.num_processes
        rank = accelerator.process_index
        n = len(self.dataset)
        for step in range(start, self.spec.max_steps):
            rng = np.random.default_rng([self.seed, step])
            chosen = rng.choice(n, size=per * world, replace=n < per * world)
            ignore_time = self.spec.image_step(step, rng)
            self.dataset.set_epoch(step)
            items = [self.dataset[int(i)] for i in chosen[rank * per : (rank + 1) * per]]
            videos, ef, cond = (torch.stack(parts) for parts in zip(*items, strict=True))
            yield videos, ef, cond, ignore_time

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        videos, ef, cond, ignore_time = batch
        device = accelerator.device
        self.unet.train()
        loss = self.cascade(
            videos.to(device),
            unet=self.unet,
            text_embeds=ef.to(device),
            cond_images=cond.to(device),
            unet_number=self.stage,
            ignore_time=ignore_time,
        )
        accelerator.backward(loss)
        if self.spec.max_grad_norm is not None:
            accelerator.clip_grad_norm_(self.unet.parameters(), self.spec.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update()
        return {"loss": accelerator.reduce(loss.detach(), "mean").item()}

    def row(self, sums: dict[str, float], count: int) -> dict[str, float]:
        return {"loss": sums["loss"] / count, "lr": self.optimizer.param_groups[0]["lr"]}

    def export(self, folder: Path, model: torch.nn.Module, result: RunResult) -> dict:
        """``unet.safetensors`` (online weights), ``unet_ema.safetensors`` (the EMA copy) and
        ``stage.json`` (the stage number, the whole cascade's configuration and ``video``:
        the frame rate, frame count and channels of the cascade's output clips)."""
        save_file(_contiguous(model.state_dict()), folder / WEIGHTS)
        save_file(_contiguous(self.ema.ema_model.state_dict()), folder / EMA_WEIGHTS)
        clips = self.records["clips"]
        video = {"fps": clips["fps"], "frames": clips["frames"], "channels": clips["channels"],
                 "cond_frame": self.dataset.cond_frame}  # fmt: skip
        stage = {"stage": self.stage, "unets": self.unets, "imagen": self.imagen, "video": video}
        write_json(folder / STAGE_FILE, jsonable(stage))
        return {**self.records, "train": self.spec.to_dict(), "stage": self.stage}


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def train_cascade_stage(
    rows: pd.DataFrame,
    out_dir: str | Path,
    state_dir: str | Path,
    unets: list[dict],
    imagen: dict,
    stage: int,
    train: CascadeTrainSpec | dict,
    seed: int,
    fps: float,
    duration: float = 2.0,
    size: int | None = None,
    device: str = "cpu",
    root: str | Path = ".",
    cond_frame: str = "window",
) -> dict:
    """Train stage ``stage`` of a cascade on the TRAIN rows of a manifest.

    Args:
        rows: manifest rows (FileName, EF, FPS, Path); the TRAIN ones train.
        out_dir: export folder, replaced atomically at the end: :data:`WEIGHTS`,
            :data:`EMA_WEIGHTS`, :data:`STAGE_FILE`, ``train.json`` and ``log.csv``.
        state_dir: the resumable state (not a workflow output).
        unets: every stage's ``Unet3D`` arguments.
        imagen: the cascade's ``ElucidatedImagen`` arguments (image sizes, temporal
            downsampling, EDM settings).
        stage: the stage to train, 1-based.
        train: a :class:`CascadeTrainSpec` or a dict of its fields.
        seed: seeds the initialisation, the batches and the EDM draws.
        fps: the clips' frame rate: the cascade's last (EchoDiffusion's ``dataset.fps``; the
            cascade downsamples time for earlier stages).
        duration: clip length in seconds (2.0 in every published model).
        size: frame size of the clips; default the cascade's last image size.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        root: folder that the ``Path`` column is relative to.
        cond_frame: the conditioning image of each clip
            (:data:`~echogen.data.cascade_clips.COND_FRAMES`): ``"window"`` (EchoDiffusion's
            random frame of the clip) or ``"end_diastole"`` (the traced ED frame; a
            deviation). Recorded in ``stage.json``'s ``video``, so sampling conditions the same
            way.

    Returns:
        Summary: steps, resumed_from, n_train, last_loss, out_dir.
    """
    spec = train if isinstance(train, CascadeTrainSpec) else CascadeTrainSpec(**train)
    if not 1 <= stage <= len(unets):
        raise ValueError(f"stage must be in 1..{len(unets)}, got {stage}")
    size = int(size or output_size(imagen))
    train_rows = rows[rows["Split"] == "TRAIN"].reset_index(drop=True)
    train_rows.attrs = rows.attrs
    if train_rows.empty:
        raise ValueError("no TRAIN rows: the cascade trains on the manifest's TRAIN videos")
    clip_spec = cascade_clip_spec(fps, duration, size, imagen.get("channels", 3))
    dataset = CascadeClipDataset(train_rows, clip_spec, seed, root, cond_frame)
    # Image steps (ignore_time) leave the temporal layers without gradients: DDP must allow
    # unused parameters, as ImagenTrainer sets it.
    accelerator = accelerator_for(device, state_dir, find_unused_parameters=True)
    fingerprint = {
        "unets": unets,
        "imagen": imagen,
        "stage": stage,
        "clips": clip_spec.to_dict(),
        "train": {k: v for k, v in spec.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": accelerator.num_processes,
        "train_rows": rows_digest(train_rows, {"FileName": str, "EF": float}),
    }
    if cond_frame != "window":  # only then, so that runs from before the switch still resume
        fingerprint["cond_frame"] = cond_frame
    records = {"n_train": len(train_rows), "clips": clip_spec.to_dict(), "fps": fps}
    task = CascadeStageTask(unets, imagen, stage, spec, dataset, seed, records)
    result = engine_train(
        task,
        accelerator,
        state_dir=state_dir,
        out_dir=out_dir,
        budget=Budget.of(spec),
        seed=seed,
        fingerprint=jsonable(fingerprint),
    )
    return {
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "n_train": len(train_rows),
        "last_loss": result.last("loss"),
        "out_dir": str(out_dir),
    }


def train_cascade_stage_from_config(
    manifest: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    model: dict,
    stage: int,
    seed: int,
    device: str = "cpu",
    root: str | Path = ".",
) -> dict:
    """:func:`train_cascade_stage` from one ``cascade.models.<name>`` config entry (the
    workflow's form, JSON-able for ``echogen.workflow.run_distributed``).

    The entry's ``structure``, ``preset``, ``unet``, ``imagen``, ``fps``, ``duration`` and
    ``batch_sizes`` give the cascade (:func:`~echogen.models.cascade.resolve_cascade`); the
    stage's batch size is its entry of ``batch_sizes``; ``train`` holds the other
    :class:`CascadeTrainSpec` fields; ``cond_frame`` (default ``"window"``) which frame
    conditions each clip.

    Raises:
        ValueError: ``train`` sets ``batch_size`` (per stage, ``batch_sizes`` says it), or
            the stage is not one of the cascade's.
    """
    cascade = resolve_cascade(model)
    train = dict(model.get("train") or {})
    if "batch_size" in train:
        raise ValueError(
            "cascade train settings hold no batch_size: each stage has its own, set "
            f"batch_sizes (one per stage, per process; now {cascade['batch_sizes']})"
        )
    if not 1 <= stage <= len(cascade["unets"]):
        raise ValueError(f"stage must be in 1..{len(cascade['unets'])}, got {stage}")
    train["batch_size"] = cascade["batch_sizes"][stage - 1]
    return train_cascade_stage(
        read_manifest(manifest),
        out_dir,
        state_dir,
        cascade["unets"],
        cascade["imagen"],
        stage,
        train,
        seed,
        fps=cascade["fps"],
        duration=cascade["duration"],
        device=device,
        root=root,
        cond_frame=model.get("cond_frame", "window"),
    )
