"""Benchmark: the RV-failure predictor's effect on the phantom (issue 17, item 6).

Runs the workflow on CPU with the demo config plus the overlay
`bench/configs/rvfailure_effect.yaml`: a 48-patient RV-failure phantom (the severity shows as
RV dilation and reduced RV wall motion), the demo-sized streams pretrained on the dynamic
phantom's EF, and the fusion of both streams beside the grey-only and flow-only networks.
Then it prints what the issue asks, measured: each network's per-patient TEST AUC (target
>= 0.9 for the fusion, trained <= 20 minutes on 2 cores), specificity at 80 % sensitivity, and
the training minutes.

Usage: .venv/bin/python bench/rvfailure_effect.py --out /tmp/rvfailure_effect [--report-only]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overlay_run import bench_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "bench/configs/rvfailure_effect.yaml"
TARGETS = ["results/metrics/rvfailure.txt"]
AUC_TARGET, MINUTES_TARGET = 0.9, 20.0


def report(out: Path) -> dict[str, bool]:
    record = json.loads((out / "results/metrics/rvfailure.json").read_text())
    bench = {p.parent.name + "/" + p.stem: pd.read_csv(p, sep="\t")["s"].iloc[0]
             for p in (out / "benchmarks").glob("*rvfailure*/*.tsv")}  # fmt: skip
    print("\n## Jobs (wall minutes on this machine)")
    for job, seconds in sorted(bench.items()):
        print(f"  {job:48s} {seconds / 60:6.1f}")
    print("\n## TEST patients")
    print(f"{'model':10s} {'patients':>9s} {'AUC':>6s} {'95 % CI':>16s} {'video AUC':>9s} "
          f"{'spec@80':>8s} {'selected epoch':>14s}")  # fmt: skip
    for name, row in record["models"].items():
        train = json.loads((out / f"results/models/rvfailure_{name}/train.json").read_text())
        auc, epoch = row["auc"], train["selected"]["epoch"]
        print(f"{name:10s} {row['n_patients']:4d} ({row['n_positive']}) {auc['value']:6.3f} "
              f"[{auc['ci_low']:.3f}, {auc['ci_high']:.3f}] {row['auc_videos']:9.3f} "
              f"{row['specificity_at_sensitivity']:8.3f} {epoch:>14}")  # fmt: skip
    fusion = record["models"]["twostream"]["auc"]["value"]
    minutes = (bench.get("train_rvfailure/twostream", 0)
               + max(bench.get(f"pretrain_rvfailure_stream/{s}", 0) for s in ("grey", "flow"))
               ) / 60  # fmt: skip
    print(f"\nfusion training (pretraining of the slower stream + fusion): {minutes:.1f} min")
    met = {"auc": fusion >= AUC_TARGET, "time": minutes <= MINUTES_TARGET}
    print(f"target fusion AUC >= {AUC_TARGET}: {'met' if met['auc'] else 'MISSED'}; "
          f"within {MINUTES_TARGET:g} min: {'met' if met['time'] else 'MISSED'}")  # fmt: skip
    return met


if __name__ == "__main__":
    bench_main(__doc__, OVERLAY, TARGETS, report)
