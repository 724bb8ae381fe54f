"""Benchmark: data-preparation throughput on a phantom EchoNet-Dynamic of N videos.

Measures, on the same files in the same run:
  1. raw decode rate (frames/s): every video decoded with echogen.data.video.read_video;
  2. ingestion (videos/s): FileList + tracings + header probes (ingest_dynamic);
  3. preprocessing (input frames/s): D'ARTAGNAN clip extraction (decode, resample, save)
     and StyleGAN-V reference frames (decode, resample, jpg), one process;
  4. optical flow (frames/s): Farneback on a subset (it is far slower than decoding);
  5. the dry-run time of config/paper.yaml with this tree as its Dynamic root.

Usage: .venv/bin/python bench/preprocess_throughput.py --videos 1000 --out /tmp/bench
Results are printed as a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import yaml

from echogen.data.clips import extract_dartagnan_clips
from echogen.data.dynamic import ingest_dynamic
from echogen.data.flow import FARNEBACK_PAPER, compute_flow
from echogen.data.frames import extract_reference_frames
from echogen.data.manifest import read_manifest
from echogen.data.video import read_video
from echogen.phantom import write_phantom

REPO = Path(__file__).resolve().parents[1]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main(videos: int, out: Path, flow_videos: int) -> None:
    cv2.setNumThreads(1)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "data" / "EchoNet-Dynamic"
    n_train = int(videos * 0.75)
    n_val = (videos - n_train) // 2
    params = {
        "videos": {"TRAIN": n_train, "VAL": n_val, "TEST": videos - n_train - n_val},
        "frames": [150, 260],  # EchoNet-Dynamic averages ~177 frames at 50 Hz
        "fps": 50,
        "size": 112,
    }
    if not (root / "FileList.csv").exists():
        _, t = timed(write_phantom, "dynamic", root, params, 0)
        print(f"phantom: {videos} videos written in {t:.1f} s", file=sys.stderr)

    manifest_path = out / "manifest.csv"
    manifest, t_ingest = timed(ingest_dynamic, root, manifest_path, out / "quarantine.csv")
    total_frames = int(manifest["NumberOfFrames"].sum())

    def decode_all():
        return sum(len(read_video(p)) for p in manifest["Path"])

    decoded, t_decode = timed(decode_all)
    assert decoded == total_frames, (decoded, total_frames)

    _, t_clips = timed(extract_dartagnan_clips, manifest_path, 0, 1, out / "clips")
    _, t_ref = timed(
        extract_reference_frames, manifest_path, out / "ref128", out / "ref128.csv", frames=128
    )
    flow_manifest = out / "flow_manifest.csv"
    read_manifest(manifest_path).head(flow_videos).to_csv(flow_manifest, index=False)
    flow_frames = int(read_manifest(flow_manifest)["NumberOfFrames"].sum())
    _, t_flow = timed(compute_flow, flow_manifest, 0, 1, out / "flow", FARNEBACK_PAPER, 112)

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["datasets"]["dynamic"]["root"] = str(root)
    for name in ["ped_a4c", "ped_psax", "cardiacnet", "camus", "rvfailure"]:
        (out / "data" / name).mkdir(parents=True, exist_ok=True)
        config["datasets"][name]["root"] = str(out / "data" / name)
    config_path = out / "paper_bench.yaml"
    config_path.write_text(yaml.safe_dump(config))
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "-n",
        "-q",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(config_path),
        "--directory",
        str(out),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    t_dry = time.perf_counter() - start

    rows = [
        (
            "raw decode (read_video, all videos)",
            f"{total_frames / t_decode:,.0f} frames/s",
            t_decode,
        ),
        (
            "ingest_dynamic (FileList, tracings, probes)",
            f"{videos / t_ingest:,.0f} videos/s",
            t_ingest,
        ),
        (
            "extract_dartagnan_clips (1 chunk)",
            f"{total_frames / t_clips:,.0f} input frames/s",
            t_clips,
        ),
        ("extract_reference_frames 128f", f"{total_frames / t_ref:,.0f} input frames/s", t_ref),
        (f"compute_flow ({flow_videos} videos)", f"{flow_frames / t_flow:,.0f} frames/s", t_flow),
        ("dry run of config/paper.yaml", "—", t_dry),
    ]
    print(f"\n{videos} phantom videos, {total_frames:,} frames of 112x112, 1 process\n")
    print("| step | throughput | wall time (s) |\n|---|---|---|")
    for name, rate, seconds in rows:
        print(f"| {name} | {rate} | {seconds:.1f} |")
    print(
        f"\nclips vs decode: {t_clips / t_decode:.2f}x the decode time; "
        f"reference frames vs decode: {t_ref / t_decode:.2f}x"
    )
    pd.DataFrame(rows, columns=["step", "throughput", "seconds"]).to_csv(
        out / "bench.csv", index=False
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--flow-videos", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("/tmp/echogen_bench"))
    args = parser.parse_args()
    main(args.videos, args.out, args.flow_videos)
