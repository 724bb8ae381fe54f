"""Rule train_cardigan: train SPADE on CAMUS train (resumable; state outside the output)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(camus: str, vgg: str | None, model_dir: str, state_dir: str, model: dict, seed: int,
         gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    model = {**model, "train": {**model.get("train", {}), "vgg_weights": vgg}}
    kwargs = {"index_csv": f"{camus}/index.csv", "out_dir": model_dir, "state_dir": state_dir,
              "generator": model.get("generator"), "discriminator": model.get("discriminator"),
              "encoder": model.get("encoder"), "train": model.get("train"), "seed": seed,
              "device": device}  # fmt: skip
    run_distributed("echogen.training.spade:train_spade", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(model, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.camus,
        snakemake.input.get("vgg"),
        snakemake.output.model,
        snakemake.params.state_dir,
        dict(snakemake.params.model),
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
