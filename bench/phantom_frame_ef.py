"""Diagnostic: how much of a phantom video's EF one frame gives away.

EchoDiffusion conditions its cascade on one frame of the training clip. If that frame already
says the EF, the EF embedding is redundant in training and a counterfactual EF has little
effect (docs/benchmarks.md, EchoDiffusion's phantom effect). This fits two regressors from one
random frame (resized to ``--size`` px, grey in [0, 1]) to the video's EF on the TRAIN videos
of a phantom Dynamic that a workflow run made, ``--per-video`` frames each, and scores them on
VAL and TEST (five frames a video): ridge regression on the pixels and gradient-boosted trees
on the pixels. Seeded; CPU; seconds. ``--frame end_diastole`` fits from each video's traced
end-diastolic frame instead (the manifest's EDFrame; what ``cond_frame: end_diastole``
conditions on), one per video.

Usage: .venv/bin/python bench/phantom_frame_ef.py --out /tmp/cascade_effect [--size 24]
[--frame random|end_diastole]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from echogen.data.video import read_video

PHANTOM = "resources/phantom/dynamic"
MANIFEST = "resources/manifests/dynamic.csv"


def frames_and_efs(
    out: Path, split: str, per_video: int, size: int, rng, which: str = "random"
) -> tuple:
    """``per_video`` random frames (or the ED frame) of every ``split`` video, flattened, and
    their EFs."""
    files = pd.read_csv(out / MANIFEST, dtype={"FileName": str})
    x, y = [], []
    for row in files[files["Split"] == split].itertuples():
        video = read_video(out / PHANTOM / "Videos" / f"{row.FileName}.avi")
        chosen = rng.integers(0, len(video), per_video)
        if which == "end_diastole":
            chosen = [int(row.EDFrame)]
        for t in chosen:
            frame = cv2.resize(video[t], (size, size), interpolation=cv2.INTER_AREA)
            x.append(frame.ravel() / 255.0)
            y.append(row.EF)
    return np.array(x), np.array(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a workflow run's folder")
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--per-video", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame", choices=["random", "end_diastole"], default="random")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    train = frames_and_efs(args.out, "TRAIN", args.per_video, args.size, rng, args.frame)
    held = {s: frames_and_efs(args.out, s, 5, args.size, rng, args.frame)
            for s in ("VAL", "TEST")}  # fmt: skip
    models = {
        "ridge on pixels": RidgeCV(alphas=np.logspace(-2, 4, 13)),
        "gradient-boosted trees on pixels": HistGradientBoostingRegressor(
            max_iter=300, random_state=args.seed
        ),
    }
    print(f"one {args.frame} frame at {args.size} px -> EF; {len(train[1])} TRAIN frames")
    for name, model in models.items():
        model.fit(*train)
        scores = ", ".join(f"{s} R2 {r2_score(y, model.predict(x)):.3f} (n {len(y)})"
                           for s, (x, y) in held.items())  # fmt: skip
        print(f"{name:34s} {scores}")


if __name__ == "__main__":
    main()
