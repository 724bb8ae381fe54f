"""Rule train_privacy: one dataset's Siamese re-identification network of the privacy filter."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    latents: list[str],
    model_dir: str,
    state_dir: str,
    privacy: dict,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
    imagenet: str | None = None,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "latent_indexes": list(latents),
        "out_dir": model_dir,
        "state_dir": state_dir,
        "preset": privacy["preset"],
        "overrides": privacy.get("model") or {},
        "train": privacy.get("train") or {},
        "seed": seed,
        "device": device,
        "imagenet": imagenet,
    }
    run_distributed("echogen.training.privacy:train_privacy", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(privacy, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.latents),
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.params.privacy,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
        snakemake.input.get("imagenet"),
    )
