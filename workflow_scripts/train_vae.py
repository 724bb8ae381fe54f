"""Rule train_vae: train the image VAE from a preset (resumable; state outside the output)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifests: list[str],
    model_dir: str,
    state_dir: str,
    vae: dict,
    size: int,
    fps: float,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "manifests": list(manifests),
        "out_dir": model_dir,
        "state_dir": state_dir,
        "preset": vae["preset"],
        "overrides": vae.get("model") or {},
        "train_preset": vae["train_preset"],
        "train_overrides": {"size": size, "fps": fps, **(vae.get("train") or {})},
        "seed": seed,
        "device": device,
    }
    run_distributed("echogen.training.vae:train_vae_from_presets", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(vae, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.manifests),
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.params.vae,
        snakemake.params.size,
        snakemake.params.fps,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
