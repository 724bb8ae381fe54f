"""Benchmark: where the demo's generated videos sit between real-vs-real and noise.

Reads a finished demo run (`snakemake --profile profiles/ci all` in DEMO) and prints, with the
demo's tiny detectors (plumbing-check networks, so only the ordering means anything):
- FID and FVD16 of the lvdm_dynamic samples vs the real reference set (from its table);
- the same metrics for two disjoint halves of the real reference videos (real vs real);
- the same metrics for uniform-noise videos of the samples' shape vs the real set;
- the EF fidelity (regressed vs requested EF: MAE, R²) of the lvdm_dynamic samples.

Usage: .venv/bin/python bench/lvdm_demo_fidelity.py --demo /tmp/demo [--seed 42]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from echogen.data.frames import write_frames
from echogen.metrics.frame_folders import list_frames, list_videos
from echogen.metrics.generation import evaluate_generation

METRICS = ["fid50k_full", "fvd2048_16f"]


def link_videos(videos: list[Path], out: Path) -> Path:
    out.mkdir(parents=True)
    for video in videos:
        (out / video.name).symlink_to(video.resolve(), target_is_directory=True)
    return out


def distance_rows(demo: Path, real: Path, sample: str, seed: int) -> dict[str, dict[str, float]]:
    """FID and FVD16 of real half vs real half, the samples, and noise, each vs ``real``.

    Args:
        demo: a finished run's working directory (its tiny detectors and metric tables).
        real: the real frame folder of the samples' table.
        sample: the synthetic dataset id (``results/samples/<sample>/frames``,
            ``results/metrics/<sample>.json``).
        seed: seed of the metrics and of the noise videos.
    """
    detectors = {
        name: {"path": str(demo / f"resources/weights/tiny/{name}.pt"), "sha256": None}
        for name in ("inception", "i3d")
    }
    fake = demo / f"results/samples/{sample}/frames"
    table = json.loads((demo / f"results/metrics/{sample}.json").read_text())
    rows = {}
    videos = list_videos(real)
    fakes = list_videos(fake)
    n_frames = len(list_frames(fakes[0]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        half = len(videos) // 2
        first = link_videos(videos[:half], tmp / "first")
        second = link_videos(videos[half:], tmp / "second")
        record = evaluate_generation(first, second, METRICS, detectors, None, seed)
        rows["real half vs real half"] = record["metrics"]
        rows["generated vs real"] = {m: table["metrics"][m] for m in METRICS}
        rng = np.random.default_rng(seed)
        for i in range(len(fakes)):
            noise = rng.integers(0, 256, (n_frames, 112, 112), dtype=np.uint8)
            write_frames(noise, tmp / "noise" / f"noise_{i:03d}")
        record = evaluate_generation(real, tmp / "noise", METRICS, detectors, None, seed)
        rows["uniform noise vs real"] = record["metrics"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    demo = args.demo
    rows = distance_rows(
        demo, demo / "resources/reference_frames/dynamic_128f", "lvdm_dynamic", args.seed
    )
    print(f"{'comparison':26s} {'FID':>10s} {'FVD16':>10s}")
    for name, values in rows.items():
        print(f"{name:26s} {values['fid50k_full']:10.4f} {values['fvd2048_16f']:10.4f}")
    fidelity = json.loads((demo / "results/metrics/ef_fidelity_lvdm_dynamic.json").read_text())
    metrics = fidelity["metrics"]
    print(
        f"EF fidelity of lvdm_dynamic ({fidelity['n']} videos): "
        f"MAE {metrics['mae']['value']:.2f}, R2 {metrics['r2']['value']:.3f}"
    )


if __name__ == "__main__":
    main()
