"""Rule train_lvdm: train one latent video diffusion model (resumable; state outside the output)."""

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
    model: dict,
    seed: int,
    text_encoder: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "latent_indexes": list(latents),
        "out_dir": model_dir,
        "state_dir": state_dir,
        "model": model,
        "seed": seed,
        "device": device,
        "text_encoder_dir": text_encoder,
    }
    run_distributed("echogen.training.lvdm:train_lvdm_from_config", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(model, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.latents),
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.params.model,
        snakemake.params.seed,
        snakemake.input.get("text_encoder"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
