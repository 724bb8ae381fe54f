"""Benchmark: what fewer DDIM / DPM-Solver++ steps cost in FID/FVD16 against DDPM 64 steps.

PLUMBING CHECK. The demo's LVDM and VAE are trained for a few dozen steps and its
Inception / I3D detectors are tiny random-weight stand-ins (``resources/weights/tiny``), so
no number here is an FID or FVD of any published sense: only orderings and relative changes
between the settings of one run can mean anything, and with a handful of videos even those
are noisy. The paper config keeps the published samplers; this bench only measures what the
faster ones change (issue 14 item 6: fewer steps as an option, never silently).

From a finished demo run (``snakemake --profile profiles/ci all`` in DEMO) it samples the
``lvdm_<sample>`` synthetic set again with the demo's own LVDM, VAE and conditioning frames
(read from that set's ``sampling.json``: model folders, conditioning list, run seed, window,
overlap) under each ``scheduler:steps`` setting, through the workflow's own sampler
(:func:`echogen.pipelines.sampling.sample_shard`). Every setting uses the same run seed, so
the plan (requested EF, conditioning image) and each video's initial noise are identical and
only the sampler differs. For each setting it reports:

- seconds per video (generation, VAE decoding and writing; model loading excluded: the
  ``timing`` of the shard's ``sampling.json``);
- FID and FVD16 against the real reference frames of the demo's table (``lvdm.samples.
  <sample>.real`` in config/config.yaml, e.g. ``resources/reference_frames/dynamic_128f``);
- FID and FVD16 against the set of the first (reference) setting, by default DDPM 64 steps,
  the published EchoNet-Synthetic sampler: the change the faster sampler itself causes. FVD16
  against the reference compares the same clip of both sets (the reference side is cut to
  its first 16 frames, as the fake side is), FID compares every frame. The reference row's
  own value is the metric of a set against itself (about 0: a sanity check);
- the mean absolute grey-level difference (0-255) from the reference set, frame by frame
  of the same video: a detector-free size of the change, to read the tiny detectors'
  FID/FVD against.

Usage:
  PYTHONPATH=. .venv/bin/python bench/lvdm_fewer_steps.py --demo /tmp/demo \\
      [--settings ddpm:64 ddim:16 dpm:16 ddim:4 dpm:8] [--frames 32] [--n-samples 8] \\
      [--work /tmp/fewer_steps] [--out /tmp/fewer_steps/fewer_steps.json]
Sampled sets are kept under ``--work/<scheduler>_<steps>/`` and reused when their
``sampling.json`` records the same config, seed and inputs (``--resample`` redoes them). The
JSON is rewritten after every setting, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from echogen.metrics.frame_folders import list_frames, list_videos
from echogen.metrics.generation import evaluate_generation
from echogen.pipelines.sampling import SCHEDULERS, SampleConfig, sample_shard

METRICS = ["fid50k_full", "fvd2048_16f"]
FVD_FRAMES = 16
CONFIG = Path(__file__).resolve().parents[1] / "config/config.yaml"
DEFAULT_SETTINGS = ["ddpm:64", "ddim:16", "dpm:16", "ddim:4", "dpm:8"]
LABEL = (
    "PLUMBING CHECK: the demo's briefly trained LVDM/VAE and tiny random-weight detectors; "
    "only orderings and relative changes between settings can mean anything"
)


def parse_setting(text: str) -> tuple[str, int]:
    """``"dpm:16"`` -> ``("dpm", 16)``."""
    name, sep, steps = text.partition(":")
    if not sep or name not in SCHEDULERS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(
            f"a setting is scheduler:steps with scheduler in {SCHEDULERS} and steps >= 1, "
            f"got {text!r}"
        )
    return name, int(steps)


def detectors_of(demo: Path) -> dict[str, dict]:
    """The demo's tiny detectors (as bench/lvdm_demo_fidelity.py reads them)."""
    return {
        name: {"path": str(demo / f"resources/weights/tiny/{name}.pt"), "sha256": None}
        for name in ("inception", "i3d")
    }


