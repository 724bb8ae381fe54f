"""Tiny training runs of every trainer-engine task, for the one trainer contract test.

A :class:`TrainerCase` names a task's JSON-able entry point (the ``module:function`` the
workflow rule starts through ``echogen.workflow.run_distributed``), builds its input data and
its keyword arguments, and says how its budget is laid out. ``tests/unit/test_trainer_contract.py``
runs the same checks over every case; a new task joins the contract by adding a case here.
The data builders are shared with the tasks' own test modules.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echogen.data.dynamic import ingest_dynamic
from echogen.data.manifest import write_manifest
from echogen.data.video import write_video
from echogen.phantom import write_phantom

# ---------------------------------------------------------------- data builders

DYNAMIC_PHANTOM = {
    "videos": {"TRAIN": 8, "VAL": 2, "TEST": 3},
    "frames": [20, 30],
    "fps": 50,
    "size": 32,
}


def phantom_dynamic(base: Path) -> Path:
    """A phantom EchoNet-Dynamic of 13 videos (32 px) ingested into a manifest; its path."""
    write_phantom("dynamic", base / "dynamic", DYNAMIC_PHANTOM, seed=7)
    manifest = base / "manifest.csv"
    ingest_dynamic(base / "dynamic", manifest, base / "quarantine.csv")
    return manifest


BLOB_SIZE, BLOB_FRAMES, BLOB_FPS = 32, 24, 32.0
BLOB_NAMES = {0: "ASD", 2: "Non-PAH", 3: "PAH"}
BLOB_CLASSES = [2, 3]


def blob_video(rng: np.random.Generator, class_id: int) -> np.ndarray:
    """Mid-grey noise with a blob circling: bright for class 3, dark for 2 (and 0)."""
    size = BLOB_SIZE
    t = np.arange(BLOB_FRAMES)[:, None, None]
    y, x = np.mgrid[:size, :size][:, None]
    phase = rng.uniform(0, 2 * np.pi)
    cy = size / 2 + 7 * np.sin(2 * np.pi * t / 12 + phase)
    cx = size / 2 + 7 * np.cos(2 * np.pi * t / 12 + phase)
    frames = rng.normal(110, 12, size=(BLOB_FRAMES, size, size))
    blob = (y - cy) ** 2 + (x - cx) ** 2 < rng.uniform(4, 6) ** 2
    frames[blob] = 230 if class_id == 3 else 15
    return np.clip(frames, 0, 255).astype(np.uint8)


def blob_cardiac(root: Path, real: dict[str, int], n_synthetic: int) -> dict:
    """CardiacNet-like real videos (``real[split]`` per class of :data:`BLOB_CLASSES`, and two
    of class 0 that classifiers must drop) plus a samples folder of ``n_synthetic`` videos per
    class; returns ``root``, ``manifest`` and ``samples`` (relative to root)."""
    rng = np.random.default_rng(11)
    records = []
    for split, n in real.items():
        for class_id in [*BLOB_CLASSES, 0]:
            for i in range(n if class_id else 2):
                name = f"real_{split.lower()}_{class_id}_{i}"
                path = Path("videos") / f"{name}.mp4"
                write_video(root / path, blob_video(rng, class_id), BLOB_FPS)
                records.append(
                    {
                        "FileName": name,
                        "FPS": BLOB_FPS,
                        "NumberOfFrames": BLOB_FRAMES,
                        "Split": split,
                        "Dataset": "cardiacnet",
                        "Path": str(path),
                        "class_name": BLOB_NAMES[class_id],
                        "class_id": class_id,
                    }
                )
    manifest = root / "manifest.csv"
    write_manifest(pd.DataFrame(records), manifest)

    samples = Path("samples") / "run"
    listing = []
    for class_id in [*BLOB_CLASSES, 0]:
        for _ in range(n_synthetic if class_id else 1):
            name = f"sample_{len(listing):05d}"
            video = blob_video(rng, class_id)
            write_video(root / samples / "Videos" / f"{name}.mp4", video, BLOB_FPS)
            row = {"FileName": name, "FPS": BLOB_FPS, "class_id": class_id}
            listing.append({**row, "class_name": BLOB_NAMES[class_id], "Split": "TRAIN"})
    pd.DataFrame(listing).to_csv(root / samples / "FileList.csv", index=False)
    return {"root": root, "manifest": manifest, "samples": samples}


LATENT_C, LATENT_H = 4, 8  # the privacy tests' latent frames


def _smooth_latent(rng: np.random.Generator) -> np.ndarray:
    """A smooth random latent frame (LATENT_C, LATENT_H, LATENT_H): a sum of low-frequency waves."""
    y, x = np.mgrid[0:LATENT_H, 0:LATENT_H] / LATENT_H
    out = np.zeros((LATENT_C, LATENT_H, LATENT_H))
    for c in range(LATENT_C):
        for _ in range(3):
            fy, fx, phase = rng.uniform(0.3, 1.5, size=2).tolist() + [rng.uniform(0, 6.3)]
            out[c] += rng.normal() * np.sin(2 * np.pi * (fy * y + fx * x) + phase)
    return out


def latent_videos(root, splits=("TRAIN",) * 8 + ("VAL",) * 3 + ("TEST",) * 3, frames=6, seed=0):
    """Latent videos under root/latents (float16 ``(T, C, H, H)``) and their index csv.

    Each video is one smooth pattern plus small per-frame noise, so two frames of one video
    are far more alike than frames of two videos (positives are easy).
    """
    rng = np.random.default_rng(seed)
    records = []
    for i, split in enumerate(splits):
        base = _smooth_latent(rng)
        video = base[None] + 0.05 * rng.normal(size=(frames, LATENT_C, LATENT_H, LATENT_H))
        rel = f"latents/video_{i:02d}.npy"
        (root / "latents").mkdir(parents=True, exist_ok=True)
        np.save(root / rel, video.astype(np.float16))
        records.append(
            {"FileName": f"video_{i:02d}", "EF": 50.0 + i, "Split": split, "latent_path": rel}
        )
    index = root / "index.csv"
    pd.DataFrame(records).to_csv(index, index=False)
    return index


TOY_CLASSES = ["normal", "asd", "pah"]
TOY_OFFSETS = (2.0, -1.5, 1.0, 0.5)


def toy_latent_index(root: Path, frames: list[int], name: str = "toy", splits=None) -> Path:
    """A latent index of smooth toy videos: a blob that beats with the EF, on per-channel
    offsets (real VAE latents have non-zero channel means too).

    Latents are float16 (T, 4, 14, 14), as the VAE step writes them.
    """
    rng = np.random.default_rng(len(frames))
    yy, xx = np.mgrid[:14, :14] / 13.0
    rows = []
    for i, n in enumerate(frames):
        ef = 20.0 + 15.0 * i
        t = np.arange(n)[:, None, None]
        radius = 0.25 + 0.1 * (ef / 100) * np.sin(2 * np.pi * t / 8)
        blob = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / radius**2)  # (T, 14, 14)
        channels = [m + blob * s for m, s in zip(TOY_OFFSETS, (1.5, -1.0, 0.5, 0.8), strict=True)]
        latent = np.stack(channels, axis=1) + 0.05 * rng.standard_normal((n, 4, 14, 14))
        rel = Path("latents") / name / f"video{i}.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, latent.astype(np.float16))
        rows.append(
            {
                "FileName": f"video{i}",
                "EF": ef,
                "Split": (splits or ["TRAIN"] * len(frames))[i],
                "View": "A4C",
                "class_id": i % 3,
                "class_name": TOY_CLASSES[i % 3],
                "latent_path": str(rel),
                "latent_frames": n,
                "latent_fps": 32.0,
                "scaling_factor": 0.5,
            }
        )
    index = root / "latents" / name / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    return index


def disk_videos(root: Path) -> Path:
    """Four short AVIs of a pulsing bright disk on a dark background (three TRAIN, one VAL)
    and their manifest, in ``root``; returns ``root``."""
    yy, xx = np.mgrid[:48, :48]
    rows = []
    for i in range(4):
        frames = []
        for t in range(20):
            radius = 10 + 5 * np.sin(2 * np.pi * t / 10 + i)
            disk = (yy - 24) ** 2 + (xx - 22 - i) ** 2 < radius**2
            frames.append(np.where(disk, 200 - 10 * i, 30).astype(np.uint8))
        write_video(root / f"v{i}.avi", np.stack(frames), 25)
        rows.append(
            {
                "FileName": f"v{i}",
                "EF": 50.0,
                "FPS": 25.0,
                "NumberOfFrames": 20,
                "FrameHeight": 48,
                "FrameWidth": 48,
                "Split": "TRAIN" if i < 3 else "VAL",
                "Path": f"v{i}.avi",
            }
        )
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    return root


# ---------------------------------------------------------------- cases

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _regressor_data(base: Path) -> dict:
    return {"manifest": str(phantom_dynamic(base))}


def _regressor_kwargs(data: dict, overrides: dict) -> dict:
    return {"manifest": data["manifest"], "run": {"preset": "tiny", "overrides": overrides}}


def _classifier_data(base: Path) -> dict:
    built = blob_cardiac(base, {"TRAIN": 8, "VAL": 3}, n_synthetic=1)
    return {"manifest": str(built["manifest"]), "root": str(base)}


def _classifier_kwargs(data: dict, overrides: dict) -> dict:
    return {
        "source": "real",
        "manifest": data["manifest"],
        "filelist": None,
        "classification": {"preset": "tiny", "overrides": overrides},
        "classes": BLOB_CLASSES,
        "root": data["root"],
    }


@dataclass(frozen=True)
class TrainerCase:
    """One task's tiny run.

    Args:
        name: the case id.
        entry: ``module:function`` taking JSON-able keyword arguments (``out_dir``,
            ``state_dir``, ``seed`` and the task's own).
        model_class: ``module:Class`` whose ``from_pretrained`` loads the export.
        weights: the exported safetensors file, relative to the export folder (the model
            folder is its parent).
        overrides: the tiny run's settings; ``overrides["train"]`` holds the budget
            (``epochs`` for epoch tasks, ``max_steps`` for step tasks).
        steps_per_epoch: optimiser steps per epoch of one process; None for step tasks.
        cut: a step to cut the budget at first: mid-epoch, or between log rows.
        changed: a ``train`` setting that changes the trajectory (must be refused on resume).
        two_process: ``train`` overrides that keep the global batch on 2 processes.
        make_data: builds the inputs in a folder; returns what ``make_kwargs`` reads.
        make_kwargs: the task's own keyword arguments from the data and the overrides.
    """

    name: str
    entry: str
    model_class: str
    weights: str
    overrides: dict
    steps_per_epoch: int | None
    cut: int
    changed: dict
    two_process: dict
    make_data: Callable[[Path], dict]
    make_kwargs: Callable[[dict, dict], dict]

    @property
    def total(self) -> int:
        train = self.overrides["train"]
        if self.steps_per_epoch is None:
            return train["max_steps"]
        return train["epochs"] * self.steps_per_epoch

    def log_steps(self, total: int) -> list[int]:
        """The ``step`` column of the exported log of a run of ``total`` steps."""
        every = self.steps_per_epoch or self.overrides["train"]["log_every"]
        steps = list(range(every, total + 1, every))
        return steps if total % every == 0 else [*steps, total]

    def kwargs(self, data: dict, out: Path, state: Path, seed: int, **train) -> dict:
        overrides = {**self.overrides, "train": {**self.overrides["train"], **train}}
        common = {"out_dir": str(out), "state_dir": str(state), "seed": seed}
        return {**common, **self.make_kwargs(data, overrides)}

    def call(self, kwargs: dict) -> dict:
        module, name = self.entry.split(":")
        return getattr(importlib.import_module(module), name)(**kwargs)

    def load(self, out: Path):
        module, name = self.model_class.split(":")
        model_class = getattr(importlib.import_module(module), name)
        return model_class.from_pretrained((out / self.weights).parent)


REGRESSOR = TrainerCase(
    name="regressor",
    entry="echogen.training.regressor:train_regressor_from_run",
    model_class="echogen.models.regressor:EFRegressor",
    weights=WEIGHTS,
    overrides={
        "model": {"widths": [4, 8, 8, 8], "fc_bias_init": 0.0},
        "clips": {"frames": 8, "period": 2, "size": 32, "pad": 2, "test_clip_stride": 4},
        "train": {
            "optimizer": "sgd",
            "lr": 1e-3,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            # A step schedule, so the scheduler's state must survive a resume.
            "lr_step_epochs": 2,
            "lr_gamma": 0.5,
            "epochs": 4,
            "batch_size": 2,
            # Not a multiple of the epoch length, so a resume lands mid-epoch.
            "checkpoint_every": 3,
            "checkpoints_total_limit": 2,
        },
    },
    steps_per_epoch=4,  # 8 TRAIN videos / batch 2
    cut=6,  # mid-epoch 1
    changed={"lr": 0.1},
    two_process={"batch_size": 1},
    make_data=_regressor_data,
    make_kwargs=_regressor_kwargs,
)

CLASSIFIER = TrainerCase(
    name="classifier",
    entry="echogen.training.classifier:train_classifier_from_config",
    model_class="echogen.models.regressor:EFRegressor",
    weights=WEIGHTS,
    overrides={
        "model": {"widths": [4, 8, 8, 8]},
        "clips": {"frames": 8, "period": 2, "size": BLOB_SIZE, "pad": 2, "test_clip_stride": 4},
        "train": {
            "lr": 3e-3,
            "epochs": 3,
            "batch_size": 4,
            # Dropout draws from the global RNG, which a resume must restore.
            "dropout": 0.5,
            "select": "best_val",
            "checkpoint_every": 3,
            "checkpoints_total_limit": 2,
        },
    },
    steps_per_epoch=4,  # 16 real TRAIN videos / batch 4
    cut=6,  # mid-epoch 1
    changed={"lr": 1e-2},
    two_process={"batch_size": 2},
    make_data=_classifier_data,
    make_kwargs=_classifier_kwargs,
)


def _privacy_data(base: Path) -> dict:
    return {"index": str(latent_videos(base)), "root": str(base)}


def _privacy_kwargs(data: dict, overrides: dict) -> dict:
    return {
        "latent_indexes": [data["index"]],
        "preset": "tiny",
        "overrides": {"widths": [8, 16], "layers": [1, 1], "embedding_dim": 16},
        "train": overrides["train"],
        "root": data["root"],
    }


PRIVACY = TrainerCase(
    name="privacy",
    entry="echogen.training.privacy:train_privacy",
    model_class="echogen.models.privacy:PrivacyEmbedder",
    weights=WEIGHTS,
    overrides={
        "train": {
            "lr": 3e-3,
            "batch_size": 8,  # global: 2 processes split it
            "max_steps": 8,
            "checkpoint_every": 3,
            "checkpoints_total_limit": 2,
            "log_every": 2,
        }
    },
    steps_per_epoch=None,
    cut=5,  # between log rows
    changed={"lr": 1e-2},
    two_process={},
    make_data=_privacy_data,
    make_kwargs=_privacy_kwargs,
)


def _vae_data(base: Path) -> dict:
    return {"manifest": str(disk_videos(base) / "manifest.csv"), "root": str(base)}


def _vae_kwargs(data: dict, overrides: dict) -> dict:
    return {
        "manifests": [data["manifest"]],
        "preset": "tiny",
        "overrides": None,
        "train_preset": "tiny",
        "train_overrides": overrides["train"],
        "root": data["root"],
    }


VAE = TrainerCase(
    name="vae",
    entry="echogen.training.vae:train_vae_from_presets",
    model_class="diffusers:AutoencoderKL",
    weights=WEIGHTS,
    overrides={
        "train": {
            "size": 32,
            "batch_size": 4,  # per process
            "max_steps": 6,
            # The discriminator and its optimiser join mid-run: a GAN resume.
            "disc_start": 2,
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "log_every": 2,
            "scale_frames": 64,
        }
    },
    steps_per_epoch=None,
    cut=3,  # between log rows, after the discriminator started
    changed={"kl_weight": 1e-3},
    two_process={"batch_size": 2},
    make_data=_vae_data,
    make_kwargs=_vae_kwargs,
)


def _lvdm_data(base: Path) -> dict:
    return {"index": str(toy_latent_index(base, [12, 10, 9])), "root": str(base)}


def _lvdm_kwargs(data: dict, overrides: dict) -> dict:
    model = {
        "conditioning": "ef",
        "preset": "tiny",
        "train_preset": "tiny",
        "frames": 8,
        "train": overrides["train"],
    }
    return {"latent_indexes": [data["index"]], "model": model, "root": data["root"]}


LVDM = TrainerCase(
    name="lvdm",
    entry="echogen.training.lvdm:train_lvdm_from_config",
    model_class="diffusers:UNetSpatioTemporalConditionModel",
    weights=f"unet/{WEIGHTS}",
    overrides={
        "train": {
            "batch_size": 2,  # global: 2 processes split it
            "max_steps": 6,
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "log_every": 2,
        }
    },
    steps_per_epoch=None,
    cut=3,  # between log rows
    changed={"lr": 3e-4},
    two_process={},
    make_data=_lvdm_data,
    make_kwargs=_lvdm_kwargs,
)


def _lidm_kwargs(data: dict, overrides: dict) -> dict:
    model = {
        "conditioning": "class",
        "preset": "tiny",
        "train_preset": "tiny",
        "train": overrides["train"],
    }
    return {"latent_indexes": [data["index"]], "model": model, "root": data["root"]}


LIDM = TrainerCase(
    name="lidm",
    entry="echogen.training.lidm:train_lidm_from_config",
    model_class="diffusers:UNet2DConditionModel",
    weights=f"unet/{WEIGHTS}",
    overrides={
        "train": {
            "batch_size": 4,  # global: 2 processes split it
            "max_steps": 6,
            "cond_dropout": 0.5,
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "log_every": 2,
        }
    },
    steps_per_epoch=None,
    cut=3,  # between log rows
    changed={"cond_dropout": 0.2},
    two_process={},
    make_data=_lvdm_data,
    make_kwargs=_lidm_kwargs,
)


def _cascade_data(base: Path) -> dict:
    return {"manifest": str(phantom_dynamic(base)), "root": str(base)}


def _cascade_kwargs(data: dict, overrides: dict) -> dict:
    # 2SCM's super-resolution stage (low-resolution conditioning, random crops) on 16-frame
    # clips at 16 px; EMA from the first step, so the exported EMA weights move.
    model = {
        "structure": "2SCM",
        "preset": "tiny",
        "fps": 16,
        "duration": 1.0,
        "train": overrides["train"],
    }
    return {"manifest": data["manifest"], "model": model, "stage": 2, "root": data["root"]}


CASCADE = TrainerCase(
    name="cascade",
    entry="echogen.training.cascade:train_cascade_stage_from_config",
    model_class="echogen.models.cascade:CascadeStage",
    weights="unet_ema.safetensors",
    overrides={
        "train": {
            "max_steps": 6,
            "ignore_time": 0.5,
            "ema_update_after_step": 0,
            "ema_update_every": 1,
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "log_every": 2,
        }
    },
    steps_per_epoch=None,
    cut=3,  # between log rows
    changed={"lr": 1e-3},
    two_process={},  # the batch is per process, as EchoDiffusion's
    make_data=_cascade_data,
    make_kwargs=_cascade_kwargs,
)


def dartagnan_data(base: Path, frames: int = 8, size: int = 16) -> dict:
    """D'ARTAGNAN clips (4 TRAIN, 2 VAL, 2 TEST): a disk whose radius beats with the EF, as
    ``.npy`` float16 ``(frames, size, size)`` in [0, 1] with their ``metainfo.csv``; and a
    tiny random EF expert (an exported regressor reading such clips). Returns ``metainfo``,
    ``expert`` and ``root``."""
    from echogen.data.clips import METAINFO_COLUMNS
    from echogen.data.ef_clips import ClipSpec
    from echogen.models.regressor import MODEL_PRESETS, EFRegressor

    base.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    rows = []
    for i, split in enumerate(["TRAIN"] * 4 + ["VAL"] * 2 + ["TEST"] * 2):
        ef = 25.0 + 7.5 * i
        t = np.arange(frames)[:, None, None]
        radius = size / 4 * (1 - ef / 200 * (1 - np.cos(2 * np.pi * t / frames)))
        clip = np.where(yy**2 + xx**2 < radius**2, 0.8, 0.1).astype(np.float16)
        path = Path("clips") / f"video{i}.npy"
        (base / path).parent.mkdir(exist_ok=True)
        np.save(base / path, clip)
        row = dict.fromkeys(METAINFO_COLUMNS, 0)
        row.update(FileName=f"video{i}", Path=str(path), EF=ef, Split=split, FPS=32.0,
                   NumberOfFrames=frames)  # fmt: skip
        rows.append(row)
    metainfo = base / "metainfo.csv"
    pd.DataFrame(rows, columns=METAINFO_COLUMNS).to_csv(metainfo, index=False)
    expert = base / "expert"
    EFRegressor(**MODEL_PRESETS["tiny"]).save_pretrained(expert)
    spec = ClipSpec(frames=frames, period=1, fps=32.0, size=size, channels=1, normalisation="unit")
    (expert / "clips.json").write_text(json.dumps(spec.to_dict()))
    return {"metainfo": str(metainfo), "expert": str(expert), "root": str(base)}


def _dartagnan_kwargs(data: dict, overrides: dict) -> dict:
    return {"metainfo": data["metainfo"], "expert_dir": data["expert"], "root": data["root"],
            "generator": {"preset": "tiny"}, "discriminator": {"preset": "tiny"},
            "train": overrides["train"]}  # fmt: skip


DARTAGNAN = TrainerCase(
    name="dartagnan",
    entry="echogen.training.dartagnan:train_dartagnan",
    model_class="echogen.models.dartagnan:DartagnanGenerator",
    weights=f"generator/{WEIGHTS}",
    overrides={
        "train": {
            "batch_size": 2,
            "epochs": 3,
            "size": 16,
            "frames": 8,
            # The loss ramps and the lr decay change every epoch: a resume must keep them.
            "decay_epochs": 2,
            "recon_offset": 1,
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "select": "best_val",
        }
    },
    steps_per_epoch=2,  # 4 TRAIN clips / batch 2
    cut=3,  # mid-epoch 1
    changed={"margin": 20.0},
    two_process={"batch_size": 1},
    make_data=dartagnan_data,
    make_kwargs=_dartagnan_kwargs,
)


def camus_pairs(base: Path, size: int = 64, splits=("train",) * 4 + ("valid",) * 2 + ("test",) * 2):
    """A CAMUS ``index.csv`` as ``prepare_camus`` writes it: per patient a label map of nested
    ellipses (LV cavity 1 in myocardium 2, atrium 3 below) whose size varies, and a grey image
    whose brightness follows the labels with speckle. Returns ``index``."""
    import cv2

    from echogen.data.camus import INDEX_COLUMNS

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    records = []
    for i, split in enumerate(splits):
        r = 0.18 + 0.08 * rng.random()
        label = np.zeros((size, size), np.uint8)
        label[((xx - 0.5) / (r + 0.08)) ** 2 + ((yy - 0.38) / (r + 0.14)) ** 2 < 1] = 2
        label[((xx - 0.5) / r) ** 2 + ((yy - 0.38) / (r + 0.06)) ** 2 < 1] = 1
        label[((xx - 0.5) / 0.16) ** 2 + ((yy - 0.8) / 0.12) ** 2 < 1] = 3
        level = np.array([0.05, 0.15, 0.75, 0.3])[label]
        image = np.clip(level * (1 + 0.3 * rng.standard_normal(label.shape)), 0, 1)
        patient = f"patient{i + 1:04d}"
        paths = {k: base / split / k / f"{patient}.png" for k in ("image", "label")}
        for kind, array in (("image", (image * 255).astype(np.uint8)), ("label", label)):
            paths[kind].parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(paths[kind]), array)
        records.append({"patient": patient, "split": split, "image": str(paths["image"]),
                        "label": str(paths["label"]), "height": size, "width": size})  # fmt: skip
    index = base / "index.csv"
    pd.DataFrame(records, columns=INDEX_COLUMNS).to_csv(index, index=False)
    return {"index": str(index)}


def _spade_kwargs(data: dict, overrides: dict) -> dict:
    return {"index_csv": data["index"], "generator": {"preset": "tiny"},
            "discriminator": {"preset": "tiny"}, "train": overrides["train"]}  # fmt: skip


SPADE = TrainerCase(
    name="spade",
    entry="echogen.training.spade:train_spade",
    model_class="echogen.models.spade:SPADEGenerator",
    weights=f"generator/{WEIGHTS}",
    overrides={
        "train": {
            "batch_size": 2,
            "epochs": 3,
            "decay_epochs": 2,  # the rate changes every epoch: a resume must keep it
            "size": 64,  # the tiny preset's; at 32 px the head is 1x1, too small for batch
            # norm on one image per process
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "select": "best_val",
        }
    },
    steps_per_epoch=2,  # 4 train pairs / batch 2
    cut=3,  # mid-epoch 1
    changed={"lambda_feat": 5.0},
    two_process={"batch_size": 1},
    make_data=camus_pairs,
    make_kwargs=_spade_kwargs,
)


def _segmenter_kwargs(data: dict, overrides: dict) -> dict:
    return {"sources": [data["index"]], "val_index": data["index"], "model": {"preset": "tiny"},
            "train": overrides["train"]}  # fmt: skip


SEGMENTER = TrainerCase(
    name="segmenter",
    entry="echogen.training.segmenter:train_segmenter",
    model_class="echogen.models.segmenter:Segmenter",
    weights=f"segmenter/{WEIGHTS}",
    overrides={
        "train": {
            "batch_size": 2,
            "epochs": 3,
            "size": 32,
            "flip": True,  # flips drawn per step: a resume must draw the same
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "select": "best_val",
        }
    },
    steps_per_epoch=2,  # 4 train pairs / batch 2
    cut=3,  # mid-epoch 1
    changed={"lr": 1e-2},
    two_process={"batch_size": 1},
    make_data=camus_pairs,
    make_kwargs=_segmenter_kwargs,
)

RV_SIZE, RV_FRAMES = 24, 10


def rv_clip(rng: np.random.Generator, label: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey clip ``(T, S, S)`` in [0, 1] and its flow ``(T-1, S, S, 2)``: a square drifting
    right, fast (and dark) for label 1, slow for label 0, on speckle."""
    size = RV_SIZE
    speed = 1.5 if label else 0.3
    grey = rng.uniform(0.1, 0.3, size=(frames, size, size))
    flow = rng.normal(0, 0.1, size=(frames - 1, size, size, 2))
    y0 = int(rng.integers(4, size - 10))
    for t in range(frames):
        x0 = int(2 + speed * t) % (size - 6)
        grey[t, y0 : y0 + 6, x0 : x0 + 6] = 0.4 if label else 0.9
        if t < frames - 1:
            flow[t, y0 : y0 + 6, x0 : x0 + 6, 0] += speed
    return grey / grey.max(), flow


def rv_clips(base: Path, counts=(("TRAIN", 8), ("VAL", 4), ("TEST", 4))) -> dict:
    """Split csvs (the ingest_rvfailure columns) of :func:`rv_clip` clips, labels alternating,
    two videos per patient; returns ``{"TRAIN": csv, "VAL": csv, "TEST": csv}``."""
    rng = np.random.default_rng(3)
    base.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in counts:
        records = []
        for i in range(n):
            label, name = i % 2, f"{split.lower()}_{i:02d}"
            grey, flow = rv_clip(rng, label, RV_FRAMES + i % 3)
            paths = {"Path": base / f"{name}.npy", "FlowPath": base / f"{name}_flow.npy"}
            np.save(paths["Path"], grey.astype(np.float16))
            np.save(paths["FlowPath"], flow.astype(np.float16))
            records.append({"FileName": name, **{k: str(v) for k, v in paths.items()},
                            "patient_id": f"{split}{i // 4}{label}", "label": label,
                            "class_name": "severe" if label else "normal"})  # fmt: skip
        splits[split] = str(base / f"{split.lower()}.csv")
        pd.DataFrame(records).to_csv(splits[split], index=False)
    return splits


def _rv_kwargs(data: dict, overrides: dict) -> dict:
    # stem stride 1: the last stage keeps 2x2 positions, so batch norm sees more than one
    # value per channel with one clip per process
    network = {"depth": 10, "widths": [4, 4, 8, 8], "stem_stride": 1}
    return {"objective": "rvfailure", "network": network,
            "streams": ["grey", "flow"], "clips": {"frames": 8, "size": RV_SIZE},
            "train": overrides["train"],
            "splits": {"TRAIN": data["TRAIN"], "VAL": data["VAL"]}}  # fmt: skip


RVFAILURE = TrainerCase(
    name="rvfailure",
    entry="echogen.training.rvfailure:train_rvfailure_from_config",
    model_class="echogen.models.rvfailure:TwoStreamNet",
    weights=WEIGHTS,
    overrides={
        "train": {
            "batch_size": 2,
            "epochs": 2,
            "lr": 1e-3,  # the cosine schedule changes the rate every step
            "checkpoint_every": 2,
            "checkpoints_total_limit": 2,
            "select": "best_val",
        }
    },
    steps_per_epoch=4,  # 8 TRAIN clips / batch 2
    cut=3,  # mid-epoch 0
    changed={"class_weights": [0.5, 1.5]},
    two_process={"batch_size": 1},
    make_data=rv_clips,
    make_kwargs=_rv_kwargs,
)

CASES = [REGRESSOR, CLASSIFIER, PRIVACY, VAE, LVDM, LIDM, CASCADE, DARTAGNAN, SPADE, SEGMENTER,
         RVFAILURE]  # fmt: skip


def run_jobs(jobs: list[dict]) -> None:
    """Run ``{"target": "module:function", "kwargs": {...}}`` jobs in turn: the contract's
    two-process runs of every case share one ``accelerate launch`` (its start-up is most of
    a tiny run's time)."""
    for job in jobs:
        module, name = job["target"].split(":")
        getattr(importlib.import_module(module), name)(**job["kwargs"])
