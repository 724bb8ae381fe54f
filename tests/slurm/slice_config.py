"""The workflow slice the SLURM tests run: the demo config cut down to one dataset and tiny sizes.

Data preparation (phantom, ingest, reference frames), two multi-GPU training rules (VAE and
LVDM, 2 fake GPUs each, so accelerate runs 2 CPU processes), sharded sampling and one metric
table (results/metrics/lvdm_dynamic.txt).
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TARGET = "results/metrics/lvdm_dynamic.txt"
TRAIN_GPUS = 2


def slice_config(lvdm_steps: int = 4, checkpoint_every: int = 2) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["phantom"]["dynamic"].update(videos={"TRAIN": 4, "VAL": 2, "TEST": 2}, frames=[40, 56])
    for name, dataset in config["datasets"].items():
        dataset["activate"] = name == "dynamic"
    derived = config["derived"]
    for name in derived:
        derived[name]["activate"] = name == "reference_frames"
    derived["reference_frames"]["sets"] = {"dynamic": [16]}
    config["metrics"]["comparisons"] = {}
    config["regressors"]["activate"] = False
    lvdm = config["lvdm"]
    lvdm["gpus"] = {"train": TRAIN_GPUS, "lidm": 1, "infer": 1}
    lvdm["shards"] = 2
    lvdm["vae"].update(datasets=["dynamic"], train={"max_steps": 4, "disc_start": 2})
    lvdm["latents"]["datasets"] = ["dynamic"]
    ef = lvdm["models"]["ef"]
    ef.update(
        datasets=["dynamic"],
        frames=8,
        train={"max_steps": lvdm_steps, "checkpoint_every": checkpoint_every},
    )
    lvdm["models"] = {"ef": ef}
    dynamic = lvdm["samples"]["dynamic"]
    dynamic.update(
        n_samples=2,
        frames=16,
        window=8,
        overlap=4,
        steps=2,
        real="resources/reference_frames/dynamic_16f",
        metrics=["fvd2048_16f"],
    )
    dynamic["lidm"] = None  # real conditioning frames: the slice tests SLURM, not the LIDM
    lvdm["samples"] = {"dynamic": dynamic}
    lvdm["lidms"] = {}
    lvdm["privacy"]["activate"] = False
    config.pop("evaluation", None)
    return config