def demo_inputs(demo: Path, sample: str) -> dict:
    """What the demo sampled ``lvdm_<sample>`` with: its ``sampling.json`` record, the
    real reference folder of its table and the conditioning image set's folder."""
    record = json.loads((demo / f"results/samples/lvdm_{sample}/sampling.json").read_text())
    entry = yaml.safe_load(CONFIG.read_text())["lvdm"]["samples"][sample]
    cond_index = Path(record["cond_index"])
    images_dir = None
    if record["conditioning"]["frames"] == "synthetic":
        # rules/lvdm_helpers.smk: the list is results/{privacy,samples}/lidm_<name>/FileList.csv,
        # the latents results/samples/lidm_<name>/latents (workflow_scripts/sample_lvdm.py).
        images_dir = demo / "results/samples" / cond_index.parent.name
    return {
        "record": record,
        "lvdm_dir": demo / record["lvdm_dir"],
        "vae_dir": demo / record["vae_dir"],
        "cond_index": demo / cond_index,
        "images_dir": images_dir,
        "real": demo / entry["real"],
        "seed": int(record["seed"]),
    }


def sample_setting(inputs: dict, config: SampleConfig, out_dir: Path, resample: bool) -> dict:
    """Sample (or reuse) one setting's set; its ``sampling.json`` plus ``reused``."""
    provenance = out_dir / "sampling.json"
    if not resample and provenance.is_file():
        done = json.loads(provenance.read_text())
        if (
            done.get("config") == config.to_dict()
            and done.get("seed") == inputs["seed"]
            and done.get("lvdm_dir") == str(inputs["lvdm_dir"])
            and done.get("cond_index") == str(inputs["cond_index"])
        ):
            return {**done, "reused": True}
    sample_shard(
        inputs["lvdm_dir"],
        inputs["vae_dir"],
        inputs["cond_index"],
        out_dir,
        config,
        inputs["seed"],
        1,
        1,
        "cpu",
        images_dir=inputs["images_dir"],
    )
    return {**json.loads(provenance.read_text()), "reused": False}


def first_frames(frames_dir: Path, out: Path, n: int) -> Path:
    """A frame folder of symlinks to the first ``n`` frames of every video of ``frames_dir``
    (so FVD's random real window is the clip the fake side is cut to)."""
    for video in list_videos(frames_dir):
        (out / video.name).mkdir(parents=True, exist_ok=True)
        for frame in list_frames(video)[:n]:
            link = out / video.name / frame.name
            if not link.exists():
                link.symlink_to(frame.resolve())
    return out


def distances(
    real: Path, fake: Path, fvd_real: Path, detectors: dict, cache: Path, seed: int
) -> dict[str, float]:
    """FID of ``fake`` vs ``real`` and FVD16 of ``fake`` vs ``fvd_real``."""
    fid = evaluate_generation(real, fake, [METRICS[0]], detectors, str(cache), seed)
    fvd = evaluate_generation(fvd_real, fake, [METRICS[1]], detectors, str(cache), seed)
    return {"fid": fid["metrics"][METRICS[0]], "fvd16": fvd["metrics"][METRICS[1]]}


def pixel_mae(reference: Path, fake: Path) -> float:
    """Mean absolute grey-level difference (0-255) of every frame of ``fake`` and the frame of
    the same video and index in ``reference``: a detector-free measure of the change."""
    total, count = 0.0, 0
    for ref_video, video in zip(list_videos(reference), list_videos(fake), strict=True):
        for ref_frame, frame in zip(list_frames(ref_video), list_frames(video), strict=True):
            a = np.asarray(Image.open(ref_frame).convert("L"), dtype=np.float64)
            b = np.asarray(Image.open(frame).convert("L"), dtype=np.float64)
            total += float(np.abs(a - b).sum())
            count += a.size
    return total / count


