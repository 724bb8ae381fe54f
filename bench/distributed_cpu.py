"""Benchmark: the data-parallel path of a multi-GPU training rule on CPU (run_distributed).

Trains the `tiny` LVDM for a few steps on random smooth latents, with 1 or N processes, and
prints the wall time (process start-up included). Run it twice to see what the thread-count
variables cost: Snakemake sets OMP/MKL_NUM_THREADS to a job's threads, and before run_distributed
shared them out, every process inherited them (two processes x two MKL threads on two cores).

Usage: .venv/bin/python bench/distributed_cpu.py --processes 2 --steps 20 [--threads 2]
       MKL_NUM_THREADS=2 OMP_NUM_THREADS=2 .venv/bin/python bench/distributed_cpu.py --processes 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echogen.workflow import run_distributed


def toy_latents(root: Path, videos: int = 4, frames: int = 48) -> Path:
    """A latent index of smooth random (T, 4, 14, 14) float16 videos, all TRAIN."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(videos):
        latent = np.cumsum(rng.standard_normal((frames, 4, 14, 14)), axis=0) / np.sqrt(frames)
        path = root / f"video{i}.npy"
        np.save(path, latent.astype(np.float16))
        rows.append(
            {
                "FileName": f"video{i}", "EF": 30.0 + 10 * i, "Split": "TRAIN", "View": "A4C",
                "latent_path": path.name, "latent_frames": frames, "latent_fps": 32.0,
                "scaling_factor": 1.0,
            }
        )  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    return root / "index.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="the rule's threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = toy_latents(root)
        model = {
            "conditioning": "ef", "preset": "tiny", "train_preset": "tiny", "frames": 8,
            "train": {"max_steps": args.steps, "checkpoint_every": args.steps, "log_every": 10},
        }  # fmt: skip
        kwargs = {
            "latent_indexes": [str(index)], "out_dir": str(root / "model"),
            "state_dir": str(root / "state"), "model": model, "seed": 0, "device": "cpu",
            "root": str(root),
        }  # fmt: skip
        start = time.perf_counter()
        run_distributed("echogen.training.lvdm:train_lvdm_from_config", kwargs, args.processes)
        seconds = time.perf_counter() - start
    print(f"{args.processes} processes, {args.steps} steps: {seconds:.1f} s")


if __name__ == "__main__":
    main()
