"""Latent image diffusion training (EchoNet-Synthetic's LIDM; EchoDream's class variant).

One optimiser step draws, for item ``i`` of step ``s``, a TRAIN video uniformly and one of
its latent frames uniformly from ``numpy.random.default_rng([seed, 0, s, i])`` (the
reference's ``Latent`` dataset with ``outputs: [image]``), noises it with the LVDM's DDPM
schedule, and regresses the v-prediction target with MSE inside the unpadded latent (the
UNet sees the noised latent replicate-padded, :func:`echogen.models.lidm.denoise`). Class
models replace the class token by the null token with probability ``cond_dropout``. The
optimisation settings are :class:`~echogen.training.lvdm.LVDMTrainConfig`'s (the reference
trains both models with the same script shape); the noise, timesteps and dropout of a step
come from ``(seed, step)`` alone (:func:`~echogen.training.lvdm.step_noise`), so a killed
run resumes to the weights of an uninterrupted one, bit for bit on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from echogen.data.errors import DataError
from echogen.models.lidm import (
    LIDM_PRESETS,
    LIDMSpec,
    build_lidm_unet,
    class_tokens,
    denoise,
    null_tokens,
    save_lidm,
)
from echogen.models.lvdm import build_scheduler
from echogen.training.engine import Budget, RunResult, accelerator_for
from echogen.training.engine import train as engine_train
from echogen.training.lvdm import (
    BUDGET_FIELDS,
    DiffusionTask,
    LatentClipDataset,
    LVDMTrainConfig,
    make_spec,
    resolve_train_config,
    step_noise,
)
from echogen.training.state import jsonable

LIDM_TRAIN_PRESETS: dict[str, dict] = {
    # EchoNet-Synthetic's LIDMs (echosyn/lidm/configs/{dynamic,ped_a4c,ped_psax}.yaml):
    # batch 256 per process, lr 3e-4 (constant), 500k steps, no noise offset, EMA.
    "paper": {
        "unet": "paper",
        "conditioning": "none",
        "train": {
            "lr": 3e-4,
            "batch_size": 256,
            "batch_per": "process",
            "max_steps": 500_000,
            "noise_offset": 0.0,
            "cond_dropout": 0.0,
            "dropout_target": "token",
            "ema_decay": 0.9999,
        },
    },
    # EchoDream's class-conditional LIDM (echo/lidm/configs/cardiacnet.yaml): 5,000 steps;
    # its train.py zeroes the class token with p 0.3 (`drop_conditioning`; the config's
    # misspelt `drop_conditionning: 0.1` never reaches it).
    "echodream_class": {
        "unet": "paper",
        "conditioning": "class",
        "train": {
            "lr": 3e-4,
            "batch_size": 256,
            "batch_per": "process",
            "max_steps": 5_000,
            "noise_offset": 0.0,
            "cond_dropout": 0.3,
            "dropout_target": "token",
            "ema_decay": 0.9999,
        },
    },
    # CPU-sized, for tests and the phantom demo.
    "tiny": {
        "unet": "tiny",
        "conditioning": "none",
        "train": {
            "lr": 1e-3,
            "batch_size": 8,
            "max_steps": 200,
            "noise_offset": 0.0,
            "cond_dropout": 0.1,
            "dropout_target": "token",
            "ema_decay": 0.99,
            "checkpoint_every": 100,
            "log_every": 10,
        },
    },
}


class LatentFrameDataset(LatentClipDataset):
    """Single latent frames of the TRAIN videos (every video with at least one frame).

    :meth:`frame` draws item ``i`` of step ``s`` from ``numpy.random.default_rng([seed, 0,
    s, i])``: a video uniformly, then one of its frames uniformly. Indexed by ``step *
    batch_size + i`` as a torch ``Dataset``; the arguments and errors are
    :class:`~echogen.training.lvdm.LatentClipDataset`'s with an :class:`LIDMSpec`.
    """

    def _value(self, row: dict, csv, line: int):
        return super()._value(row, csv, line) if self.spec.conditioning == "class" else 0

    def frame(self, seed: int, step: int, i: int) -> dict:
        """Item ``i`` of step ``step``: ``latent`` float32 (C, h, w) unpadded, ``value``
        (class id; 0 for unconditional models), ``video`` and ``frame``."""
        rng = np.random.default_rng([seed, 0, step, i])
        video = int(rng.integers(len(self.names)))
        frame = int(rng.integers(self.frames[video]))
        array = np.load(self.paths[video], mmap_mode="r")
        latent = torch.from_numpy(np.asarray(array[frame], np.float32))
        return {"latent": latent, "value": self.values[video], "video": video, "frame": frame}

    def __getitem__(self, index: int) -> dict:
        step, i = divmod(int(index), self.batch_size)
        return self.frame(self.seed, step, i)


def _collate(items: list[dict]) -> dict:
    return {
        "latent": torch.stack([it["latent"] for it in items]),  # (B, C, h, w)
        "value": [it["value"] for it in items],
    }


def make_lidm_spec(
    latent_indexes: list[str | Path],
    conditioning: str,
    pad_to: int = 16,
    root: str | Path = ".",
    class_null: str = "distinct",
) -> LIDMSpec:
    """An :class:`LIDMSpec` whose latent shape, scaling factor and classes come from data
    (:func:`~echogen.training.lvdm.make_spec` reads them).

    Raises:
        DataError: as ``make_spec``; or class conditioning on indexes without classes.
    """
    base = make_spec(latent_indexes, "ef", 1, pad_to=pad_to, root=root)
    if conditioning == "class" and not base.class_map:
        raise DataError(
            ", ".join(str(c) for c in latent_indexes),
            "a class-conditioned LIDM needs class_name and class_id columns",
            "train it on a dataset with classes (e.g. CardiacNet) or set conditioning: none",
        )
    return LIDMSpec(
        conditioning=conditioning,
        latent_channels=base.latent_channels,
        latent_size=base.latent_size,
        pad_to=pad_to,
        scaling_factor=base.scaling_factor,
        class_map=base.class_map if conditioning == "class" else None,
        class_null=class_null,
    )


class LIDMTask(DiffusionTask):
    """The latent image diffusion model for the trainer engine: v-prediction MSE on noised
    latent frames with class-token dropout; the optimisation, EMA and logging are
    :class:`~echogen.training.lvdm.DiffusionTask`'s.

    Args:
        spec: latent shape and conditioning.
        unet_preset: a key of :data:`~echogen.models.lidm.LIDM_PRESETS`.
        unet_overrides: UNet keyword arguments replacing the preset's.
        config: optimisation and budget.
        dataset: the TRAIN latent frames (item ``step * batch_size + i``).
        scheduler: the DDPM training scheduler.
        seed: seeds every step's noise, timesteps and dropout.
        records: the task's keys of ``train.json``.
    """

    name = "lidm"

    def __init__(
        self,
        spec: LIDMSpec,
        unet_preset: str,
        unet_overrides: dict | None,
        config: LVDMTrainConfig,
        dataset: LatentFrameDataset,
        scheduler,
        seed: int,
        records: dict,
    ):
        self.spec, self.unet_preset, self.unet_overrides = spec, unet_preset, unet_overrides
        self.config, self.dataset, self.scheduler = config, dataset, scheduler
        self.seed, self.records = seed, records

    collate = staticmethod(_collate)

    def build(self, accelerator: Accelerator):
        unet = build_lidm_unet(self.unet_preset, self.spec.conditioning, self.unet_overrides)
        return self.prepare_unet(accelerator, unet)

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        config, scheduler, device, spec = self.config, self.scheduler, accelerator.device, self.spec
        latents = batch["latent"].to(device)
        # One frame per item: the LVDM's step draws with a window of 1.
        global_shape = (self.global_batch, 1, *latents.shape[1:])
        num_timesteps = scheduler.config.num_train_timesteps
        noise, timesteps, drop = step_noise(self.seed, step, global_shape, config, num_timesteps)
        noise = noise[self.mine, 0].to(device)
        timesteps, drop = timesteps[self.mine].to(device), drop[self.mine].to(device)

        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = scheduler.get_velocity(latents, noise, timesteps)
        tokens = None
        if spec.conditioning == "class":
            tokens = class_tokens(spec, batch["value"], device)
            null = null_tokens(spec, len(tokens), device)
            tokens = torch.where(drop[:, None, None], null, tokens)
        with accelerator.autocast():
            prediction = denoise(self.unet, spec, noisy, timesteps, tokens)
        return self.optimise(accelerator, F.mse_loss(prediction.float(), target.float()))

    def export(self, folder: Path, model, result: RunResult) -> dict:
        save_lidm(folder, self.ema_weights(), self.spec, self.scheduler)
        return {
            **self.records,
            "spec": self.spec.to_dict(),
            "unet_preset": self.unet_preset,
            "unet_overrides": jsonable(self.unet_overrides),
            "train": self.config.to_dict(),
            "weights": "ema",
        }


def _check_train(config: LVDMTrainConfig) -> None:
    if config.dropout_target != "token":
        raise ValueError(
            f"an LIDM drops the class token only: dropout_target must be 'token', got "
            f"{config.dropout_target!r}"
        )


def train_lidm(
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    spec: LIDMSpec,
    unet_preset: str,
    train: LVDMTrainConfig | dict,
    seed: int,
    unet_overrides: dict | None = None,
    device: str = "cpu",
    root: str | Path = ".",
) -> dict:
    """Train an LIDM on the TRAIN latent frames of one or more datasets and export it.

    Checkpoints, resume and the budget are the engine's (as for the LVDM:
    ``state_dir/checkpoint_<step:08d>``, the newest ``checkpoints_total_limit`` kept; a
    resumed run must have the spec, UNet, optimisation settings, seed, process count and
    training videos it was saved with).

    Args:
        latent_indexes: latent index csvs; the TRAIN rows of all of them form the set.
        out_dir: model folder (:func:`~echogen.models.lidm.save_lidm` layout, EMA weights,
            plus ``train.json`` and ``log.csv``), replaced atomically at the end.
        state_dir: folder of the resumable training state.
        spec: latent shape and conditioning (:func:`make_lidm_spec`).
        unet_preset: a key of :data:`~echogen.models.lidm.LIDM_PRESETS`.
        train: an :class:`~echogen.training.lvdm.LVDMTrainConfig` or a dict of its fields;
            ``dropout_target`` must be ``"token"`` (an image has no conditioning frame).
        seed: seeds the initialisation and every step's draws.
        unet_overrides: UNet keyword arguments replacing the preset's.
        device: ``"cpu"`` or ``"cuda"``.
        root: folder the indexes' ``latent_path`` column is relative to.

    Returns:
        Summary: steps, resumed_from, n_videos, last_loss and out_dir.
    """
    config = train if isinstance(train, LVDMTrainConfig) else LVDMTrainConfig(**train)
    if unet_preset not in LIDM_PRESETS:
        raise ValueError(f"unknown LIDM preset {unet_preset!r}; choose one of {list(LIDM_PRESETS)}")
    _check_train(config)
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    accelerator = accelerator_for(device, state_dir, config.mixed_precision)
    world = accelerator.num_processes
    global_batch = config.global_batch(world)
    if global_batch % world:
        raise ValueError(
            f"train batch_size ({config.batch_size}, global) must be a multiple of the {world} "
            "processes, or say batch_per: process"
        )
    channels = {**LIDM_PRESETS[unet_preset], **(unet_overrides or {})}
    if (channels["in_channels"], channels["out_channels"]) != (spec.latent_channels,) * 2:
        raise ValueError(
            f"the UNet takes {channels['in_channels']} and gives {channels['out_channels']} "
            f"channels; {spec.latent_channels}-channel latents need both to be "
            f"{spec.latent_channels}: set them in unet_overrides"
        )
    dataset = LatentFrameDataset(latent_indexes, spec, seed, global_batch, root)
    scheduler = build_scheduler()
    fingerprint = {
        "spec": spec.to_dict(),
        "train": {k: v for k, v in config.to_dict().items() if k not in BUDGET_FIELDS},
        "scheduler": {k: v for k, v in scheduler.config.items() if not k.startswith("_")},
        "seed": seed,
        "num_processes": world,
        "train_videos": dataset.digest,
    }
    records = {
        "global_batch": global_batch,
        "latent_indexes": [str(c) for c in latent_indexes],
        "n_videos": len(dataset),
    }
    task = LIDMTask(spec, unet_preset, unet_overrides, config, dataset, scheduler, seed, records)
    result = engine_train(
        task,
        accelerator,
        state_dir=state_dir,
        out_dir=out_dir,
        budget=Budget.of(config),
        seed=seed,
        fingerprint=fingerprint,
    )
    return {
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "n_videos": len(dataset),
        "last_loss": result.last("loss"),
        "out_dir": str(out_dir),
    }


def train_lidm_from_config(
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    model: dict,
    seed: int,
    device: str = "cpu",
    root: str | Path = ".",
) -> dict:
    """:func:`train_lidm` from one ``lvdm.lidms.<name>`` config entry (the workflow's form).

    The entry holds ``conditioning`` (none or class), ``preset`` (UNet), ``train_preset``,
    ``class_null`` and the ``model`` / ``train`` overrides; the latent shape, scaling factor
    and class map come from the latent indexes.
    """
    train = resolve_train_config(
        model.get("train_preset", "paper"), model.get("train"), presets=LIDM_TRAIN_PRESETS
    )
    _check_train(train)
    spec = make_lidm_spec(
        latent_indexes,
        model.get("conditioning", "none"),
        root=root,
        class_null=model.get("class_null", "distinct"),
    )
    return train_lidm(
        latent_indexes,
        out_dir,
        state_dir,
        spec,
        model.get("preset", "paper"),
        train,
        seed,
        unet_overrides=model.get("model") or None,
        device=device,
        root=root,
    )
