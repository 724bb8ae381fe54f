"""Image VAE training (EchoNet-Synthetic's KL autoencoder with LPIPS and a patch GAN).

EchoNet-Synthetic trains CompVis ldm's ``AutoencoderKL`` on every frame of its videos with
``LPIPSWithDiscriminator`` (``echosyn/vae/usencoder_kl_16x16x4.yaml``; PAPERS.md §4): base lr
2e-6 scaled by ldm to ``accumulate 2 × 8 GPUs × batch 32 × 2e-6``, Adam betas (0.5, 0.9) for
the autoencoder and the discriminator, KL weight 1e-6, discriminator weight 0.5 from step
50,001. :data:`VAE_TRAIN_PRESETS` holds that ("paper") and a CPU-sized "tiny" one;
:func:`resolve_train_config` applies overrides.

:func:`train_vae` draws every step's frames from ``(seed, step)`` alone (a video index, then a
frame index, for each frame of the global batch), so it needs no data-loader state: a run
killed at any point and started again resumes from its newest checkpoint and ends with the
same weights, bit for bit on CPU, as an uninterrupted run. After the budget it fits the
latent ``scaling_factor`` (1 / std of the posterior means of up to ``scale_frames`` seeded
TRAIN frames, as Stable Diffusion's 0.18215 was chosen), stores it in the model config and
exports the model.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from diffusers import AutoencoderKL
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.manifest import read_manifest, row_fps
from echogen.data.video import read_video, resample_frames, resize_frames
from echogen.metrics.paired import LPIPS, LPIPS_NETS
from echogen.models.vae import (
    DISC_NORMS,
    PatchDiscriminator,
    VAELoss,
    build_vae,
    encode_frames,
    frames_to_tensor,
    vae_config,
)
from echogen.training import gan
from echogen.training.engine import Budget, RunResult, Task, accelerator_for
from echogen.training.engine import train as engine_train
from echogen.training.state import jsonable
from echogen.training.supervised import rows_digest

log = logging.getLogger(__name__)

ADAM_BETAS = (0.5, 0.9)  # ldm's AutoencoderKL.configure_optimizers, both optimisers
LOSS_COLUMNS = [
    "loss",
    "rec_l1",
    "perceptual",
    "nll",
    "kl",
    "logvar",
    "g_loss",
    "d_weight",
    "disc_factor",
    "d_loss",
    "logits_real",
    "logits_fake",
]
LOG_COLUMNS = ["step", *LOSS_COLUMNS]
# VAETrainConfig fields that only say how long, how often or how fast (or what happens after
# the budget): a run may resume with other values and still follow the same trajectory.
BUDGET_FIELDS = (
    "max_steps",
    "checkpoint_every",
    "checkpoints_total_limit",
    "log_every",
    "num_workers",
    "video_cache",
    "scale_frames",
)
ROW_COLUMNS = ["FileName", "Path", "manifest", "line", "video", "fps"]
# Independent random streams drawn from the seed: [seed, stream, ...].
STREAM_FRAMES, STREAM_SCALING, STREAM_NOISE = 0, 1, 2


@dataclass(frozen=True)
class VAETrainConfig:
    """Optimisation, loss and budget of a VAE run.

    Args:
        lr (float, 1e-4): learning rate of both optimisers (the base rate when ``scale_lr``).
        scale_lr (bool, False): ldm's rule: multiply ``lr`` by ``batch_size ×
            gradient_accumulation_steps × processes``.
        batch_size (int, 8): frames per process per micro-batch.
        gradient_accumulation_steps (int, 1): micro-batches per optimiser step.
        max_steps (int, 1000): optimiser steps of the budget; 0 exports the initial weights.
        disc_start (int, 50001): first (0-based) step with the discriminator and the
            adversarial generator term; before it the discriminator is not run at all.
        disc_factor (float, 1.0): weight of the adversarial terms from ``disc_start``.
        disc_weight (float, 0.5): scale of the adaptive generator weight.
        kl_weight (float, 1e-6): weight of the KL term.
        perceptual_weight (float, 1.0): weight of LPIPS inside the reconstruction term.
        perceptual_net (str, "vgg"): LPIPS trunk, "vgg" (ldm) or "alex".
        perceptual_weights (str | None, None): local torchvision ImageNet weights of the trunk;
            None is a seeded random trunk (a plumbing check, logged as such).
        learn_logvar (bool, False): optimise the loss's scalar ``logvar``; ldm creates it as a
            parameter but never gives it to an optimiser, so it stays 0.
        disc_channels (int, 64): width of the discriminator's first layer.
        disc_layers (int, 3): stride-2 layers of the discriminator.
        disc_norm (str, "batch"): discriminator normalisation, "batch" (ldm) or "group".
        fps (float | None, None): resample each video to this rate before drawing a frame;
            None draws from the native frames (EchoNet-Synthetic extracts every frame).
        size (int, 112): frames are resized to ``size × size``; a multiple of the VAE's factor.
        scale_frames (int, 2048): TRAIN frames drawn to fit ``scaling_factor``.
        scaling_factor (float | None, None): the latent scaling factor exported with the
            model: None fits it on TRAIN frames (1 / std of the posterior means); a number
            fixes it (Stable Diffusion's 0.18215, which EchoNet-Synthetic's conversion to
            diffusers keeps).
        checkpoint_every (int, 500): save the training state every this many steps (and at
            the end).
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        log_every (int, 10): average the losses over this many steps per log row.
        num_workers (int, 0): data loader processes decoding videos.
        video_cache (int, 16): decoded videos kept per data process (LRU).
    """

    lr: float = 1e-4
    scale_lr: bool = False
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000
    disc_start: int = 50001
    disc_factor: float = 1.0
    disc_weight: float = 0.5
    kl_weight: float = 1e-6
    perceptual_weight: float = 1.0
    perceptual_net: str = "vgg"
    perceptual_weights: str | None = None
    learn_logvar: bool = False
    disc_channels: int = 64
    disc_layers: int = 3
    disc_norm: str = "batch"
    fps: float | None = None
    size: int = 112
    scale_frames: int = 2048
    scaling_factor: float | None = None
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    log_every: int = 10
    num_workers: int = 0
    video_cache: int = 16

    def __post_init__(self):
        if self.scaling_factor is not None and not (
            isinstance(self.scaling_factor, int | float) and 0 < self.scaling_factor < math.inf
        ):
            raise ValueError(f"scaling_factor must be None or > 0, got {self.scaling_factor!r}")
        positive = [
            "batch_size",
            "gradient_accumulation_steps",
            "disc_channels",
            "disc_layers",
            "size",
            "scale_frames",
            "checkpoint_every",
            "checkpoints_total_limit",
            "log_every",
            "video_cache",
        ]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)!r}")
        non_negative = [
            "max_steps",
            "disc_start",
            "disc_factor",
            "disc_weight",
            "kl_weight",
            "perceptual_weight",
            "num_workers",
        ]
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"train.fps must be None or > 0, got {self.fps!r}")
        if self.perceptual_net not in LPIPS_NETS:
            raise ValueError(
                f"train.perceptual_net must be one of {LPIPS_NETS}, got {self.perceptual_net!r}"
            )
        if self.disc_norm not in DISC_NORMS:
            raise ValueError(f"train.disc_norm must be one of {DISC_NORMS}, got {self.disc_norm!r}")

    def to_dict(self) -> dict:
        return asdict(self)


VAE_TRAIN_PRESETS: dict[str, dict] = {
    # echosyn/vae/usencoder_kl_16x16x4.yaml: base lr 2e-6 scaled by ldm (x batch 32 x
    # accumulate 2 x 8 GPUs = 1.0e-3), disc_start 50001, kl 1e-6, disc weight 0.5, VGG LPIPS,
    # BatchNorm discriminator of 3 layers / 64 channels, every native frame at 112 px. The
    # step budget is not published (5 days on 8 A100s); 200k steps of 512 frames is ~40
    # passes over Dynamic + Pediatric's ~2.5M frames.
    "paper": {
        "lr": 2e-6,
        "scale_lr": True,
        "batch_size": 32,
        "gradient_accumulation_steps": 2,
        "max_steps": 200_000,
        "disc_start": 50001,
        "disc_weight": 0.5,
        "kl_weight": 1e-6,
        "perceptual_weight": 1.0,
        "perceptual_net": "vgg",
        "disc_channels": 64,
        "disc_layers": 3,
        "disc_norm": "batch",
        "fps": None,
        "size": 112,
        "checkpoint_every": 5000,
        "log_every": 50,
        "num_workers": 8,
        "video_cache": 64,
    },
    # CPU-sized: AlexNet LPIPS (random trunk unless weights are given), a narrow GroupNorm
    # discriminator that starts half-way through the budget.
    "tiny": {
        "lr": 1e-4,
        "scale_lr": False,
        "batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_steps": 400,
        "disc_start": 200,
        "disc_weight": 0.5,
        "kl_weight": 1e-6,
        "perceptual_weight": 1.0,
        "perceptual_net": "alex",
        "disc_channels": 16,
        "disc_layers": 3,
        "disc_norm": "group",
        "fps": None,
        "size": 112,
        "scale_frames": 512,
        "checkpoint_every": 100,
        "log_every": 10,
    },
}


def resolve_train_config(preset: str, overrides: dict | None = None) -> VAETrainConfig:
    """A training preset with overrides applied.

    Raises:
        ValueError: unknown preset or key (named), or an invalid value (named).
    """
    if preset not in VAE_TRAIN_PRESETS:
        raise ValueError(
            f"unknown VAE train preset {preset!r}; choose one of {list(VAE_TRAIN_PRESETS)}"
        )
    overrides = overrides or {}
    allowed = [f.name for f in fields(VAETrainConfig)]
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"unknown key train.{key}; expected one of {allowed}")
    return VAETrainConfig(**{**VAE_TRAIN_PRESETS[preset], **overrides})


class _Reconstruction(nn.Module):
    """The autoencoder's training forward pass, as one module so DDP sees one call."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator):
        """Reconstruct ``x`` from a posterior sample.

        Args:
            x: ``(N, C, H, W)`` in [-1, 1].
            generator: CPU generator of the posterior noise (drawn on the CPU, so a run's
                noise does not depend on the device).

        Returns:
            reconstruction ``(N, C, H, W)``, posterior mean and clamped log-variance
            ``(N, c, h, w)``.
        """
        posterior = self.vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(x.device, x.dtype)
        z = posterior.mean + posterior.std * noise
        return self.vae.decode(z).sample, posterior.mean, posterior.logvar


