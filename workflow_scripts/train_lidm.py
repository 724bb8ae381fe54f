"""Rule train_lidm: train one latent image diffusion model (resumable; state outside the output)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake

# Keys of a lvdm.lidms entry that belong to the workflow, not to the trainer.
WORKFLOW_KEYS = ("dataset", "sampling", "real", "metrics")


def main(
    latents: list[str],
    model_dir: str,
    state_dir: str,
    model: dict,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "latent_indexes": list(latents),
        "out_dir": model_dir,
        "state_dir": state_dir,
        "model": {k: v for k, v in model.items() if k not in WORKFLOW_KEYS},
        "seed": seed,
        "device": device,
    }
    run_distributed("echogen.training.lidm:train_lidm_from_config", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(model, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.latents),
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.params.model,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
