"""Tiny training runs of every trainer-engine task, for the one trainer contract test.

A :class:`TrainerCase` names a task's JSON-able entry point (the ``module:function`` the
workflow rule starts through ``echogen.workflow.run_distributed``), builds its input data and
its keyword arguments, and says how its budget is laid out. ``tests/unit/test_trainer_contract.py``
runs the same checks over every case; a new task joins the contract by adding a case here.
The data builders are shared with the tasks' own test modules.
"""

from __future__ import annotations

import importlib
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


# ---------------------------------------------------------------- cases


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
        "classification": {"preset": "tiny", "overrides": overrides, "classes": BLOB_CLASSES},
        "class_map": {},
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
        overrides: the preset overrides of the tiny run (``train`` holds the budget).
        steps_per_epoch: optimiser steps per epoch of one process.
        changed: a ``train`` setting that changes the trajectory (must be refused on resume).
        two_process: ``train`` overrides that keep the global batch on 2 processes.
        make_data: builds the inputs in a folder; returns what ``make_kwargs`` reads.
        make_kwargs: the task's own keyword arguments from the data and the overrides.
    """

    name: str
    entry: str
    model_class: str
    overrides: dict
    steps_per_epoch: int
    changed: dict
    two_process: dict
    make_data: Callable[[Path], dict]
    make_kwargs: Callable[[dict, dict], dict]

    @property
    def total(self) -> int:
        return self.overrides["train"]["epochs"] * self.steps_per_epoch

    def kwargs(self, data: dict, out: Path, state: Path, seed: int, **train) -> dict:
        overrides = {**self.overrides, "train": {**self.overrides["train"], **train}}
        common = {"out_dir": str(out), "state_dir": str(state), "seed": seed}
        return {**common, **self.make_kwargs(data, overrides)}

    def call(self, kwargs: dict) -> dict:
        module, name = self.entry.split(":")
        return getattr(importlib.import_module(module), name)(**kwargs)

    def load(self, out: Path):
        module, name = self.model_class.split(":")
        return getattr(importlib.import_module(module), name).from_pretrained(out)


REGRESSOR = TrainerCase(
    name="regressor",
    entry="echogen.training.regressor:train_regressor_from_run",
    model_class="echogen.models.regressor:EFRegressor",
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
    changed={"lr": 0.1},
    two_process={"batch_size": 1},
    make_data=_regressor_data,
    make_kwargs=_regressor_kwargs,
)

CLASSIFIER = TrainerCase(
    name="classifier",
    entry="echogen.training.classifier:train_classifier_from_config",
    model_class="echogen.models.regressor:EFRegressor",
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
    changed={"lr": 1e-2},
    two_process={"batch_size": 2},
    make_data=_classifier_data,
    make_kwargs=_classifier_kwargs,
)

CASES = [REGRESSOR, CLASSIFIER]
