"""Benchmark: paper-sized LVDM training step, windowed sampling and VAE decoding (random weights).

Measures, on one device, with the published sizes (PAPERS.md section 4):
- one optimisation step of the paper UNet (EF conditioning, batch x 64 frames of 4x16x16
  latents, v-prediction MSE, AdamW) in fp32 and bf16 autocast: seconds/step, samples/s,
  peak memory;
- sampling one 64-frame video and one 192-frame video (64-frame windows, 32 overlap,
  stitched at every step) with `echogen.models.lvdm_pipeline.LVDMPipeline`, DDPM 64 steps;
- decoding 192 frames with the paper VAE.
Weights are random: these are speed and memory numbers only.

Usage: python bench/lvdm_gpu.py --device cuda [--batch 16] [--out bench.json]
       python bench/lvdm_gpu.py --device cpu --tiny   (a CPU smoke run of the same code)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from echogen.models.lvdm import (
    LVDM,
    Conditioner,
    LVDMSpec,
    added_time_ids,
    build_scheduler,
    build_unet,
    unet_input,
)
from echogen.models.lvdm_pipeline import LVDMPipeline
from echogen.models.vae import build_vae, decode_latents

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_timing import peak_gib, reset_peak, sync  # noqa: E402


def train_step_time(unet, spec, batch, device, dtype, steps) -> dict:
    """Seconds per optimisation step (after one warm-up step) and peak memory."""
    scheduler = build_scheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    conditioner = Conditioner(spec)
    frames, channels, size = spec.frames, spec.latent_channels, spec.pad_to
    reset_peak(device)
    times = []
    for step in range(steps + 1):
        latents = torch.randn(batch, frames, channels, size, size, device=device)
        cond = torch.randn(batch, channels, size, size, device=device)
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = scheduler.add_noise(latents, noise, t)
        target = scheduler.get_velocity(latents, noise, t)
        tokens = conditioner.encode([55.0] * batch, device)
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            out = unet(
                unet_input(noisy, cond),
                t,
                encoder_hidden_states=tokens,
                added_time_ids=added_time_ids(spec.fps, batch, device),
            ).sample
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step:  # step 0 warms up kernels and allocator
            times.append(time.perf_counter() - start)
    per_step = sum(times) / len(times)
    return {
        "s_per_step": per_step,
        "samples_per_s": batch / per_step,
        "peak_gib": peak_gib(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--sample-steps", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="tiny presets (CPU smoke run)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = args.device
    torch.manual_seed(0)
    preset = "tiny" if args.tiny else "paper"
    window = 16 if args.tiny else 64
    spec = LVDMSpec(conditioning="ef", frames=window, fps=32.0, latent_size=14, pad_to=16)
    unet = build_unet(preset, "ef").to(device)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "preset": preset,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "torch": torch.__version__,
    }
    unet.train()
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if device == "cpu" and name == "bf16":
            continue
        timing = train_step_time(unet, spec, args.batch, device, dtype, args.train_steps)
        result[f"train_{name}_batch{args.batch}x{window}"] = timing
        print(name, timing, flush=True)

    unet.eval()
    vae = build_vae(preset).to(device).eval()
    lvdm = LVDM(unet, spec, dict(build_scheduler().config), Conditioner(spec))
    pipe = LVDMPipeline.from_parts(lvdm, vae, "ddpm")
    pipe.set_progress_bar_config(disable=True)
    cond = torch.randn(spec.latent_channels, 14, 14)
    for frames in (window, 3 * window):
        kw = dict(
            frames=frames,
            window=window,
            overlap=window // 2,
            num_inference_steps=args.sample_steps,
            output_type="latent",
        )
        pipe(cond, 55.0, generator=torch.Generator().manual_seed(0), **kw)  # warm-up
        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        latents = pipe(cond, 55.0, generator=torch.Generator().manual_seed(1), **kw).latents
        sync(device)
        key = f"sample_{frames}f_ddpm{args.sample_steps}"
        result[key] = {"s_per_video": time.perf_counter() - start, "peak_gib": peak_gib(device)}
        print(key, result[key], flush=True)

    decode_latents(vae, latents[:8].to(device))  # warm-up
    sync(device)
    start = time.perf_counter()
    frames = decode_latents(vae, latents.to(device))
    sync(device)
    result[f"vae_decode_{len(frames)}f"] = {"s": time.perf_counter() - start}
    print("decode", result[f"vae_decode_{len(frames)}f"], flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
