"""Rule sample_dartagnan: one shard of a model's counterfactuals of the VAL/TEST clips."""

from typing import TYPE_CHECKING

import torch

from echogen.pipelines.dartagnan import sample_dartagnan_shard
from echogen.pipelines.synthetic import parse_scatteritem
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model: str, metainfo: str, out_dir: str, sampling: dict, scatteritem: str, seed: int,
         gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    shard, n_shards = parse_scatteritem(scatteritem)
    sample_dartagnan_shard(model, metainfo, out_dir, sampling, seed, shard, n_shards,
                           pick_device(gpus))  # fmt: skip


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.metainfo,
        snakemake.output.shard,
        dict(snakemake.params.sampling),
        snakemake.wildcards.scatteritem,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
