"""Siamese training of the privacy filter's re-identification embedder.

EchoNet-Synthetic trains its re-identification network as Packhäuser et al. do for chest
X-rays (``/work/shared/PAPERS.md`` §4): pairs of images, balanced between positives (two
images of the same subject; here two different frames of the same TRAIN video) and
negatives (frames of two different TRAIN videos), scored by ``sigmoid(linear(|e1 - e2|))``
on the two embeddings with binary cross-entropy, Adam at lr 1e-4, 128 pairs per batch, on
VAE latent frames (4x14x14). :class:`~echogen.models.privacy.PrivacyEmbedder` is the
network.

:func:`train_privacy` runs a finite budget of optimiser steps with accelerate. The pairs of
step ``s`` are drawn from ``numpy.random.default_rng([seed, s])`` alone, so a run killed at
any point and started again resumes from its newest checkpoint and ends with the same
weights, bit for bit on CPU, as an uninterrupted run. Latent frames are read from the
``.npy`` files with memory mapping, so the training set never has to fit in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from echogen.data.errors import DataError
from echogen.models.privacy import PRIVACY_PRESETS, PrivacyEmbedder, load_imagenet_trunk
from echogen.pipelines.latents import latent_header, read_latents
from echogen.training.engine import Budget, RunResult, Task, accelerator_for
from echogen.training.engine import train as engine_train
from echogen.training.state import jsonable
from echogen.weights import sha256_file

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("FileName", "Split", "latent_path")
LOG_COLUMNS = ["step", "loss", "accuracy", "lr"]
# PrivacyTrainSpec fields that only say how long or how often: a run may be resumed with other
# values (e.g. a larger budget) and still follow the same trajectory.
BUDGET_FIELDS = ("max_steps", "checkpoint_every", "checkpoints_total_limit", "log_every")


@dataclass(frozen=True)
class PrivacyTrainSpec:
    """Optimisation and budget of a privacy-embedder run (Adam, BCE on balanced pairs).

    Args:
        lr (float, 1e-4): Adam learning rate (EchoNet-Synthetic's privacy config).
        batch_size (int, 128): pairs per optimiser step over all processes (half positive,
            half negative; each pair is two frames, so 2 x batch_size frames per forward).
            EchoNet-Synthetic: 128.
        max_steps (int, 20000): optimiser steps of the budget; 0 exports the initial weights.
            EchoNet-Synthetic ran epochs of 7,465 pairs (58 steps) for up to 1,000 epochs,
            stopping after 50 epochs without a better validation loss; 20,000 steps is about
            340 such epochs.
        checkpoint_every (int, 1000): save the training state every this many steps (and at
            the end).
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        log_every (int, 50): add a row (mean loss and pair accuracy over the last
            ``log_every`` steps) to the log every this many steps; a budget that ends
            between two rows adds a last partial row to the exported log only.
    """

    lr: float = 1e-4
    batch_size: int = 128
    max_steps: int = 20000
    checkpoint_every: int = 1000
    checkpoints_total_limit: int = 2
    log_every: int = 50

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (a positive and a negative pair), got {self.batch_size}"
            )
        for name in ("checkpoint_every", "checkpoints_total_limit", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_model(preset: str, overrides: dict | None = None) -> dict:
    """:class:`PrivacyEmbedder` keyword arguments: a preset with keys replaced by overrides.

    Raises:
        ValueError: unknown preset or key (named).
    """
    if preset not in PRIVACY_PRESETS:
        raise ValueError(
            f"unknown privacy preset {preset!r}; choose one of {list(PRIVACY_PRESETS)}"
        )
    overrides = overrides or {}
    unknown = [k for k in overrides if k not in PRIVACY_PRESETS[preset]]
    if unknown:
        expected = list(PRIVACY_PRESETS[preset])
        raise ValueError(f"unknown privacy model keys {unknown}; expected some of {expected}")
    return {**PRIVACY_PRESETS[preset], **overrides}


@dataclass(frozen=True)
class LatentVideos:
    """The TRAIN latent videos: where each lives and how many frames it has.

    Args:
        names: FileName per video.
        paths: absolute ``.npy`` path per video (float16 ``(T, C, h, w)``).
        frames: ``T`` per video.
        frame_shape: ``(C, h, w)``, common to all videos.
        digest: sha256 of every video's FileName, ``latent_path`` as given (relative to the
            root) and frame count: identifies the set a checkpoint was trained on.
    """

    names: list[str]
    paths: list[Path]
    frames: np.ndarray
    frame_shape: tuple[int, int, int]
    digest: str
    # Memory maps opened so far (they hold no file descriptor, only address space).
    _maps: dict = field(default_factory=dict, repr=False, compare=False)

    def load(self, video: np.ndarray, frame: np.ndarray) -> torch.Tensor:
        """Frames ``frame[i]`` of videos ``video[i]`` as float32 ``[B, C, h, w]``."""
        out = np.empty((len(video), *self.frame_shape), dtype=np.float32)
        for i, (v, f) in enumerate(zip(video.tolist(), frame.tolist(), strict=True)):
            if v not in self._maps:
                self._maps[v] = np.load(self.paths[v], mmap_mode="r")
            out[i] = self._maps[v][f]
        return torch.from_numpy(out)


def read_latent_index(csv: str | Path) -> pd.DataFrame:
    """A latent index csv (FileName, Split, latent_path, ...), checked for its columns."""
    return read_latents(csv, required=INDEX_COLUMNS)


def collect_videos(
    latent_indexes: list[str | Path], splits: tuple[str, ...], in_channels: int, root: str | Path
) -> tuple[LatentVideos, list[tuple[Path, int]]]:
    """The latent videos of ``splits`` in the indexes, in index order, checked for shape.

    Returns:
        The videos and, per video, the (index csv, 1-based csv line) it came from.
    """
    root = Path(root)
    names, paths, frames, origin, listing = [], [], [], [], []
    frame_shape = None
    for csv in latent_indexes:
        rows = read_latent_index(csv)
        for i, row in enumerate(rows.itertuples(index=False)):
            if row.Split not in splits:
                continue
            line = i + 2  # 1-based, after the header
            path = root / str(row.latent_path)
            shape = latent_header(path, csv, line, row.FileName)
            if len(shape) != 4 or shape[1] != in_channels:
                raise DataError(
                    csv,
                    f"latent file {path} has shape {shape}, expected (T, {in_channels}, h, w)",
                    "re-encode it, or set the model's in_channels to the VAE's latent channels",
                    row=line,
                    item=row.FileName,
                )
            if frame_shape is None:
                frame_shape = shape[1:]
            elif shape[1:] != frame_shape:
                raise DataError(
                    csv,
                    f"latent file {path} has frames {shape[1:]}, other videos {frame_shape}",
                    "encode all videos with one VAE at one size",
                    row=line,
                    item=row.FileName,
                )
            names.append(str(row.FileName))
            paths.append(path)
            frames.append(shape[0])
            origin.append((Path(csv), line))
            listing.append([str(row.FileName), str(row.latent_path), shape[0]])
    if not names:
        raise DataError(
            ", ".join(str(c) for c in latent_indexes),
            f"no {'/'.join(splits)} rows in the latent index(es)",
            "use the latent index of a dataset with these splits",
        )
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    videos = LatentVideos(
        names, paths, np.asarray(frames, dtype=np.int64), tuple(frame_shape), digest
    )
    return videos, origin


def draw_pairs(
    rng: np.random.Generator, frames: np.ndarray, n_pairs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Balanced Siamese pairs: even positions positive, odd ones negative.

    A positive is two different frames of one video (chosen uniformly among videos, then
    frames); a negative is one uniform frame of each of two different videos.

    Args:
        rng: the step's generator.
        frames: frames per video ``(V,)``, all >= 2; ``V`` >= 2.
        n_pairs: pairs to draw.

    Returns:
        ``video_a, frame_a, video_b, frame_b`` (int64 ``(n_pairs,)``) and ``label``
        (float32, 1 = same video).
    """
    n_videos = len(frames)
    label = (np.arange(n_pairs) % 2 == 0).astype(np.float32)
    video_a = rng.integers(0, n_videos, size=n_pairs)
    other = (video_a + rng.integers(1, n_videos, size=n_pairs)) % n_videos
    video_b = np.where(label == 1, video_a, other)
    t_a, t_b = frames[video_a], frames[video_b]
    frame_a = np.floor(rng.random(n_pairs) * t_a).astype(np.int64)
    # Positives: a different frame of the same video, uniformly among the other T - 1.
    shift = 1 + np.floor(rng.random(n_pairs) * (t_a - 1)).astype(np.int64)
    frame_b = np.where(
        label == 1, (frame_a + shift) % t_a, np.floor(rng.random(n_pairs) * t_b).astype(np.int64)
    )
    return video_a, frame_a, video_b, frame_b, label


