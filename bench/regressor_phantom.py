"""Benchmark: the `tiny` EF regressor preset on a phantom EchoNet-Dynamic.

Writes a phantom Dynamic (TRAIN/VAL/TEST videos as given), trains the `tiny` preset on CPU
with 2 threads, predicts TEST and prints the TEST table (single clip, all-clip mean, and the
MAE of predicting the training mean) with wall times.

Usage: .venv/bin/python bench/regressor_phantom.py --out /tmp/echogen_regressor [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from echogen.data.dynamic import ingest_dynamic
from echogen.data.manifest import read_manifest
from echogen.phantom import write_phantom
from echogen.pipelines.ef_prediction import predict_ef, regressor_record, write_regressor_table
from echogen.training.regressor import resolve_config, train_regressor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, nargs=3, default=[200, 40, 60])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = args.out / "manifest.csv"
    if not manifest.exists():
        videos = dict(zip(["TRAIN", "VAL", "TEST"], args.videos, strict=True))
        params = {"videos": videos, "frames": [100, 140], "fps": 50, "size": 112}
        write_phantom("dynamic", args.out / "dynamic", params, seed=11)
        ingest_dynamic(args.out / "dynamic", manifest, args.out / "quarantine.csv")
    run = args.out / f"seed{args.seed}"
    start = time.perf_counter()
    summary = train_regressor(
        manifest, run / "model", run / "state", resolve_config("tiny"), args.seed
    )
    train_s = time.perf_counter() - start
    rows = read_manifest(manifest)
    start = time.perf_counter()
    predictions = predict_ef(run / "model", rows[rows["Split"] == "TEST"], run / "test.csv")
    predict_s = time.perf_counter() - start
    record = regressor_record(
        predictions, summary["train_mean_ef"], ["TEST"], n_boot=1000, seed=args.seed
    )
    write_regressor_table(record, run / "report.txt", run / "report.json")
    print((run / "report.txt").read_text())
    print(
        f"train {train_s:.0f} s ({summary['steps']} steps), predict TEST {predict_s:.0f} s; "
        f"{args.threads} threads; load average after {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
