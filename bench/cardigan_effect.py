"""Benchmark: cardiGAN's effect on the phantom (issue 18, item 6).

Runs the workflow on CPU with the demo config plus the overlay
`bench/configs/cardigan_effect.yaml`: a larger CAMUS phantom, a small SPADE at 64 px trained
for about 15 minutes on 2 cores, its images of every TEST mask and of every TRAIN mask, and
small U-Nets trained on real, synthetic and real + synthetic images. Then it prints what the
issue asks, measured:

- mask fidelity: the real-trained U-Net segments SPADE's images of the TEST masks; its mean
  Dice over the three structures against the input masks, target >= 0.7; beside it the same
  U-Net on the real images of those masks (its ceiling);
- the segmentation experiment: Dice on real TEST images of U-Nets trained on real,
  synthetic and both (cardiGAN found no gain from synthetic images);
- SSIM to the real image of each mask; FID (tiny random detector: plumbing).

Usage: .venv/bin/python bench/cardigan_effect.py --out /tmp/cardigan_effect [--report-only]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overlay_run import bench_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "bench/configs/cardigan_effect.yaml"
MODEL = "tiny"
TARGETS = ["results/metrics/cardigan.txt", "results/metrics/cardigan_segmentation.txt"]
DICE_TARGET = 0.7


def report(out: Path) -> dict[str, bool]:
    table = json.loads((out / "results/metrics/cardigan.json").read_text())["models"][MODEL]
    experiment = json.loads((out / "results/metrics/cardigan_segmentation.json").read_text())
    train = json.loads((out / f"results/models/cardigan_{MODEL}/train.json").read_text())
    log = pd.read_csv(out / f"results/models/cardigan_{MODEL}/log.csv")
    bench = {p.parent.name + "/" + p.stem: pd.read_csv(p, sep="\t")["s"].iloc[0]
             for p in (out / "benchmarks").glob("*cardigan*/*.tsv")}  # fmt: skip
    setting = train["train"]
    print(f"\n## SPADE: {train['steps']} steps ({log['epoch'].max() + 1} epochs) on "
          f"{train['n_train']} train pairs at {setting['size']} px, batch {setting['batch_size']}; "
          f"last epoch g_gan {log['g_gan'].iloc[-1]:.3f}, g_feat {log['g_feat'].iloc[-1]:.3f}, "
          f"g_vgg {log['g_vgg'].iloc[-1]:.3f}, d_fake {log['d_fake'].iloc[-1]:.3f}, d_real "
          f"{log['d_real'].iloc[-1]:.3f}, val_l1 {log['val_l1'].iloc[-1]:.3f}")  # fmt: skip
    for job, seconds in sorted(bench.items()):
        print(f"  {job:48s} {seconds / 60:6.1f} min")
    names = table["dice"]
    print(f"\n## Mask fidelity on {table['n']} TEST masks (real-trained U-Net)")
    print(f"{'':28s} " + " ".join(f"{n:>12s}" for n in names) + f" {'mean':>8s}")
    fake_mean = sum(table["dice"].values()) / len(names)
    real_mean = sum(table["dice_real"].values()) / len(names)
    for label, dice, mean in (("generated image", table["dice"], fake_mean),
                              ("real image (ceiling)", table["dice_real"], real_mean)):  # fmt: skip
        print(f"{label:28s} " + " ".join(f"{dice[n]:12.3f}" for n in names) + f" {mean:8.3f}")
    print(f"SSIM to the real image {table['ssim']:.3f}; LPIPS {table['lpips']} and FID "
          f"{table['fid']} (random trunk and tiny random detector: plumbing)")  # fmt: skip
    print("\n## Segmentation experiment: Dice on real TEST images")
    for run, row in experiment["runs"].items():
        cells = " ".join(f"{row[n]['mean']:.3f} [{row[n]['low']:.3f}, {row[n]['high']:.3f}]"
                         for n in experiment["structures"])  # fmt: skip
        print(f"{run:10s} n={row['n']:3d} {cells}  mean {row['mean']:.3f}")
    met = fake_mean >= DICE_TARGET
    print(f"target mask-fidelity mean Dice >= {DICE_TARGET}: {'met' if met else 'MISSED'}")
    return {"mask_fidelity": met}


if __name__ == "__main__":
    bench_main(__doc__, OVERLAY, TARGETS, report)
