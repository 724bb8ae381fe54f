"""Rule train_cardigan_segmenter: a U-Net on real, synthetic or real + synthetic pairs."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(camus: str, synthetic: str | None, source: str, model_dir: str, state_dir: str,
         segmentation: dict, seed: int, gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    index = f"{camus}/index.csv"
    sources = {"real": [index], "synthetic": [synthetic], "mixed": [index, synthetic]}[source]
    kwargs = {"sources": sources, "val_index": index, "out_dir": model_dir,
              "state_dir": state_dir, "model": segmentation.get("model"),
              "train": segmentation.get("train"), "seed": seed, "device": device}  # fmt: skip
    run_distributed("echogen.training.segmenter:train_segmenter", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(segmentation, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.camus,
        snakemake.input.get("synthetic"),
        snakemake.wildcards.source,
        snakemake.output.model,
        snakemake.params.state_dir,
        dict(snakemake.params.segmentation),
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
