"""Rule train_regressor: train an EF regressor from a preset (or export published weights)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifest: str,
    model_dir: str,
    state_dir: str,
    run: dict,
    seed: int,
    weights: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "manifest": manifest,
        "out_dir": model_dir,
        "state_dir": state_dir,
        "run": run,
        "seed": seed,
        "device": device,
        "weights": weights,
    }
    run_distributed("echogen.training.regressor:train_regressor_from_run", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(run, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.params.run,
        snakemake.params.seed,
        snakemake.input.get("weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
