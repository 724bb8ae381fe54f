"""D'ARTAGNAN's adversarial training of the twin-network generator on the trainer engine.

As ``pl_modules/models/video_trainer.py`` of HReynaud/dartagnan (``/work/shared/PAPERS.md``
§6), every step takes a batch of clips ``Z`` with their EFs ``X`` and draws counterfactual
EFs ``X*`` at least ``margin`` points away (:func:`~echogen.models.dartagnan.
counterfactual_efs`); the generator makes the factual ``Y`` and counterfactual ``Y*``
videos, and then, in the reference's order:

1. the discriminator steps on the real clips (L1 of its probability to 1);
2. it steps again on ``Y*`` detached (L1 to 0);
3. the generator steps on ``w_d * L1(D(Y*), 1) + w_r * L1(Y, Z) + w_e * L1(E(Y*)/100, X*)``
   with the frozen EF expert ``E`` and the discriminator frozen.

Each weight ramps in as ``w * sigmoid(epoch - offset)`` (offset 3; 0 switches the ramp off).
Both optimisers are Adam at 1e-4; the reference's ExponentialLR divides the rate by
``lr_decay`` (10) over ``decay_epochs`` (25) but is stepped only while the epoch is below
``max_lr_decay`` (the same 10, a quirk of its ``training_epoch_end``), so it stops after 10
epochs at 1e-4 / 10^(10/25): ``decay_until`` (10) keeps that, None decays for all 25.

Everything random is a function of ``(seed, step, process)``: the counterfactual EFs and the
noise of every step, the fixed VAL targets and noise; the data order is that of
``(seed, epoch)``. Validation (every epoch, on VAL) gives the reconstruction L1, the
expert's EF error on the counterfactuals (EF points) and their weighted sum ``val_loss``
(the reference keeps the checkpoint of the lowest generator loss on the first VAL batch;
``select: best_val`` keeps the lowest ``val_loss`` over all of VAL).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from echogen.data.clips import DartagnanClipSet, read_metainfo
from echogen.models.dartagnan import (
    DISCRIMINATOR_DIR,
    GENERATOR_DIR,
    build_discriminator,
    build_generator,
    counterfactual_efs,
    expert_input,
    load_expert,
)
from echogen.training import gan
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

LOSS_COLUMNS = ["d_real", "d_fake", "g_adv", "g_rec", "g_ef"]
VAL_COLUMNS = ["val_rec", "val_ef_mae", "val_loss"]
LOG_COLUMNS = ["epoch", "step", *LOSS_COLUMNS, *VAL_COLUMNS]
BUDGET_FIELDS = ("epochs", "max_steps", "checkpoint_every", "checkpoints_total_limit",
                 "log_every", "num_workers")  # fmt: skip
# Random streams: the counterfactual EFs and noise of training steps, and of VAL videos.
STEP_STREAM, VAL_STREAM = 11, 12


@dataclass(frozen=True)
class DartagnanTrainConfig(TrainSettings):
    """D'ARTAGNAN's optimisation (the reference's defaults; ``utils/arguments.py``).

    Args:
        batch_size (int, 2): clips per process per step (the README's command).
        epochs (int, 50): epochs of the full budget.
        max_steps (int | None, None): cap on the steps (None: ``epochs`` epochs).
        lr_generator (float, 1e-4): Adam's rate for the generator.
        lr_discriminator (float, 1e-4): Adam's rate for the discriminator.
        lr_decay (float, 10.0): the rate is divided by this over ``decay_epochs`` epochs.
        decay_epochs (int, 25): see ``lr_decay``: the rate of epoch ``e`` is
            ``lr * lr_decay ** (-min(e, decay_until) / decay_epochs)``.
        decay_until (int | None, 10): the epoch the decay stops at; the reference's
            scheduler stops after 10 epochs (it compares the epoch with ``max_lr_decay``);
            None: ``decay_epochs``.
        recon_weight, expert_weight, disc_weight (float, 1.0): loss weights.
        recon_offset, expert_offset, disc_offset (int, 3): each weight is multiplied by
            ``sigmoid(epoch - offset)``; 0: no ramp.
        margin (float, 10.0): a counterfactual EF is at least this far from the true EF.
        size (int, 112): clips are resized to ``size x size`` (112: the processed clips'
            native size; the demo trains smaller).
        frames (int, 64): frames of a clip (the processed clips' length).
        select (str, "last"): export the last weights or those of the lowest ``val_loss``.
        precision (str, "fp32"): ``"fp16"`` trains with autocast on a GPU (the reference
            runs in half precision); ``"bf16"`` with bf16 autocast.
        checkpoint_every (int, 500), checkpoints_total_limit (int, 2), log_every (int, 10),
        num_workers (int, 0): the engine's cadences and the loader's workers.
    """

    batch_size: int = 2
    epochs: int = 50
    max_steps: int | None = None
    lr_generator: float = 1e-4
    lr_discriminator: float = 1e-4
    lr_decay: float = 10.0
    decay_epochs: int = 25
    decay_until: int | None = 10
    recon_weight: float = 1.0
    expert_weight: float = 1.0
    disc_weight: float = 1.0
    recon_offset: int = 3
    expert_offset: int = 3
    disc_offset: int = 3
    margin: float = 10.0
    size: int = 112
    frames: int = 64
    select: str = "last"
    precision: str = "fp32"
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    log_every: int = 10
    num_workers: int = 0

    label: ClassVar[str] = "D'ARTAGNAN"
    positive: ClassVar[tuple[str, ...]] = (*TrainSettings.positive, "decay_epochs", "size",
                                           "frames")  # fmt: skip

    def __post_init__(self):
        self.check_engine_fields()
        if self.size % 2 or self.frames % 2:
            raise ValueError(f"train.size and train.frames must be even, got {self.size}, "
                             f"{self.frames}")  # fmt: skip
        if min(self.lr_generator, self.lr_discriminator) <= 0 or self.lr_decay < 1:
            raise ValueError("learning rates must be > 0 and lr_decay >= 1")
        if not 0 < self.margin < 50:
            raise ValueError(f"train.margin must be in (0, 50), got {self.margin}")
        if self.decay_until is not None and self.decay_until < 0:
            raise ValueError("train.decay_until must be None or >= 0")

    def lr_factor(self, epoch: int) -> float:
        """The learning rates' factor in ``epoch`` (0-based)."""
        until = self.decay_epochs if self.decay_until is None else self.decay_until
        return self.lr_decay ** (-min(epoch, until) / self.decay_epochs)

    def weights(self, epoch: int) -> dict[str, float]:
        """The three loss weights of ``epoch``, ramped by ``sigmoid(epoch - offset)``."""

        def ramp(weight: float, offset: int) -> float:
            return weight / (1.0 + math.exp(offset - epoch)) if offset > 0 else weight

        return {
            "recon": ramp(self.recon_weight, self.recon_offset),
            "expert": ramp(self.expert_weight, self.expert_offset),
            "disc": ramp(self.disc_weight, self.disc_offset),
        }


class DartagnanTask(Task):
    """The generator and discriminator of D'ARTAGNAN for the trainer engine (epoch task)."""

    name = "D'ARTAGNAN"
    log_columns = LOG_COLUMNS
    select_metric = "val_loss"
    select_mode = "min"

    def __init__(self, models: dict, config: DartagnanTrainConfig, train_set, val_set,
                 expert_dir: Path, steps_per_epoch: int, seed: int, records: dict):  # fmt: skip
        self.models, self.config = models, config
        self.train_set, self.val_set, self.expert_dir = train_set, val_set, Path(expert_dir)
        self.steps_per_epoch, self.seed, self.records = steps_per_epoch, seed, records
        self.select = config.select
        self.epoch = 0

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        generator = build_generator(**self.models["generator"])
        discriminator = build_discriminator(**self.models["discriminator"])
        self.expert, self.expert_spec = load_expert(self.expert_dir, accelerator.device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=self.config.lr_generator)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=self.config.lr_discriminator)
        self.generator, self.discriminator, self.opt_g, self.opt_d = accelerator.prepare(
            generator, discriminator, opt_g, opt_d
        )
        return self.generator

    def fingerprint(self) -> dict:
        def public(model) -> dict:  # diffusers adds private keys in no fixed order
            config = getattr(model, "module", model).config
            return {k: v for k, v in config.items() if not k.startswith("_")}

        return {"generator_config": public(self.generator),
                "discriminator_config": public(self.discriminator)}  # fmt: skip

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        self.epoch = epoch
        factor = self.config.lr_factor(epoch)
        for opt, lr in ((self.opt_g, self.config.lr_generator),
                        (self.opt_d, self.config.lr_discriminator)):  # fmt: skip
            for group in opt.param_groups:
                group["lr"] = lr * factor
        return epoch_loader(self.train_set, self.steps_per_epoch, self.config.batch_size,
                            accelerator, self.seed, epoch, start,
                            self.config.num_workers)  # fmt: skip

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        device = accelerator.device
        clips, ef = batch
        clips = clips.to(device)
        rng, noise_seed = gan.seeded(self.seed, STEP_STREAM, step, accelerator.process_index)
        ef_star = torch.tensor(counterfactual_efs(ef.numpy(), self.config.margin, rng) / 100.0,
                               dtype=torch.float32, device=device)  # fmt: skip
        ef = (ef / 100.0).to(device)
        w = self.config.weights(self.epoch)
        self.generator.train()
        self.discriminator.train()
        noise = torch.Generator(device=device).manual_seed(noise_seed)
        with accelerator.autocast():
            factual, counterfactual = self.generator(ef, ef_star, clips, noise)
        # 1-2: the discriminator on real clips, then on the detached counterfactuals.
        losses = {}
        for key, video, label in (("d_real", clips, 1.0), ("d_fake", counterfactual.detach(), 0.0)):
            with accelerator.autocast():
                p = self.discriminator(video)
                loss = F.l1_loss(p.float(), torch.full_like(p.float(), label))
            accelerator.backward(loss)
            gan.step((self.opt_d, True))
            losses[key] = loss.detach()
        # 3: the generator, with the discriminator frozen and the expert fixed.
        with gan.discriminator_frozen(accelerator, self.discriminator) as disc, \
                accelerator.autocast():  # fmt: skip
            p = disc(counterfactual).float()
            losses["g_adv"] = F.l1_loss(p, torch.ones_like(p))
            losses["g_rec"] = F.l1_loss(factual.float(), clips)
            regressed = self.expert(expert_input(counterfactual, self.expert_spec)).float()
            losses["g_ef"] = F.l1_loss(regressed / 100.0, ef_star)
            loss = w["disc"] * losses["g_adv"] + w["recon"] * losses["g_rec"] \
                + w["expert"] * losses["g_ef"]  # fmt: skip
        accelerator.backward(loss)
        gan.step((self.opt_g, True))
        return {k: accelerator.reduce(v.detach(), "mean").item() for k, v in losses.items()}

    @torch.no_grad()
    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        """Reconstruction L1, the expert's EF error on the counterfactuals (EF points) and
        ``val_loss`` (the epoch's weighted sum of the two) over every VAL clip."""
        net = accelerator.unwrap_model(self.generator)
        net.eval()
        rec, ef_err = [], []
        for index in range(len(self.val_set)):
            clip, ef = self.val_set[index]
            rng, noise_seed = gan.seeded(self.seed, VAL_STREAM, index)
            target = counterfactual_efs(np.array([ef]), self.config.margin, rng) / 100.0
            device = accelerator.device
            noise = torch.Generator(device=device).manual_seed(noise_seed)
            video = torch.from_numpy(clip)[None].to(device)
            factual, counterfactual = net(torch.tensor([ef / 100.0], device=device),
                                          torch.tensor(target, dtype=torch.float32,
                                                       device=device), video, noise)  # fmt: skip
            regressed = self.expert(expert_input(counterfactual, self.expert_spec)).float()
            rec.append(F.l1_loss(factual.float(), video).item())
            ef_err.append(abs(regressed.item() - 100.0 * float(target[0])))
        w = self.config.weights(self.epoch)
        val_rec, val_ef = float(np.mean(rec)), float(np.mean(ef_err))
        return {"val_rec": val_rec, "val_ef_mae": val_ef,
                "val_loss": w["recon"] * val_rec + w["expert"] * val_ef / 100.0}  # fmt: skip

    def export(self, folder: Path, model: torch.nn.Module, result: RunResult) -> dict:
        model.save_pretrained(folder / GENERATOR_DIR)
        accelerator_free = getattr(self.discriminator, "module", self.discriminator)
        accelerator_free.save_pretrained(folder / DISCRIMINATOR_DIR)
        return {
            **self.records,
            "train": self.config.to_dict(),
            "models": self.models,
            "expert_clips": self.expert_spec.to_dict(),
        }


def resolve_models(generator: dict | None, discriminator: dict | None) -> dict:
    """``{"generator": {...}, "discriminator": {...}}`` keyword arguments of
    :func:`build_generator`/:func:`build_discriminator` (``preset`` plus overrides), checked
    by building them."""
    models = {"generator": {"preset": "reference", **(generator or {})},
              "discriminator": {"preset": "reference", **(discriminator or {})}}  # fmt: skip
    build_generator(**models["generator"])
    build_discriminator(**models["discriminator"])
    return models


def train_dartagnan(
    metainfo: str | Path,
    expert_dir: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    generator: dict | None = None,
    discriminator: dict | None = None,
    train: dict | DartagnanTrainConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    root: str | Path = ".",
) -> dict:
    """Train D'ARTAGNAN's generator on the TRAIN clips of a ``metainfo.csv``, against the
    frozen EF expert ``expert_dir`` (an exported regressor).

    ``out_dir`` is replaced atomically at the end by ``generator/`` and ``discriminator/``
    (``save_pretrained`` folders), ``train.json`` and ``log.csv``; ``state_dir`` holds the
    resumable checkpoints (a run finding one resumes, bit for bit on one device).

    Args:
        metainfo: ``resources/dartagnan/<dataset>/metainfo.csv``.
        expert_dir: the EF expert's model folder (``results/models/regressor_<name>``).
        out_dir: the model folder.
        state_dir: the training state (not a workflow output).
        generator: ``preset`` and overrides of the generator (:data:`GENERATOR_PRESETS`).
        discriminator: likewise for the discriminator.
        train: :class:`DartagnanTrainConfig` or its fields.
        seed: the run's seed.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        root: folder that the metainfo's ``Path`` column is relative to.
    """
    config = train if isinstance(train, DartagnanTrainConfig) else \
        DartagnanTrainConfig.from_dict(train)  # fmt: skip
    models = resolve_models(generator, discriminator)
    train_rows, val_rows = read_metainfo(metainfo, "TRAIN"), read_metainfo(metainfo, "VAL")
    accelerator = accelerator_for(device, state_dir, mixed_precision(config.precision, device))
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(train_rows), config.batch_size, world, metainfo)
    budget = Budget.of(config, per_epoch)
    expert_record = Path(expert_dir) / "train.json"
    fingerprint = {
        "models": models,
        "train": {k: v for k, v in config.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(train_rows, {"FileName": str, "EF": float}),
        "expert": json.loads(expert_record.read_text()) if expert_record.is_file() else None,
    }
    task = DartagnanTask(
        models, config,
        DartagnanClipSet(train_rows, config.frames, config.size, root),
        DartagnanClipSet(val_rows, config.frames, config.size, root),
        Path(expert_dir), budget.steps_per_epoch, seed,
        records={"metainfo": str(metainfo), "expert": str(expert_dir),
                 "n_train": len(train_rows), "n_val": len(val_rows),
                 "fps": float(train_rows["FPS"].iloc[0])},
    )  # fmt: skip
    result = engine_train(task, accelerator, state_dir=state_dir, out_dir=out_dir, budget=budget,
                          seed=seed, fingerprint=fingerprint,
                          config={"models": models, "train": config.to_dict()})  # fmt: skip
    return {"steps": result.step, "steps_per_epoch": per_epoch,
            "resumed_from": result.resumed_from, "val_ef_mae": result.last("val_ef_mae"),
            "val_rec": result.last("val_rec"), "out_dir": str(out_dir)}  # fmt: skip
