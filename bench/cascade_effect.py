"""Benchmark: EchoDiffusion's effect on the phantom (issue 15, item 7).

Runs the workflow on CPU with the demo config plus the overlay
`bench/configs/cascade_effect.yaml`: a larger phantom Dynamic at 32 Hz, the `tiny` EF
regressor trained to convergence on real phantom clips as the 1SCM sees them (8 fps, 16
frames, 24 px), and a small 1SCM (the published structure: one base stage, EDM, guidance 5)
trained for about half an hour on 2 cores. Then it prints what the paper claims, measured:

- ef: counterfactual EF control. Every VAL video conditions 3 noise draws at an EF drawn from
  U(15, 80) (the phantom's range); the regressor reads the samples' EF. Target R² ≥ 0.5
  (regressed vs requested; mean over draws, and the best of 3 by EF as the paper's EF
  feedback loop). Printed beside it: the regressor's own TEST R² (its ceiling) and the
  correlation of the regressed EF with the conditioning video's own EF (what copying the
  frame's heart would give).
- fvd: FID and FVD16 of real half vs real half, the counterfactual samples, and uniform
  noise, each against the same real set. The detectors are the demo's tiny random networks,
  so the ordering is a plumbing-level check, never a paper number. Target real < generated
  < noise.

Usage: .venv/bin/python bench/cascade_effect.py --out /tmp/cascade_effect [--report-only]
[--extra OVERLAY.yaml ...]; overlays in bench/configs: cascade_guidance.yaml (guidance 10),
cascade_anatomies.yaml (8x the TRAIN videos), cascade_end_diastole.yaml (the ED frame
conditions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overlay_run import fvd_ordering, metric_value, run_workflow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "bench/configs/cascade_effect.yaml"
DATASET = "cascade_1SCM_counterfactual"
TARGETS = [
    "results/metrics/regressor_tiny_dynamic.txt",
    "results/metrics/cascade_1SCM.txt",
    f"results/metrics/{DATASET}.txt",
]
EF_TARGET_R2 = 0.5


def ef_report(out: Path) -> bool:
    regressor = json.loads((out / "results/metrics/regressor_tiny_dynamic.json").read_text())
    test = regressor["reports"]["TEST"]["all_clips"]
    table = json.loads((out / "results/metrics/cascade_1SCM.json").read_text())
    task = table["tasks"]["counterfactual"]
    scores = pd.read_csv(out / f"results/metrics/{DATASET}_scores.csv", dtype={"Source": str})
    stage = out / "results/models/cascade_1SCM/stage_1"
    train = json.loads((stage / "train.json").read_text())
    video = json.loads((stage / "stage.json").read_text())["video"]
    print("\n## Counterfactual EF control (1SCM; regressor trained on real phantom clips)")
    print(
        f"1SCM stage: {train['steps']} steps, {train['n_train']} TRAIN videos, "
        f"{train['clips']['size']} px, {train['clips']['frames']} frames at {train['fps']} fps, "
        f"conditioned on the {video.get('cond_frame', 'window')} frame"
    )
    print(f"{'':44s} {'n':>4s} {'MAE':>7s} {'RMSE':>7s} {'R2':>7s}")
    ceiling = [metric_value(test, key) for key in ("mae", "rmse", "r2")]
    print(f"{'regressor on real TEST videos (ceiling)':44s} {test['n']:4d} "
          f"{ceiling[0]:7.2f} {ceiling[1]:7.2f} {ceiling[2]:7.3f}")  # fmt: skip
    for aggregate, label in (("mean", "generated, mean over draws"),
                             ("best_ef", "generated, best of draws by EF")):  # fmt: skip
        row = task[aggregate]
        print(f"{label:44s} {row['n']:4d} {row['mae']:7.2f} {row['rmse']:7.2f} {row['r2']:7.3f}")
    r_requested = np.corrcoef(scores["EF_gen"], scores["EF"])[0, 1]
    r_source = np.corrcoef(scores["EF_gen"], scores["SourceEF"])[0, 1]
    print(f"Pearson r of regressed EF with requested EF {r_requested:.3f}, with the "
          f"conditioning video's EF {r_source:.3f}; regressed EF mean "
          f"{scores['EF_gen'].mean():.1f}, std {scores['EF_gen'].std():.1f} (requested std "
          f"{scores['EF'].std():.1f})")  # fmt: skip
    print(
        f"FID {task['fid']}, FVD16 {task['fvd16']} (first draws vs their real clips, padded "
        f"to {task['pad_to']}); s/video {task['seconds_per_video']:.2f}"
    )
    met = task["mean"]["r2"] >= EF_TARGET_R2
    print(f"target R2 >= {EF_TARGET_R2} (mean over draws): {'met' if met else 'MISSED'}")
    return met


def fvd_report(out: Path, seed: int) -> bool:
    real = out / "resources/reference_frames/dynamic_16f"
    return fvd_ordering(out, real, DATASET, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true", help="read an existing run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="more config overlays, after the bench's own")  # fmt: skip
    args = parser.parse_args()
    out = args.out.resolve()
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
        wall = run_workflow(out, OVERLAY, TARGETS, tuple(args.extra))
        print(f"workflow wall time {wall / 60:.1f} min on {os.cpu_count()} CPUs")
    results = {"ef": ef_report(out), "fvd": fvd_report(out, args.seed)}
    print("\n" + ", ".join(f"{p}: {'met' if ok else 'MISSED'}" for p, ok in results.items()))


if __name__ == "__main__":
    main()
