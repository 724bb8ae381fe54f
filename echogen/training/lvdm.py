"""Latent video diffusion training (EchoNet-Synthetic's LVDM; EchoDream's text/class variants).

EchoNet-Synthetic (``/work/shared/PAPERS.md`` §4) trains ``UNetSpatioTemporalConditionModel``
on windows of consecutive VAE latent frames (64 at 32 fps), each concatenated channel-wise
with the latent of one random frame of the same video, conditioned on EF/100 through
cross-attention: DDPM with 1000 steps, linear betas 1e-4..0.02, v-prediction, noise offset
0.1, 10 % conditioning dropout (the EF token AND the conditioning frame are dropped, which
trains the unconditional model used for guidance), MSE, AdamW at lr 1e-4, batch 16, EMA.
EchoDream (§5) swaps the EF token for a CLIP ViT-L/14 prompt encoding (lr 1e-5, batch 3) or
the raw class id (lr 1e-4). EchoDream fine-tunes its text encoder; here the text encoder is
FROZEN in every preset (not done: EchoDream's text-encoder fine-tuning).

:func:`train_lvdm` runs a finite budget of optimiser steps with accelerate. Everything random
in step ``s`` (the videos, windows and conditioning frames of the batch, the noise, noise
offsets, timesteps and dropout mask) is drawn from ``(seed, s)`` alone, so a run killed at
any point and started again resumes from its newest checkpoint and ends with the same
weights, bit for bit on CPU, as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, Sampler

from echogen.data.errors import DataError
from echogen.models.lvdm import (
    LVDM_PRESETS,
    Conditioner,
    LVDMSpec,
    added_time_ids,
    build_scheduler,
    build_unet,
    crop_latents,
    pad_latents,
    prompt_for,
    save_lvdm,
    time_id_count,
    unet_input,
)
from echogen.pipelines.latents import read_latents
from echogen.training.engine import Budget, RunResult, Task, accelerator_for
from echogen.training.engine import train as engine_train
from echogen.training.state import jsonable

log = logging.getLogger(__name__)

MIXED_PRECISION = ("no", "fp16", "bf16")
BATCH_PER = ("global", "process")
DROPOUT_TARGETS = ("token_frame", "token")
INDEX_COLUMNS = ("FileName", "Split", "latent_path")
VALUE_COLUMNS = {"ef": "EF", "class": "class_id"}
LOG_COLUMNS = ["step", "loss", "lr"]
# LVDMTrainConfig fields that only say how long, how often or how fast: a run may be resumed
# with other values (e.g. a larger budget) and still follow the same trajectory.
BUDGET_FIELDS = ("max_steps", "checkpoint_every", "checkpoints_total_limit", "log_every")
BUDGET_FIELDS += ("num_workers",)
# Stream labels keep the per-step draws of the data and of the noise independent.
_DATA_STREAM = 0
_NOISE_STREAM = 1


@dataclass(frozen=True)
class LVDMTrainConfig:
    """Optimisation and budget of an LVDM run.

    Args:
        lr (float, 1e-4): AdamW learning rate (constant).
        weight_decay (float, 1e-2): AdamW weight decay (torch's default; not published).
        batch_size (int, 16): videos per optimiser step: over all processes (a multiple of
            the process count) or per process, as ``batch_per`` says.
        batch_per (str, "global"): ``"global"`` or ``"process"``: EchoNet-Synthetic's and
            EchoDream's ``train_batch_size`` is accelerate's per-process batch (16 on 8 GPUs
            is 128 a step); the paper presets say ``process``. ``train.json`` records the
            ``global_batch`` that ran.
        max_steps (int, 500000): optimiser steps of the budget.
        noise_offset (float, 0.1): ``noise += noise_offset * randn(B, 1, C, 1, 1)``: one offset
            per video and latent channel, shared by its frames and pixels.
        cond_dropout (float, 0.1): per-sample probability of dropping the conditioning.
        dropout_target (str, "token_frame"): what a drop replaces: ``"token_frame"``, the
            tokens by the null tokens and the conditioning-frame latent by zeros (echogen), or
            ``"token"``, the tokens only (EchoNet-Synthetic's and EchoDream's mask on the
            EF/class/text embedding).
        ema_decay (float, 0.9999): EMA decay cap (diffusers ``EMAModel`` warms up as
            ``(1 + n) / (10 + n)``).
        ema_start (int, 0): optimiser steps before the EMA starts following the weights.
        max_grad_norm (float, 1.0): gradient clipping norm.
        checkpoint_every (int, 1000): save the training state every this many steps (and at
            the end).
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        log_every (int, 50): log the mean loss every this many steps.
        mixed_precision (str, "no"): accelerate's ``"no"``, ``"fp16"`` or ``"bf16"``.
        num_workers (int, 0): data loader worker processes.
    """

    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 16
    batch_per: str = "global"
    max_steps: int = 500_000
    noise_offset: float = 0.1
    cond_dropout: float = 0.1
    dropout_target: str = "token_frame"
    ema_decay: float = 0.9999
    ema_start: int = 0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 1000
    checkpoints_total_limit: int = 2
    log_every: int = 50
    mixed_precision: str = "no"
    num_workers: int = 0

    def __post_init__(self):
        if not self.lr > 0 or self.weight_decay < 0 or not self.max_grad_norm > 0:
            raise ValueError(
                "lr and max_grad_norm must be > 0 and weight_decay >= 0; got "
                f"{self.lr}, {self.max_grad_norm}, {self.weight_decay}"
            )
        for name in ("batch_size", "checkpoint_every", "checkpoints_total_limit", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "ema_start", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dropout_target not in DROPOUT_TARGETS:
            raise ValueError(
                f"dropout_target must be one of {DROPOUT_TARGETS}, got {self.dropout_target!r}"
            )
        if self.batch_per not in BATCH_PER:
            raise ValueError(f"batch_per must be one of {BATCH_PER}, got {self.batch_per!r}")
        if self.noise_offset < 0:
            raise ValueError(f"noise_offset must be >= 0, got {self.noise_offset}")
        if not 0 <= self.cond_dropout <= 1:
            raise ValueError(f"cond_dropout must lie in [0, 1], got {self.cond_dropout}")
        if not 0 <= self.ema_decay <= 1:
            raise ValueError(f"ema_decay must lie in [0, 1], got {self.ema_decay}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def global_batch(self, processes: int) -> int:
        """Videos per optimiser step over ``processes`` processes."""
        return self.batch_size * processes if self.batch_per == "process" else self.batch_size


LVDM_TRAIN_PRESETS: dict[str, dict] = {
    # EchoNet-Synthetic's LVDM (PAPERS.md §4): 64-frame windows at 32 fps, batch 16 per
    # process, lr 1e-4, 500k steps, noise offset 0.1, EMA. Its config asks for 10 % EF
    # dropout, but echosyn/lvdm/train.py computes the mask and never applies it: 0.
    "paper": {
        "unet": "paper",
        "conditioning": "ef",
        "frames": 64,
        "train": {
            "lr": 1e-4,
            "batch_size": 16,
            "batch_per": "process",
            "max_steps": 500_000,
            "noise_offset": 0.1,
            "cond_dropout": 0.0,
            "dropout_target": "token",
            "ema_decay": 0.9999,
        },
    },
    # EchoDream's text-conditioned LVDM (PAPERS.md §5): same UNet, cross_attention_dim 768
    # (CLIP ViT-L/14 last_hidden_state), batch 3, lr 1e-5, checkpoint-100000. The noise
    # offset and EMA are EchoNet-Synthetic's (EchoDream adapts its code); its train.py drops
    # the token only, with p 0.3 (it reads `drop_conditioning`; the configs' misspelt
    # `drop_conditionning: 0.1` never reaches it).
    "echodream_text": {
        "unet": "paper",
        "conditioning": "text",
        "frames": 64,
        "train": {
            "lr": 1e-5,
            "batch_size": 3,
            "batch_per": "process",
            "max_steps": 100_000,
            "noise_offset": 0.1,
            "cond_dropout": 0.3,
            "dropout_target": "token",
            "ema_decay": 0.9999,
        },
    },
    # EchoDream's class-conditioned LVDM (echo/lvdm/configs/cardiacnet.yaml): the float class
    # id as the 1-d token, train_batch_size 4 per process, 100k steps, lr 1e-4; token-only
    # dropout 0.3 as the text model.
    "echodream_class": {
        "unet": "paper",
        "conditioning": "class",
        "frames": 64,
        "train": {
            "lr": 1e-4,
            "batch_size": 4,
            "batch_per": "process",
            "max_steps": 100_000,
            "noise_offset": 0.1,
            "cond_dropout": 0.3,
            "dropout_target": "token",
            "ema_decay": 0.9999,
        },
    },
    # CPU-sized, for tests and the phantom demo: 16-frame windows, a faster EMA.
    "tiny": {
        "unet": "tiny",
        "conditioning": "ef",
        "frames": 16,
        "train": {
            "lr": 1e-3,
            "batch_size": 2,
            "max_steps": 300,
            "noise_offset": 0.1,
            "cond_dropout": 0.1,
            "ema_decay": 0.99,
            "checkpoint_every": 100,
            "log_every": 10,
        },
    },
}


def resolve_train_config(
    preset: str, overrides: dict | None = None, presets: dict[str, dict] | None = None
) -> LVDMTrainConfig:
    """A preset's :class:`LVDMTrainConfig` with some fields replaced.

    Args:
        preset: a key of ``presets``.
        overrides: fields replacing the preset's ``train`` values.
        presets: :data:`LVDM_TRAIN_PRESETS` (None) or another table of the same shape (the
            LIDM's, which trains with the same settings).

    Raises:
        ValueError: unknown preset or field (named).
    """
    presets = LVDM_TRAIN_PRESETS if presets is None else presets
    if preset not in presets:
        raise ValueError(f"unknown training preset {preset!r}; choose one of {list(presets)}")
    allowed = [f.name for f in fields(LVDMTrainConfig)]
    unknown = [k for k in (overrides or {}) if k not in allowed]
    if unknown:
        raise ValueError(f"unknown training keys {unknown}; expected some of {allowed}")
    return LVDMTrainConfig(**{**presets[preset]["train"], **(overrides or {})})


# lvdm.models.<name> keys copied into the LVDMSpec of text models.
TEXT_SPEC_KEYS = ("prompt_names", "text_mask", "text_null")


def read_latent_index(csv: str | Path) -> pd.DataFrame:
    """A latent index csv (FileName, Split, latent_path, ...), checked for its columns."""
    return read_latents(csv, required=INDEX_COLUMNS)


def make_spec(
    latent_indexes: list[str | Path],
    conditioning: str,
    frames: int,
    pad_to: int = 16,
    prompt: str | dict | None = None,
    root: str | Path = ".",
    class_null: str = "distinct",
    padding: str = "clean",
    **text: object,
) -> LVDMSpec:
    """An :class:`LVDMSpec` whose latent shape, fps, scaling factor and classes come from data.

    The latent channels and size are read from the first TRAIN latent file; ``fps`` from the
    ``latent_fps`` column and ``scaling_factor`` from ``scaling_factor`` (1.0 when absent);
    the class map from the ``class_name``/``class_id`` columns of all indexes. ``text`` holds
    the text models' other :class:`LVDMSpec` fields (``prompt_names``, ``text_mask``,
    ``text_null``).

    Raises:
        DataError: no TRAIN rows, columns that disagree between rows, or an unreadable file.
    """
    rows = pd.concat([read_latent_index(csv) for csv in latent_indexes], ignore_index=True)
    where = ", ".join(str(c) for c in latent_indexes)
    train = rows[rows["Split"] == "TRAIN"]
    if train.empty:
        raise DataError(where, "no TRAIN rows", "use latent indexes with TRAIN videos")
    shape = np.load(Path(root) / str(train["latent_path"].iloc[0]), mmap_mode="r").shape
    values = {}
    for column, default in (("latent_fps", 32.0), ("scaling_factor", 1.0)):
        found = sorted(set(train[column].astype(float))) if column in train else [default]
        if len(found) != 1:
            raise DataError(
                where,
                f"the TRAIN rows have several {column} values {found}",
                "encode every dataset with the same VAE at the same fps",
            )
        values[column] = found[0]
    class_map = None
    if {"class_name", "class_id"} <= set(rows.columns):
        pairs = rows[["class_name", "class_id"]].dropna().drop_duplicates()
        class_map = {str(n): int(i) for n, i in zip(pairs.class_name, pairs.class_id, strict=True)}
        if len(set(class_map.values())) != len(class_map) or len(class_map) != len(pairs):
            raise DataError(
                where,
                f"class_name and class_id do not match one to one ({len(pairs)} pairs)",
                "give every class one id in every dataset",
            )
        class_map = dict(sorted(class_map.items(), key=lambda kv: kv[1])) or None
    return LVDMSpec(
        conditioning=conditioning,
        frames=frames,
        fps=values["latent_fps"],
        latent_channels=int(shape[1]),
        latent_size=int(shape[2]),
        pad_to=pad_to,
        class_map=class_map,
        prompt=prompt,
        scaling_factor=values["scaling_factor"],
        class_null=class_null,
        padding=padding,
        **text,
    )


def spec_from_entry(
    latent_indexes: list[str | Path], entry: dict, root: str | Path = "."
) -> LVDMSpec:
    """:func:`make_spec` from one ``lvdm.models.<name>`` config entry (``conditioning``,
    ``frames``, ``prompt``, ``class_null``, ``padding`` and :data:`TEXT_SPEC_KEYS`)."""
    return make_spec(
        latent_indexes,
        entry["conditioning"],
        int(entry.get("frames", 64)),
        prompt=entry.get("prompt"),
        root=root,
        class_null=entry.get("class_null", "distinct"),
        padding=entry.get("padding", "clean"),
        **{k: entry[k] for k in TEXT_SPEC_KEYS if entry.get(k) is not None},
    )


class LatentClipDataset(Dataset):
    """Windows of consecutive latent frames of the TRAIN videos, with their conditioning.

    Videos with fewer latent frames than ``spec.frames`` are dropped (the count is logged).
    :meth:`clip` draws item ``i`` of step ``s`` from ``numpy.random.default_rng([seed, 0, s,
    i])``: a video (uniformly), the start of a window, and the conditioning frame (any frame
    of the same video, as in EchoNet-Synthetic). As a torch ``Dataset`` it is indexed by
    ``step * batch_size + i`` (``batch_size`` the global batch).

    Args:
        latent_indexes: latent index csvs; the TRAIN rows of all of them form the set.
        spec: window length, latent shape, padding and conditioning kind.
        seed: seeds the draws.
        batch_size: global batch size (for the flat ``__getitem__`` index).
        root: folder the indexes' ``latent_path`` column is relative to.

    Raises:
        DataError: a missing index/column/file, a latent of the wrong shape, a missing
            conditioning value, or no video long enough (naming the index).
    """

    def __init__(
        self,
        latent_indexes: list[str | Path],
        spec: LVDMSpec,
        seed: int,
        batch_size: int = 1,
        root: str | Path = ".",
    ):
        self.spec = spec
        self.seed = seed
        self.batch_size = batch_size
        root = Path(root)
        self.names: list[str] = []
        self.paths: list[Path] = []
        self.frames: list[int] = []
        self.values: list = []
        self.n_dropped = 0
        listing = []
        for csv in latent_indexes:
            rows = read_latent_index(csv)
            kept = dropped = 0
            for i, row in enumerate(rows.to_dict("records")):
                if row["Split"] != "TRAIN":
                    continue
                line = i + 2  # 1-based csv line after the header
                path = root / str(row["latent_path"])
                n_frames = self._check_file(path, csv, line, str(row["FileName"]))
                if n_frames < spec.frames:
                    dropped += 1
                    continue
                self.names.append(str(row["FileName"]))
                self.paths.append(path)
                self.frames.append(n_frames)
                self.values.append(self._value(row, csv, line))
                listing.append([str(row["FileName"]), str(row["latent_path"]), n_frames])
                kept += 1
            if dropped:
                log.warning(
                    "%s: dropped %d TRAIN video(s) shorter than the %d-frame window",
                    csv,
                    dropped,
                    spec.frames,
                )
            self.n_dropped += dropped
            log.info("%s: %d TRAIN videos", csv, kept)
        if not self.names:
            raise DataError(
                ", ".join(str(c) for c in latent_indexes),
                f"no TRAIN video has at least {spec.frames} latent frames "
                f"({self.n_dropped} too short)",
                "lower the window (frames) or add longer TRAIN videos",
            )
        self.digest = hashlib.sha256(json.dumps([listing, self.values]).encode()).hexdigest()

    def _check_file(self, path: Path, csv, line: int, name: str) -> int:
        if not path.is_file():
            raise DataError(
                csv,
                f"latent file {path} does not exist",
                "re-run the latent encoding step, or fix latent_path / the root folder",
                row=line,
                item=name,
            )
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (ValueError, OSError) as err:
            raise DataError(
                csv, f"cannot read latent file {path} ({err})", "re-encode it", row=line, item=name
            ) from err
        spec = self.spec
        expected = (spec.latent_channels, spec.latent_size, spec.latent_size)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise DataError(
                csv,
                f"latent file {path} has shape {tuple(shape)}, expected (T, *{expected})",
                "encode every video with the VAE the LVDM spec describes",
                row=line,
                item=name,
            )
        return int(shape[0])

    def _value(self, row: dict, csv, line: int):
        """The conditioning value of a row: EF (%), class id or prompt."""
        spec = self.spec
        if spec.conditioning == "text":
            try:
                return prompt_for(spec, row)
            except ValueError as err:
                raise DataError(
                    csv, str(err), "add the column or change the prompt template", row=line
                ) from err
        column = VALUE_COLUMNS[spec.conditioning]
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError(
                csv,
                f"no {column} for {spec.conditioning} conditioning",
                f"fill the {column} column of the TRAIN rows",
                row=line,
                item=str(row["FileName"]),
            )
        if spec.conditioning == "class":
            value = int(value)
            if spec.class_map is not None and value not in spec.class_map.values():
                raise DataError(
                    csv,
                    f"class_id {value} is not in the class map {spec.class_map}",
                    "use the class map of the latent indexes",
                    row=line,
                    item=str(row["FileName"]),
                )
            return value
        return float(value)

    def __len__(self) -> int:
        return len(self.names)

    def clip(self, seed: int, step: int, i: int) -> dict:
        """Item ``i`` of step ``step``.

        Returns:
            ``latents`` float32 (F, C, P, P), ``cond_latent`` float32 (C, P, P) (both padded to
            ``spec.pad_to``), ``value`` (EF %, class id or prompt), ``video`` (index),
            ``start`` and ``cond_frame``.
        """
        rng = np.random.default_rng([seed, _DATA_STREAM, step, i])
        video = int(rng.integers(len(self.names)))
        n_frames = self.frames[video]
        start = int(rng.integers(n_frames - self.spec.frames + 1))
        cond_frame = int(rng.integers(n_frames))
        array = np.load(self.paths[video], mmap_mode="r")
        window = torch.from_numpy(np.asarray(array[start : start + self.spec.frames], np.float32))
        cond = torch.from_numpy(np.asarray(array[cond_frame], np.float32))
        return {
            "latents": pad_latents(window, self.spec.pad_to),
            "cond_latent": pad_latents(cond, self.spec.pad_to),
            "value": self.values[video],
            "video": video,
            "start": start,
            "cond_frame": cond_frame,
        }

    def __getitem__(self, index: int) -> dict:
        step, i = divmod(int(index), self.batch_size)
        return self.clip(self.seed, step, i)


class StepSampler(Sampler):
    """Flat indices ``step * G + i`` of one process's items for steps ``start..total-1``."""

    def __init__(self, start: int, total: int, global_batch: int, rank: int, per_process: int):
        self.start, self.total = start, total
        self.global_batch, self.rank, self.per_process = global_batch, rank, per_process

    def __iter__(self):
        for step in range(self.start, self.total):
            first = step * self.global_batch + self.rank * self.per_process
            yield from range(first, first + self.per_process)

    def __len__(self) -> int:
        return (self.total - self.start) * self.per_process


def _collate(items: list[dict]) -> dict:
    return {
        "latents": torch.stack([it["latents"] for it in items]),  # (B, F, C, P, P)
        "cond_latent": torch.stack([it["cond_latent"] for it in items]),  # (B, C, P, P)
        "value": [it["value"] for it in items],
    }


def step_noise(
    seed: int, step: int, shape: tuple[int, ...], train: LVDMTrainConfig, num_timesteps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The noise, timesteps and dropout mask of one step's global batch, from (seed, step).

    Args:
        seed: run seed.
        step: optimiser step.
        shape: (G, F, C, H, W) of the global batch.
        train: for the noise offset and dropout probability.
        num_timesteps: the scheduler's training steps.

    Returns:
        noise float32 (G, F, C, H, W) with the offset added, timesteps int64 (G,), and a
        bool (G,) mask of the samples whose conditioning is dropped.
    """
    generator = torch.Generator().manual_seed(_stream_seed(seed, _NOISE_STREAM, step))
    batch, _, channels = shape[:3]
    noise = torch.randn(shape, generator=generator)
    offset = torch.randn((batch, 1, channels, 1, 1), generator=generator)
    noise = noise + train.noise_offset * offset
    timesteps = torch.randint(0, num_timesteps, (batch,), generator=generator)
    drop = torch.rand((batch,), generator=generator) < train.cond_dropout
    return noise, timesteps, drop


def drop_conditioning(
    hidden: torch.Tensor,
    cond_latent: torch.Tensor,
    drop: torch.Tensor,
    null: torch.Tensor,
    target: str = "token_frame",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditioning dropout: the dropped samples get the null tokens and, for ``target``
    ``"token_frame"``, a zero frame latent (``"token"`` keeps the frame).

    Args:
        hidden: (B, L, D) conditioning tokens.
        cond_latent: (B, C, H, W) conditioning-frame latents.
        drop: bool (B,), True where the conditioning is dropped.
        null: (B, L, D) unconditional tokens (``Conditioner.null``).

    Returns:
        The tokens and latents with the dropped samples replaced.
    """
    if target not in DROPOUT_TARGETS:
        raise ValueError(f"target must be one of {DROPOUT_TARGETS}, got {target!r}")
    hidden = torch.where(drop[:, None, None], null.to(hidden.dtype), hidden)
    if target == "token_frame":
        cond_latent = cond_latent * (~drop).to(cond_latent.dtype)[:, None, None, None]
    return hidden, cond_latent


def _stream_seed(*parts: int) -> int:
    """A 63-bit torch seed from integers (numpy's SeedSequence mixes them)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint32).view(np.uint64)[0])


class DiffusionTask(Task):
    """What the LVDM and LIDM tasks share: a UNet trained with AdamW and followed by an EMA
    of its weights (the EMA is exported), a global batch split over the processes by
    :class:`StepSampler`, gradient clipping, and a log row (mean loss, lr) every
    ``log_every`` steps. Subclasses set ``config`` (:class:`LVDMTrainConfig`), ``dataset``
    and ``collate``, build their UNet in :meth:`build` through :meth:`prepare_unet`, and
    compute the loss in ``train_step`` before handing it to :meth:`optimise`.
    """

    log_columns = LOG_COLUMNS

    def prepare_unet(self, accelerator: Accelerator, unet):
        """EMA and AdamW for a freshly built ``unet``; both prepared (the EMA registered
        for checkpointing). Returns the prepared UNet."""
        config = self.config
        self.unet_class = type(unet)
        self.unet_config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        self.ema = EMAModel(
            unet.parameters(),
            decay=config.ema_decay,
            update_after_step=config.ema_start,
            model_cls=type(unet),
            model_config=unet.config,
        )
        optimizer = torch.optim.AdamW(
            unet.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.unet, self.optimizer = accelerator.prepare(unet, optimizer)
        accelerator.register_for_checkpointing(self.ema)
        return self.unet

    def fingerprint(self) -> dict:
        return {"unet": self.unet_config}

    def start(self, accelerator: Accelerator, step: int) -> None:
        self.ema.to(accelerator.device)  # a resumed EMA state is loaded onto the CPU
        self.global_batch = self.config.global_batch(accelerator.num_processes)
        self.per_process = self.global_batch // accelerator.num_processes
        first = accelerator.process_index * self.per_process
        self.mine = slice(first, first + self.per_process)

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        config, rank = self.config, accelerator.process_index
        self.unet.train()
        return DataLoader(
            self.dataset,
            batch_size=self.per_process,
            sampler=StepSampler(start, config.max_steps, self.global_batch, rank, self.per_process),
            num_workers=config.num_workers,
            collate_fn=self.collate,
        )

    def optimise(self, accelerator: Accelerator, loss: torch.Tensor) -> dict[str, float]:
        """Backward, clip, step, follow with the EMA; the loss averaged over processes."""
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(self.unet.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(accelerator.unwrap_model(self.unet).parameters())
        return {"loss": accelerator.reduce(loss.detach(), "mean").item()}

    def row(self, sums: dict[str, float], count: int) -> dict[str, float]:
        return {"loss": sums["loss"] / count, "lr": self.optimizer.param_groups[0]["lr"]}

    def ema_weights(self):
        """A fresh UNet of the trained config holding the EMA weights (what is exported)."""
        export = self.unet_class.from_config(self.unet_config)
        self.ema.copy_to(export.parameters())
        return export


class LVDMTask(DiffusionTask):
    """The latent video diffusion model for the trainer engine: v-prediction MSE on noised
    latent windows with the conditioning frame concatenated, conditioning dropout, gradient
    clipping and an EMA of the weights (exported); a log row (mean loss, lr) every
    ``log_every`` steps.

    Args:
        spec: window, latent shape and conditioning.
        unet_preset: a key of :data:`~echogen.models.lvdm.LVDM_PRESETS`.
        unet_overrides: UNet keyword arguments replacing the preset's.
        config: optimisation and budget.
        dataset: the TRAIN latent clips (item ``step * batch_size + i``).
        conditioner: EF, text or class tokens.
        scheduler: the DDPM training scheduler.
        seed: seeds every step's noise, timesteps and dropout.
        text_encoder: exported with the model (text conditioning), else None.
        tokenizer: the text encoder's tokenizer, else None.
        records: the task's keys of ``train.json``.
    """

    name = "lvdm"

    def __init__(
        self,
        spec: LVDMSpec,
        unet_preset: str,
        unet_overrides: dict | None,
        config: LVDMTrainConfig,
        dataset: LatentClipDataset,
        conditioner: Conditioner,
        scheduler,
        seed: int,
        text_encoder,
        tokenizer,
        records: dict,
    ):
        self.spec, self.unet_preset, self.unet_overrides = spec, unet_preset, unet_overrides
        self.config, self.dataset, self.conditioner = config, dataset, conditioner
        self.scheduler, self.seed = scheduler, seed
        self.text_encoder, self.tokenizer, self.records = text_encoder, tokenizer, records

    collate = staticmethod(_collate)

    def build(self, accelerator: Accelerator) -> UNetSpatioTemporalConditionModel:
        unet = build_unet(
            self.unet_preset,
            self.spec.conditioning,
            self.unet_overrides,
            cross_attention_dim=self.conditioner.dim,
        )
        return self.prepare_unet(accelerator, unet)

    def start(self, accelerator: Accelerator, step: int) -> None:
        super().start(accelerator, step)
        count = time_id_count(accelerator.unwrap_model(self.unet).config)
        self.time_ids = added_time_ids(self.spec.fps, self.per_process, accelerator.device, count)

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        config, scheduler, device = self.config, self.scheduler, accelerator.device
        mine = self.mine
        latents = batch["latents"].to(device)
        cond_latent = batch["cond_latent"].to(device)
        noised = self.spec.padding == "noised"
        if noised:  # the items are padded clean latents: noise the unpadded ones
            latents = crop_latents(latents, self.spec.latent_size)
            cond_latent = crop_latents(cond_latent, self.spec.latent_size)
        global_shape = (self.global_batch, *latents.shape[1:])
        num_timesteps = scheduler.config.num_train_timesteps
        noise, timesteps, drop = step_noise(self.seed, step, global_shape, config, num_timesteps)
        noise, timesteps, drop = (
            noise[mine].to(device),
            timesteps[mine].to(device),
            drop[mine].to(device),
        )

        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = scheduler.get_velocity(latents, noise, timesteps)
        hidden = self.conditioner.encode(batch["value"], device)
        null = self.conditioner.null(self.per_process, device)
        hidden, cond_latent = drop_conditioning(
            hidden, cond_latent, drop, null, self.config.dropout_target
        )

        sample = unet_input(noisy, cond_latent)
        if noised:
            sample = pad_latents(sample, self.spec.pad_to)
        with accelerator.autocast():
            prediction = self.unet(sample, timesteps, hidden, self.time_ids).sample
        if noised:
            prediction = crop_latents(prediction, self.spec.latent_size)
        return self.optimise(accelerator, F.mse_loss(prediction.float(), target.float()))

    def export(self, folder: Path, model, result: RunResult) -> dict:
        export = self.ema_weights()
        save_lvdm(folder, export, self.spec, self.scheduler, self.text_encoder, self.tokenizer)
        return {
            **self.records,
            "spec": self.spec.to_dict(),
            "unet_preset": self.unet_preset,
            "unet_overrides": jsonable(self.unet_overrides),
            "train": self.config.to_dict(),
            "weights": "ema",
            "text_encoder_trained": False,
        }


def train_lvdm(
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    spec: LVDMSpec,
    unet_preset: str,
    train: LVDMTrainConfig | dict,
    seed: int,
    unet_overrides: dict | None = None,
    device: str = "cpu",
    text_encoder_dir: str | Path | None = None,
    root: str | Path = ".",
) -> dict:
    """Train an LVDM on the TRAIN latents of one or more datasets and export it.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` (accelerate state of the UNet,
    optimiser and EMA, plus ``progress.json``) via :mod:`echogen.training.state`; the newest
    ``checkpoints_total_limit`` are kept. A run finding checkpoints resumes from the newest
    (spec, UNet, optimisation settings, seed, process count, training videos and text encoder
    must be those it was saved with; the budget may differ).

    Args:
        latent_indexes: latent index csvs (FileName, Split, latent_path, EF / class_id /
            prompt columns); the TRAIN rows of all of them form one training set.
        out_dir: model folder, replaced atomically at the end (:func:`save_lvdm` layout with
            the EMA weights, plus ``train.json`` and ``log.csv`` (step, loss, lr)).
        state_dir: folder of the resumable training state (not a workflow output).
        spec: window, latent shape and conditioning (see :func:`make_spec`).
        unet_preset: a key of :data:`~echogen.models.lvdm.LVDM_PRESETS`.
        train: an :class:`LVDMTrainConfig` or a dict of its fields.
        seed: seeds the initialisation and every step's draws.
        unet_overrides: UNet keyword arguments replacing the preset's.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        text_encoder_dir: CLIP folder for text conditioning (frozen; exported with the model).
        root: folder the indexes' ``latent_path`` column is relative to.

    Returns:
        Summary: steps, resumed_from (step or None), n_videos, n_dropped, last_loss (NaN
        when nothing was logged) and out_dir.
    """
    config = train if isinstance(train, LVDMTrainConfig) else LVDMTrainConfig(**train)
    if unet_preset not in LVDM_PRESETS:
        raise ValueError(f"unknown LVDM preset {unet_preset!r}; choose one of {list(LVDM_PRESETS)}")
    if (spec.conditioning == "text") != (text_encoder_dir is not None):
        raise ValueError("text_encoder_dir is needed for, and only for, text conditioning")
    out_dir, state_dir = Path(out_dir), Path(state_dir)

    accelerator = accelerator_for(device, state_dir, config.mixed_precision)
    world = accelerator.num_processes
    global_batch = config.global_batch(world)
    if global_batch % world:
        raise ValueError(
            f"train batch_size ({config.batch_size}, global) must be a multiple of the {world} "
            "processes, or say batch_per: process"
        )
    dataset = LatentClipDataset(latent_indexes, spec, seed, global_batch, root)
    channels = {**LVDM_PRESETS[unet_preset], **(unet_overrides or {})}
    if (channels["in_channels"], channels["out_channels"]) != (
        2 * spec.latent_channels,
        spec.latent_channels,
    ):
        raise ValueError(
            f"the UNet takes {channels['in_channels']} and gives {channels['out_channels']} "
            f"channels; {spec.latent_channels}-channel latents need in_channels "
            f"{2 * spec.latent_channels} (noisy + conditioning frame) and out_channels "
            f"{spec.latent_channels}: set them in unet_overrides"
        )

    text_encoder = tokenizer = None
    text_digest = None
    if spec.conditioning == "text":
        from echogen.models.text import load_text_encoder

        tokenizer, text_encoder = load_text_encoder(text_encoder_dir, accelerator.device)
        text_digest = _text_encoder_digest(text_encoder)
    conditioner = Conditioner(spec, text_encoder, tokenizer)
    scheduler = build_scheduler()
    fingerprint = {
        "spec": spec.fingerprint(),
        "train": {k: v for k, v in config.to_dict().items() if k not in BUDGET_FIELDS},
        # Private keys (e.g. `_use_default_values`, a list in set order that changes from
        # process to process) would make a restarted job refuse its own state.
        "scheduler": {k: v for k, v in scheduler.config.items() if not k.startswith("_")},
        "seed": seed,
        "num_processes": world,
        "train_videos": dataset.digest,
        "text_encoder": text_digest,
    }
    records = {
        "global_batch": global_batch,
        "latent_indexes": [str(c) for c in latent_indexes],
        "n_videos": len(dataset),
        "n_dropped": dataset.n_dropped,
        "text_encoder_dir": None if text_encoder_dir is None else str(text_encoder_dir),
    }
    task = LVDMTask(
        spec,
        unet_preset,
        unet_overrides,
        config,
        dataset,
        conditioner,
        scheduler,
        seed,
        text_encoder,
        tokenizer,
        records,
    )
    budget = Budget.of(config)
    result = engine_train(
        task,
        accelerator,
        state_dir=state_dir,
        out_dir=out_dir,
        budget=budget,
        seed=seed,
        fingerprint=fingerprint,
    )
    return {
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "n_videos": len(dataset),
        "n_dropped": dataset.n_dropped,
        "last_loss": result.last("loss"),
        "out_dir": str(out_dir),
    }


def _text_encoder_digest(model) -> str:
    """sha256 of a text encoder's config and weights: which encoder a checkpoint used."""
    digest = hashlib.sha256(
        json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()
    )
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def train_lvdm_from_config(
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    model: dict,
    seed: int,
    device: str = "cpu",
    text_encoder_dir: str | Path | None = None,
    root: str | Path = ".",
) -> dict:
    """:func:`train_lvdm` from one ``lvdm.models.<name>`` config entry (the workflow's form).

    The entry holds ``conditioning``, ``preset`` (UNet), ``train_preset``, ``frames``,
    ``prompt``, ``class_null``, ``padding``, the text keys of :data:`TEXT_SPEC_KEYS` and the
    ``model`` / ``train`` overrides; the latent
    shape, fps, scaling factor and class map come from the latent indexes (:func:`make_spec`).
    ``echogen.workflow.run_distributed`` calls this in every process of a multi-GPU job.
    """
    spec = spec_from_entry(latent_indexes, model, root)
    train = resolve_train_config(model.get("train_preset", "paper"), model.get("train"))
    return train_lvdm(
        latent_indexes,
        out_dir,
        state_dir,
        spec,
        model.get("preset", "paper"),
        train,
        seed,
        unet_overrides=model.get("model") or None,
        device=device,
        text_encoder_dir=text_encoder_dir,
        root=root,
    )
