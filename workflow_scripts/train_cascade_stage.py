"""Rule train_cascade_stage: train one stage of a cascade (resumable; state outside the output)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifest: str,
    stage_dir: str,
    state_dir: str,
    model: dict,
    stage: int,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "manifest": manifest,
        "out_dir": stage_dir,
        "state_dir": state_dir,
        "model": model,
        "stage": stage,
        "seed": seed,
        "device": device,
    }
    entry = "echogen.training.cascade:train_cascade_stage_from_config"
    run_distributed(entry, kwargs, gpus, device)
    write_json(f"{stage_dir}/provenance.json", provenance(model, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output.stage,
        snakemake.params.state_dir,
        snakemake.params.model,
        int(snakemake.wildcards.stage),
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