def markdown(result: dict) -> str:
    ref = result["reference"]
    lines = [
        f"| sampler | steps | s/video | FID vs real | FVD16 vs real | FID vs {ref} "
        f"| FVD16 vs {ref} | pixel MAE vs {ref} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['scheduler']} | {row['steps']} | {row['seconds_per_video']:.2f} "
            f"| {row['vs_real']['fid']:.4f} | {row['vs_real']['fvd16']:.4f} "
            f"| {row['vs_reference']['fid']:.4f} | {row['vs_reference']['fvd16']:.4f} "
            f"| {row['vs_reference']['pixel_mae']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True)
    parser.add_argument("--sample", default="dynamic", help="lvdm.samples key (lvdm_<sample>)")
    parser.add_argument(
        "--settings",
        nargs="+",
        type=parse_setting,
        default=[parse_setting(s) for s in DEFAULT_SETTINGS],
        help="scheduler:steps, the first is the reference (default: %(default)s)",
    )
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--metric-seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fewer_steps"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resample", action="store_true")
    args = parser.parse_args()
    if args.frames < FVD_FRAMES:
        parser.error(f"--frames must be >= {FVD_FRAMES} for FVD16")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    demo = args.demo.resolve()
    out = args.out or args.work / "fewer_steps.json"
    inputs = demo_inputs(demo, args.sample)
    base = {
        k: v
        for k, v in inputs["record"]["config"].items()
        if k in SampleConfig.__dataclass_fields__
    }
    detectors = detectors_of(demo)
    cache = args.work / "metric_cache"
    ref_name = "{}:{}".format(*args.settings[0])
    result = {
        "label": LABEL,
        "demo": str(demo),
        "sample": f"lvdm_{args.sample}",
        "real": str(inputs["real"]),
        "reference": ref_name,
        "run_seed": inputs["seed"],
        "metric_seed": args.metric_seed,
        "n_samples": args.n_samples,
        "frames": args.frames,
        "window": base["window"],
        "overlap": base["overlap"],
        "threads": args.threads,
        "detectors": detectors,
        "rows": [],
    }
    print(LABEL)
    print(
        f"lvdm_{args.sample} of {demo}: {args.n_samples} videos x {args.frames} frames "
        f"(window {base['window']}, overlap {base['overlap']}), run seed {inputs['seed']}, "
        f"reference {ref_name}",
        flush=True,
    )
    started = time.perf_counter()
    ref_frames = ref_clips = None
    for scheduler, steps in args.settings:
        config = SampleConfig(
            **{
                **base,
                "n_samples": args.n_samples,
                "frames": args.frames,
                "scheduler": scheduler,
                "steps": steps,
            }
        )
        set_dir = args.work / f"{scheduler}_{steps}"
        done = sample_setting(inputs, config, set_dir, args.resample)
        seconds = done["timing"]["seconds"] / done["timing"]["videos"]
        print(
            f"{scheduler}:{steps}: {seconds:.2f} s/video "
            f"({done['timing']['videos']} videos{', reused' if done['reused'] else ''})",
            flush=True,
        )
        frames = set_dir / "frames"
        if ref_frames is None:
            ref_frames = frames
            ref_clips = first_frames(frames, args.work / "reference_first16", FVD_FRAMES)
        row = {
            "scheduler": scheduler,
            "steps": steps,
            "seconds_per_video": seconds,
            "reused": done["reused"],
            "frames_dir": str(frames),
            "vs_real": distances(
                inputs["real"], frames, inputs["real"], detectors, cache, args.metric_seed
            ),
            "vs_reference": {
                **distances(ref_frames, frames, ref_clips, detectors, cache, args.metric_seed),
                "pixel_mae": pixel_mae(ref_frames, frames),
            },
        }
        result["rows"].append(row)
        result["wall_seconds"] = time.perf_counter() - started
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"  vs real FID {row['vs_real']['fid']:.4f} FVD16 {row['vs_real']['fvd16']:.4f}; "
            f"vs {ref_name} FID {row['vs_reference']['fid']:.4f} "
            f"FVD16 {row['vs_reference']['fvd16']:.4f} "
            f"pixel MAE {row['vs_reference']['pixel_mae']:.2f}",
            flush=True,
        )
    print()
    print(markdown(result))
    print(f"\nwall time {result['wall_seconds']:.0f} s; {LABEL}. JSON: {out}")


if __name__ == "__main__":
    main()
