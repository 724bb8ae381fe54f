"""Rule train_regressor: train an EF regressor from a preset (or export published weights)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.training.regressor import resolve_config, train_regressor
from echogen.workflow import pick_device, provenance, setup_logging

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
    overrides = run.get("overrides") or {}
    pretrained = None
    if run.get("pretrained"):
        pretrained = {"kind": run["pretrained"]["kind"], "path": weights}
        if not run["pretrained"].get("finetune", True):  # evaluate published weights as they are
            overrides = {**overrides, "train": {**overrides.get("train", {}), "max_steps": 0}}
    config = resolve_config(run["preset"], overrides)
    device = pick_device(gpus)
    train_regressor(manifest, model_dir, state_dir, config, seed, device, pretrained)
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
