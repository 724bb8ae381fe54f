"""Benchmark: LVDM sampling speed by block size K, precision and CUDA graphs (random weights).

Samples K videos per call with `echogen.models.lvdm_pipeline.LVDMPipeline` (the shared
sampler of `lvdm` datasets: windows of 64 frames, overlap 32, stitched at every step; EF
conditioning, guidance 1 as EchoNet-Synthetic) for every K x precision x mode x video length
asked for. Each configuration is warmed up with a one-step call (which also records its CUDA
graph), then timed over `--timed-steps` DDPM steps; a DDPM step costs the same wherever it
falls in the schedule, so seconds per video at `--steps` steps is
`steps * (seconds per step) / K`, plus the VAE decoding of one video, timed apart. Modes:
`eager`, `graphs` (the sampler's `graphs`: CUDA-graph replay) and `compile` (its `compile`:
torch.compile, inductor, static shapes; the warm-up, whose seconds are recorded as
`warmup_s`, compiles each new shape).
Weights are random: these are speed and memory numbers only.

Usage:
  python bench/lvdm_sampling.py --device cuda --out sampling.json          (paper preset)
  python bench/lvdm_sampling.py --device cpu --tiny --blocks 1 8 --modes eager \\
      --precisions fp32 --frames 16 48                                     (CPU, tiny preset)
The JSON is rewritten after every configuration, so a run cut short keeps what it measured;
`--budget-s` stops starting new configurations after that many seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from echogen.models.lvdm import LVDM, Conditioner, LVDMSpec, build_scheduler, build_unet
from echogen.models.lvdm_pipeline import LVDMPipeline
from echogen.models.vae import build_vae, decode_latents

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_timing import peak_gib, reset_peak, sync  # noqa: E402


def sample(pipe, device, k, frames, window, steps, precision, mode, seed=0) -> float:
    """Seconds for one call of ``steps`` DDPM steps on a block of ``k`` videos."""
    conds = torch.randn(k, 4, 14, 14, generator=torch.Generator().manual_seed(seed))
    gens = [torch.Generator(device=device).manual_seed(seed * 1000 + i) for i in range(k)]
    sync(device)
    start = time.perf_counter()
    pipe(
        conds,
        [55.0] * k,
        frames=frames,
        window=window,
        overlap=window // 2,
        num_inference_steps=steps,
        generator=gens,
        output_type="latent",
        precision=precision,
        graphs=mode == "graphs",
        compile=mode == "compile",
    )
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny presets (CPU runs)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    parser.add_argument(
        "--modes", nargs="+", default=["eager", "graphs"], choices=["eager", "graphs", "compile"]
    )
    parser.add_argument("--frames", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=64, help="steps of the reported videos")
    parser.add_argument("--timed-steps", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=float("inf"))
    parser.add_argument(
        "--unet-dtype",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the UNet's weights (bf16: the whole UNet in bf16, no autocast casts)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device, began = args.device, time.perf_counter()
    preset = "tiny" if args.tiny else "paper"
    window = 16 if args.tiny else 64
    frames_list = args.frames or [window, 3 * window]
    torch.manual_seed(0)
    spec = LVDMSpec(conditioning="ef", frames=window, fps=32.0, latent_size=14, pad_to=16)
    unet = build_unet(preset, "ef").to(device).eval()
    if args.unet_dtype == "bf16":
        unet = unet.to(torch.bfloat16)
    vae = build_vae(preset).to(device).eval()
    pipe = LVDMPipeline.from_parts(
        LVDM(unet, spec, dict(build_scheduler().config), Conditioner(spec)), vae, "ddpm"
    )
    pipe.set_progress_bar_config(disable=True)
    result = {
        "command": "python bench/lvdm_sampling.py " + " ".join(_argv()),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "preset": preset,
        "unet_dtype": args.unet_dtype,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "steps": args.steps,
        "timed_steps": args.timed_steps,
        "runs": [],
    }

    for frames in frames_list:
        z = torch.randn(frames, 4, 14, 14)
        decode_latents(vae, z[:2])  # warm-up
        sync(device)
        start = time.perf_counter()
        decode_latents(vae, z)
        sync(device)
        result[f"decode_{frames}f_s"] = time.perf_counter() - start
    if args.out:  # a run cut inside its first configuration still leaves its header
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    for precision in args.precisions:
        for mode in args.modes:
            for frames in frames_list:
                for k in args.blocks:
                    run = {"frames": frames, "block": k, "precision": precision, "mode": mode}
                    if time.perf_counter() - began > args.budget_s:
                        run["skipped"] = "time budget"
                    else:
                        run.update(_measure(pipe, device, args, k, frames, window, precision, mode))
                        run["s_per_video"] = (
                            run["s_per_step"] * args.steps / k + result[f"decode_{frames}f_s"]
                            if "s_per_step" in run
                            else None
                        )
                    result["runs"].append(run)
                    print(json.dumps(run), flush=True)
                    if args.out:
                        with open(args.out, "w") as handle:
                            json.dump(result, handle, indent=2)
    result["wall_s"] = time.perf_counter() - began
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


def _measure(pipe, device, args, k, frames, window, precision, mode) -> dict:
    try:
        reset_peak(device)
        began = time.perf_counter()
        sample(pipe, device, k, frames, window, 1, precision, mode)  # warm-up: record, compile
        warmup = time.perf_counter() - began
        seconds = sample(pipe, device, k, frames, window, args.timed_steps, precision, mode, 1)
    except torch.cuda.OutOfMemoryError as error:
        reset_peak(device)
        return {"error": f"out of memory: {str(error).splitlines()[0]}"}
    return {
        "s_per_step": seconds / args.timed_steps,
        "videos_per_s": k / (seconds / args.timed_steps * args.steps),
        "peak_gib": peak_gib(device),
        "warmup_s": warmup,
    }


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
