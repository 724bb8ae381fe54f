"""Rule sample_lidm: one shard of an LIDM image set."""

from typing import TYPE_CHECKING

import torch

from echogen.pipelines.lidm_sampling import ImageSampleConfig, sample_image_shard
from echogen.pipelines.synthetic import parse_scatteritem
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    lidm_dir: str,
    vae_dir: str,
    out_dir: str,
    sampling: dict,
    scatteritem: str,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    shard, n_shards = parse_scatteritem(scatteritem)
    config = ImageSampleConfig.from_dict(sampling)
    sample_image_shard(lidm_dir, vae_dir, out_dir, config, seed, shard, n_shards, pick_device(gpus))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.lidm,
        snakemake.input.vae,
        snakemake.output.shard,
        snakemake.params.sampling,
        snakemake.wildcards.scatteritem,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