class _VideoFrames:
    """TRAIN videos decoded on demand (resampled, resized), with a small LRU cache."""

    def __init__(self, rows: pd.DataFrame, fps: float | None, size: int, cache: int):
        self.paths = list(rows["video"])
        self.fps = list(rows["fps"])
        self.target_fps = fps
        self.size = size
        self.cache_size = cache
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def video(self, index: int) -> np.ndarray:
        """``uint8 (T, size, size)`` frames of video ``index``."""
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        frames = read_video(self.paths[index])
        if self.target_fps is not None:
            frames = resample_frames(frames, self.fps[index], self.target_fps)
        frames = resize_frames(frames, self.size)
        self.cache[index] = frames
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return frames

    def frames(self, videos: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Frame ``floor(position × T)`` of each video; positions in [0, 1)."""
        out = []
        for index, position in zip(videos.tolist(), positions.tolist(), strict=True):
            video = self.video(index)
            out.append(video[min(int(position * len(video)), len(video) - 1)])
        return np.stack(out)


class _StepBatches(Dataset):
    """Item ``k`` is micro-batch ``k % accumulation`` of step ``k // accumulation``.

    The global batch (``batch_size × processes`` frames) is drawn from
    ``(seed, step, micro-batch)``: video indices, then frame positions; process ``r`` takes
    its ``r``-th slice.
    """

    def __init__(self, videos: _VideoFrames, config: VAETrainConfig, seed: int, world: int, rank):
        self.videos = videos
        self.batch_size = config.batch_size
        self.accumulation = config.gradient_accumulation_steps
        self.seed = seed
        self.world = world
        self.rank = rank

    def draw(self, step: int, micro: int) -> tuple[np.ndarray, np.ndarray]:
        """The global batch's video indices and frame positions."""
        rng = np.random.default_rng([self.seed, STREAM_FRAMES, step, micro])
        n = self.batch_size * self.world
        return rng.integers(len(self.videos), size=n), rng.random(n)

    def __getitem__(self, k: int) -> np.ndarray:
        step, micro = divmod(k, self.accumulation)
        videos, positions = self.draw(step, micro)
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return self.videos.frames(videos[mine], positions[mine])  # (B, size, size) uint8


def train_rows(manifests: list[str | Path], fps: float | None, root: str | Path) -> pd.DataFrame:
    """The TRAIN rows of every manifest, with the video file and its frame rate checked.

    Returns:
        FileName, Path, manifest, line, video (file under ``root``) and fps (NaN if unused).

    Raises:
        DataError: no TRAIN row at all, a missing video file or, when ``fps`` is set, a row
            without a positive FPS (each names the manifest row).
    """
    if not manifests:
        raise ValueError("train_vae needs at least one manifest")
    tables = []
    for manifest in manifests:
        rows = read_manifest(manifest)
        rows = rows[rows["Split"] == "TRAIN"]
        records = []
        for index, row in rows.iterrows():
            line = index + 2  # csv line: header is line 1
            video = Path(root) / str(row["Path"])
            if not video.is_file():
                raise DataError(
                    manifest,
                    f"video {video} of {row['FileName']} does not exist",
                    f"check the Path column and root ({root})",
                    row=line,
                    item=str(row["FileName"]),
                )
            records.append(
                {
                    "FileName": str(row["FileName"]),
                    "Path": str(row["Path"]),
                    "manifest": str(manifest),
                    "line": line,
                    "video": str(video),
                    "fps": row_fps(row, manifest, line) if fps is not None else math.nan,
                }
            )
        tables.append(pd.DataFrame(records, columns=ROW_COLUMNS))
    out = pd.concat(tables, ignore_index=True)
    if out.empty:
        raise DataError(
            ", ".join(str(m) for m in manifests),
            "no TRAIN rows",
            "give train_vae manifests with TRAIN videos",
        )
    return out


def scaling_frames(videos: _VideoFrames, seed: int, n: int) -> np.ndarray:
    """``n`` frames drawn from ``seed`` (video, then position), each video decoded once."""
    rng = np.random.default_rng([seed, STREAM_SCALING])
    indices, positions = rng.integers(len(videos), size=n), rng.random(n)
    order = np.argsort(indices, kind="stable")  # consecutive draws of a video share a decode
    frames = np.empty((n, videos.size, videos.size), dtype=np.uint8)
    for i in tqdm(order, desc="scaling frames", leave=False):
        frames[i] = videos.frames(indices[i : i + 1], positions[i : i + 1])[0]
    return frames


def fit_scaling_factor(vae: AutoencoderKL, frames: np.ndarray, batch_size: int = 64) -> float:
    """``1 / std`` of the posterior means of ``frames`` (uint8 ``(N, H, W)``), over all values."""
    scaled = encode_frames(vae, frames, batch_size).astype(np.float64)
    std = float(scaled.std()) / vae.config.scaling_factor
    if not std > 0:
        raise ValueError(f"posterior means have std {std}; cannot fit a scaling factor")
    return 1.0 / std


class VAETask(Task):
    """The image VAE for the trainer engine: ldm's autoencoder loss and, from
    ``disc_start``, the PatchGAN discriminator, each with its own optimiser (two backward
    passes a step); a log row (mean of each loss) every ``log_every`` steps; export with the
    ``scaling_factor`` fitted on TRAIN frames.

    Args:
        model_preset: a key of :data:`~echogen.models.vae.VAE_PRESETS`.
        model_overrides: AutoencoderKL keyword arguments replacing the preset's.
        config: training settings.
        videos: the TRAIN videos.
        lr: the effective learning rate (scaled by the global batch when ``scale_lr``).
        seed: seeds the frames of every step and the posterior noise.
        records: the task's keys of ``train.json``.
    """

    name = "VAE"
    log_columns = LOG_COLUMNS

    def __init__(
        self,
        model_preset: str,
        model_overrides: dict | None,
        config: VAETrainConfig,
        videos: _VideoFrames,
        lr: float,
        seed: int,
        records: dict,
    ):
        self.model_preset, self.model_overrides = model_preset, model_overrides
        self.config, self.videos, self.lr, self.seed = config, videos, lr, seed
        self.records = records
        self.scaling_factor = math.nan
        self.perceptual = None

    def build(self, accelerator: Accelerator) -> nn.Module:
        config = self.config
        vae = build_vae(self.model_preset, self.model_overrides)
        discriminator = PatchDiscriminator(
            in_channels=vae.config.in_channels,
            channels=config.disc_channels,
            n_layers=config.disc_layers,
            norm=config.disc_norm,
        )
        if config.perceptual_weight > 0:
            self.perceptual = LPIPS(
                config.perceptual_net, config.perceptual_weights, device=str(accelerator.device)
            )
        self.loss_fn = VAELoss(
            self.perceptual,
            kl_weight=config.kl_weight,
            perceptual_weight=config.perceptual_weight,
            disc_weight=config.disc_weight,
            disc_start=config.disc_start,
            disc_factor=config.disc_factor,
        ).to(accelerator.device)
        self.loss_fn.logvar.requires_grad_(config.learn_logvar)
        logvar = [self.loss_fn.logvar] if config.learn_logvar else []
        opt_ae = torch.optim.Adam([*vae.parameters(), *logvar], lr=self.lr, betas=ADAM_BETAS)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=self.lr, betas=ADAM_BETAS)
        self.model, self.discriminator, self.opt_ae, self.opt_d = accelerator.prepare(
            _Reconstruction(vae), discriminator, opt_ae, opt_d
        )
        accelerator.register_for_checkpointing(self.loss_fn)
        self.in_channels = vae.config.in_channels
        return self.model

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        """Step ``s``'s micro-batches (``gradient_accumulation_steps`` of them) of frames."""
        accumulation = self.config.gradient_accumulation_steps
        world, rank = accelerator.num_processes, accelerator.process_index
        loader = DataLoader(
            _StepBatches(self.videos, self.config, self.seed, world, rank),
            batch_size=None,
            sampler=range(start * accumulation, self.config.max_steps * accumulation),
            num_workers=self.config.num_workers,
        )
        stream = iter(loader)
        for _ in range(start, self.config.max_steps):
            yield [next(stream) for _ in range(accumulation)]

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        config, loss_fn = self.config, self.loss_fn
        accumulation, rank = config.gradient_accumulation_steps, accelerator.process_index
        last_layer = accelerator.unwrap_model(self.model).vae.decoder.conv_out.weight
        self.model.train()
        self.discriminator.train()
        active = loss_fn.disc_active(step)
        step_logs = dict.fromkeys(LOSS_COLUMNS, 0.0)
        for micro, frames in enumerate(batch):
            syncing = micro == accumulation - 1
            x = frames_to_tensor(frames, self.in_channels).to(accelerator.device)
            noise_seed = np.random.default_rng([self.seed, STREAM_NOISE, step, micro, rank])
            noise = torch.Generator().manual_seed(int(noise_seed.integers(2**62)))
            with gan.accumulating(accelerator, self.model, syncing):
                recon, mean, logvar = self.model(x, noise)
                with gan.discriminator_frozen(accelerator, self.discriminator) as disc:
                    loss, logs = loss_fn.generator_loss(
                        x, recon, mean, logvar, step, disc if active else None, last_layer
                    )
                accelerator.backward(loss / accumulation)
            if active:
                with gan.accumulating(accelerator, self.discriminator, syncing):
                    d_loss, d_logs = loss_fn.discriminator_loss(self.discriminator, x, recon, step)
                    accelerator.backward(d_loss / accumulation)
                logs.update(d_logs)
            for key, value in logs.items():
                step_logs[key] += value / accumulation
        if config.learn_logvar and accelerator.num_processes > 1:
            # logvar lives outside the DDP module: average its gradient by hand.
            loss_fn.logvar.grad = accelerator.reduce(loss_fn.logvar.grad, "mean")
        gan.step((self.opt_ae, True), (self.opt_d, active))
        return step_logs

    def export(self, folder: Path, model: nn.Module, result: RunResult) -> dict:
        vae = model.vae
        vae.eval()
        n_scale = self.config.scale_frames
        if self.config.scaling_factor is None:
            frames = scaling_frames(self.videos, self.seed, n_scale)
            self.scaling_factor = fit_scaling_factor(vae, frames, self.config.batch_size)
            log.info("scaling_factor %.6f from %d TRAIN frames", self.scaling_factor, n_scale)
        else:
            self.scaling_factor, n_scale = float(self.config.scaling_factor), 0
            log.info("scaling_factor %.6f as configured (not fitted)", self.scaling_factor)
        vae.register_to_config(scaling_factor=self.scaling_factor)
        vae.save_pretrained(folder)
        perceptual = self.perceptual
        return {
            **self.records,
            "train": self.config.to_dict(),
            "lr": self.lr,
            "scaling_factor": self.scaling_factor,
            "scale_frames": n_scale,
            "perceptual_trunk": {
                "net": self.config.perceptual_net,
                "sha256": perceptual.trunk_sha256 if perceptual else None,
                "published": perceptual.is_published if perceptual else None,
            },
        }