class PrivacyTask(Task):
    """The re-identification embedder for the trainer engine: BCE on balanced Siamese pairs
    drawn afresh every step from ``(seed, step)``; a log row (mean loss, pair accuracy, lr)
    every ``log_every`` steps.

    Args:
        model_kwargs: :class:`PrivacyEmbedder` keyword arguments.
        spec: optimisation and budget.
        videos: the TRAIN latent videos.
        seed: seeds every step's pairs.
        records: the task's keys of ``train.json``.
        imagenet: torchvision's ImageNet ResNet-50 state dict to start the trunk from
            (EchoNet-Synthetic's ``pretrained=True``), or None for a random start.
    """

    name = "privacy"
    log_columns = LOG_COLUMNS

    def __init__(
        self,
        model_kwargs: dict,
        spec: PrivacyTrainSpec,
        videos: LatentVideos,
        seed: int,
        records: dict,
        imagenet: str | Path | None = None,
    ):
        self.model_kwargs, self.spec, self.videos = model_kwargs, spec, videos
        self.seed, self.records, self.imagenet = seed, records, imagenet
        self.model = self.optimizer = None

    def build(self, accelerator: Accelerator) -> PrivacyEmbedder:
        model = PrivacyEmbedder(**self.model_kwargs)
        if self.imagenet is not None:
            load_imagenet_trunk(model, self.imagenet)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.spec.lr)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        return self.model

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        """Step ``s``'s pairs, this process's share of them: frames of both sides, labels."""
        per_process = self.spec.batch_size // accelerator.num_processes
        mine = slice(
            accelerator.process_index * per_process, (accelerator.process_index + 1) * per_process
        )
        self.model.train()
        for step in range(start, self.spec.max_steps):
            rng = np.random.default_rng([self.seed, step])
            video_a, frame_a, video_b, frame_b, label = draw_pairs(
                rng, self.videos.frames, self.spec.batch_size
            )
            first = self.videos.load(video_a[mine], frame_a[mine])
            second = self.videos.load(video_b[mine], frame_b[mine])
            yield first, second, torch.from_numpy(label[mine])

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        first, second, target = batch
        target = target.to(accelerator.device)
        per_process = len(target)
        # One forward for both branches, so batch norm sees all frames of the step.
        embeddings = self.model(torch.cat([first, second]).to(accelerator.device))  # [2B, D]
        head = accelerator.unwrap_model(self.model)
        logits = head.pair_logits(embeddings[:per_process], embeddings[per_process:])
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        correct = ((logits.detach() > 0).float() == target).sum()
        return {
            "loss": accelerator.reduce(loss.detach(), "mean").item(),
            "correct": int(accelerator.reduce(correct, "sum").item()),
        }

    def row(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Mean loss and pair accuracy of the ``count`` steps since the last row."""
        return {
            "loss": sums["loss"] / count,
            "accuracy": sums["correct"] / max(1, count * self.spec.batch_size),
            "lr": self.optimizer.param_groups[0]["lr"],
        }

    def export(self, folder: Path, model: PrivacyEmbedder, result: RunResult) -> dict:
        model.save_pretrained(folder)
        return {"model": jsonable(self.model_kwargs), "train": self.spec.to_dict(), **self.records}


def train_privacy(
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    state_dir: str | Path,
    preset: str,
    overrides: dict | None,
    train: PrivacyTrainSpec | dict,
    seed: int,
    device: str = "cpu",
    root: str | Path = ".",
    imagenet: str | Path | None = None,
) -> dict:
    """Train the re-identification embedder on the TRAIN latents of one or more datasets.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` (accelerate state plus
    ``progress.json``) via :mod:`echogen.training.state`; the newest
    ``checkpoints_total_limit`` are kept. A run finding checkpoints resumes from the newest
    (model, lr, batch size, seed, process count and training videos must be those it was
    saved with; the budget may differ). ``state_dir/log.csv`` is the running log.

    Args:
        latent_indexes: latent index csvs (FileName, Split, latent_path, ...); the TRAIN rows
            of all of them form one training set (videos are told apart by file, not name).
        out_dir: export folder, replaced atomically at the end: ``save_pretrained`` files
            (embedder and Siamese head), ``train.json`` and ``log.csv`` (step, loss,
            accuracy, lr).
        state_dir: folder of the resumable training state (not a workflow output).
        preset: a key of :data:`~echogen.models.privacy.PRIVACY_PRESETS`.
        overrides: embedder keyword arguments replacing the preset's (None: none).
        train: a :class:`PrivacyTrainSpec` or a dict of its fields.
        seed: seeds the initialisation and every step's pairs.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        root: folder the indexes' ``latent_path`` column is relative to.
        imagenet: torchvision's ImageNet ResNet-50 weights file to start the trunk from (all
            but the first convolution and ``fc``, as EchoNet-Synthetic); None starts random.

    Returns:
        Summary: steps, resumed_from (step or None), n_videos, n_frames, last_loss,
        last_accuracy (NaN when nothing was logged) and out_dir.
    """
    spec = train if isinstance(train, PrivacyTrainSpec) else PrivacyTrainSpec(**train)
    model_kwargs = resolve_model(preset, overrides)
    in_channels = model_kwargs["in_channels"]
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    videos, origin = collect_videos(latent_indexes, ("TRAIN",), in_channels, root)
    if len(videos.names) < 2:
        raise DataError(
            origin[0][0], "only one TRAIN video", "negative pairs need at least two TRAIN videos"
        )
    short = np.flatnonzero(videos.frames < 2)
    if short.size:
        csv, line = origin[short[0]]
        raise DataError(
            csv,
            f"{short.size} TRAIN latent video(s) have fewer than 2 frames, e.g. "
            f"{videos.names[short[0]]}",
            "drop them from the index; positive pairs need two frames of one video",
            row=line,
            item=videos.names[short[0]],
        )

    accelerator = accelerator_for(device, state_dir)
    world = accelerator.num_processes
    if spec.batch_size % world:
        raise ValueError(
            f"train.batch_size ({spec.batch_size}) must be a multiple of the {world} processes"
        )
    fingerprint = {
        "model": model_kwargs,
        "train": {k: v for k, v in spec.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_videos": videos.digest,
        "imagenet": None if imagenet is None else sha256_file(imagenet),
    }
    records = {
        "preset": preset,
        "imagenet": None if imagenet is None else str(imagenet),
        "latent_indexes": [str(p) for p in latent_indexes],
        "n_videos": len(videos.names),
        "n_frames": int(videos.frames.sum()),
        "frame_shape": list(videos.frame_shape),
    }
    task = PrivacyTask(model_kwargs, spec, videos, seed, records, imagenet)
    budget = Budget.of(spec)
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
        "n_videos": len(videos.names),
        "n_frames": int(videos.frames.sum()),
        "last_loss": result.last("loss"),
        "last_accuracy": result.last("accuracy"),
        "out_dir": str(out_dir),
    }
