"""Rules sample_cardigan (one shard of the TEST-mask images) and sample_cardigan_train (the
TRAIN-mask images in one job)."""

from typing import TYPE_CHECKING

import torch

from echogen.pipelines.cardigan import sample_cardigan_dataset, sample_cardigan_shard
from echogen.pipelines.synthetic import parse_scatteritem
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model: str, camus: str, out_dir: str, split: str, sampling: dict, seed: int,
         scatteritem: str | None = None, gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    index, device = f"{camus}/index.csv", pick_device(gpus)
    if scatteritem is None:
        sample_cardigan_dataset(model, index, out_dir, split, sampling, seed, device)
    else:
        shard, n_shards = parse_scatteritem(scatteritem)
        sample_cardigan_shard(model, index, out_dir, split, sampling, seed, shard, n_shards,
                              device)  # fmt: skip


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.camus,
        snakemake.output[0],
        snakemake.params.split,
        dict(snakemake.params.sampling),
        snakemake.params.seed,
        snakemake.wildcards.get("scatteritem"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