def train_vae(
    manifests: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    model_preset: str = "tiny",
    model_overrides: dict | None = None,
    config: VAETrainConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    root: str | Path = ".",
) -> dict:
    """Train the image VAE on the frames of the manifests' TRAIN videos.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` (accelerate state of the
    autoencoder, discriminator, both optimisers and the loss's ``logvar``, plus
    ``progress.json``); a run finding one resumes from the newest (same model, loss,
    optimisation settings, seed, process count and TRAIN videos; the budget may differ).
    ``state_dir/log.csv`` is the running log.

    Args:
        manifests: harmonised manifest csvs; the TRAIN rows of all of them are used.
        out_dir: export folder, replaced atomically: ``AutoencoderKL.save_pretrained`` files
            (config.json with the fitted ``scaling_factor``), ``train.json`` and ``log.csv``
            (step and the mean of each loss over the logged steps).
        state_dir: folder of the resumable training state (not a workflow output).
        model_preset: a key of :data:`~echogen.models.vae.VAE_PRESETS`.
        model_overrides: AutoencoderKL keyword arguments replacing the preset's.
        config: training settings (:func:`resolve_train_config`); None is the "tiny" preset.
        seed: seeds the initialisation, the frames of every step and the posterior noise.
        device: "cpu" or "cuda" (all visible GPUs under ``accelerate launch``).
        root: folder the manifests' ``Path`` column is relative to.

    Returns:
        Summary: steps, resumed_from (step or None), lr (effective), scaling_factor,
        n_videos, the last log row's losses (``last``) and out_dir.
    """
    config = config or resolve_train_config("tiny")
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    model_config = vae_config(model_preset, model_overrides)
    vae_factor = 2 ** (len(model_config["block_out_channels"]) - 1)
    if config.size % vae_factor:
        raise ValueError(f"train.size ({config.size}) must be a multiple of {vae_factor}")
    rows = train_rows(manifests, config.fps, root)

    accelerator = accelerator_for(device, state_dir)
    world = accelerator.num_processes
    accumulation = config.gradient_accumulation_steps
    lr = config.lr * (config.batch_size * accumulation * world if config.scale_lr else 1)
    fingerprint = {
        "model": {"preset": model_preset, "config": model_config},
        "train": {k: v for k, v in config.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(rows, {"FileName": str, "Path": str}),
    }
    records = {
        "model": {"preset": model_preset, "config": jsonable(model_config)},
        "manifests": [str(m) for m in manifests],
        "n_videos": len(rows),
    }
    videos = _VideoFrames(rows, config.fps, config.size, config.video_cache)
    task = VAETask(model_preset, model_overrides, config, videos, lr, seed, records)
    budget = Budget.of(config)
    result = engine_train(
        task,
        accelerator,
        state_dir=state_dir,
        out_dir=out_dir,
        budget=budget,
        seed=seed,
        fingerprint=fingerprint,
        config=config.to_dict(),
    )
    return {
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "lr": lr,
        "scaling_factor": task.scaling_factor,
        "n_videos": len(rows),
        "last": result.log[-1] if result.log else None,
        "out_dir": str(out_dir),
    }


def train_vae_from_presets(
    manifests: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    preset: str,
    overrides: dict | None,
    train_preset: str,
    train_overrides: dict | None,
    seed: int,
    device: str = "cpu",
    root: str | Path = ".",
) -> dict:
    """:func:`train_vae` from preset names and override dicts (JSON-able: the workflow's form).

    ``echogen.workflow.run_distributed`` calls this in every process of a multi-GPU job.
    """
    config = resolve_train_config(train_preset, train_overrides)
    return train_vae(manifests, out_dir, state_dir, preset, overrides, config, seed, device, root)
