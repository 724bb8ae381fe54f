"""Rule sample_cascade: one shard of a cascade's factual or counterfactual videos."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.pipelines.cascade_sampling import sample_cascade_shard
from echogen.pipelines.synthetic import parse_scatteritem
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    cascade: str,
    manifest: str,
    out_dir: str,
    sampling: dict,
    scatteritem: str,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    shard, n_shards = parse_scatteritem(scatteritem)
    sample_cascade_shard(
        Path(cascade).parent, manifest, out_dir, sampling, seed, shard, n_shards, pick_device(gpus)
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.cascade,
        snakemake.input.manifest,
        snakemake.output.shard,
        snakemake.params.sampling,
        snakemake.wildcards.scatteritem,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
