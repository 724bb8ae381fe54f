"""Benchmark: seconds to sample one video with EchoDiffusion's cascades (random weights).

Builds a cascade from its preset (``echogen.models.cascade.cascade_preset``: ``paper`` is the
published 1SCM / 2SCM / 4SCM config, ``tiny`` the demo's) and times
``ElucidatedImagen.sample`` for one batch of conditioning frames and EFs, guidance 5, through
``echogen.pipelines.cascade_sampling.sample_cascade`` (the workflow's call; ``--precision``
and ``--graphs`` are its ``precision`` and ``graphs``). ``--steps N`` replaces every stage's
sampling steps (the published counts are 64 for 1SCM, 32 + 64 for 2SCM, 32 + 32 + 32 + 64
for 4SCM): a CPU can then time a paper-sized cascade in minutes; the record says which
counts ran. ``--step-fraction F`` runs every stage at ``round(F x`` its published count``)``
steps instead, so the stages keep their published proportions, and records
``seconds_per_video / F`` as the estimate at the published counts (a stage's steps cost about
the same each; EDM's last step is a first-order one). Weights are random: these are speed and
memory numbers only.

Usage: python bench/cascade_sampling.py --structure 1SCM --preset paper --device cuda
       python bench/cascade_sampling.py --structure 4SCM --preset paper --device cuda \
           --step-fraction 0.125
       python bench/cascade_sampling.py --structure 4SCM --preset paper --steps 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from echogen.models.cascade import build_cascade, cascade_preset, output_size
from echogen.pipelines.cascade_sampling import sample_cascade

# EchoDiffusion's README: seconds per video on an A100 at the published step counts.
PAPER_SECONDS = {"1SCM": 62, "2SCM": 146, "4SCM": 279}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structure", choices=sorted(PAPER_SECONDS), default="1SCM")
    parser.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1, help="videos per sample call")
    parser.add_argument("--steps", type=int, default=None, help="steps of every stage")
    parser.add_argument(
        "--step-fraction", type=float, default=None, help="every stage at this share of its steps"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="UNet autocast"
    )
    parser.add_argument(
        "--graphs", action="store_true", help="CUDA-graph replay of the UNets (sampler's graphs)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the record as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = cascade_preset(args.structure, args.preset)
    imagen = dict(preset["imagen"])
    steps = imagen["num_sample_steps"]
    if args.steps is not None and args.step_fraction is not None:
        parser.error("--steps and --step-fraction exclude each other")
    if args.steps is not None:
        steps = [args.steps] * len(steps) if isinstance(steps, list) else args.steps
        imagen["num_sample_steps"] = steps
    if args.step_fraction is not None:
        if not 0 < args.step_fraction <= 1:
            parser.error("--step-fraction must be in (0, 1]")
        share = [max(1, round(n * args.step_fraction)) for n in _as_list(steps)]
        steps = share if isinstance(steps, list) else share[0]
        imagen["num_sample_steps"] = steps
    torch.manual_seed(0)
    model = build_cascade(preset["unets"], imagen).to(args.device).eval()
    frames = int(preset["fps"] * preset["duration"])
    size = output_size(imagen)
    ef = torch.full((args.batch, 1, 1), 0.5, device=args.device)
    cond = torch.rand(args.batch, 3, size, size, device=args.device)

    def sample() -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        sample_cascade(model, ef, cond, frames, 5.0, args.precision, args.graphs)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    if args.device.startswith("cuda"):
        sample()  # warm-up (kernels, allocator)
        torch.cuda.reset_peak_memory_stats()
    seconds = [sample() for _ in range(args.repeats)]
    per_video = min(seconds) / args.batch
    record = {
        "structure": args.structure,
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "precision": args.precision,
        "graphs": args.graphs,
        "frames": frames,
        "size": size,
        "sample_steps": steps,
        "published_steps": preset["imagen"]["num_sample_steps"],
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "seconds": seconds,
        "seconds_per_video": per_video,
        "step_fraction": args.step_fraction,
        "seconds_per_video_at_published_steps": per_video / args.step_fraction
        if args.step_fraction
        else None,
        "paper_a100_seconds_per_video": PAPER_SECONDS[args.structure],
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30
        if args.device.startswith("cuda")
        else None,
        # CUDA graphs keep private memory pools, counted as reserved, not allocated
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30
        if args.device.startswith("cuda")
        else None,
    }
    print(json.dumps(record, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=2)


def _as_list(steps) -> list[int]:
    return list(steps) if isinstance(steps, list) else [steps]


if __name__ == "__main__":
    main()
