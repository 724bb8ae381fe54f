"""Rule sample_lvdm: one shard of a synthetic dataset."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.numerics import deterministic
from echogen.pipelines.sampling import SampleConfig, sample_shard
from echogen.pipelines.synthetic import parse_scatteritem
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake

# Keys of a lvdm.samples entry that belong to the workflow, not to the sampler.
WORKFLOW_KEYS = ("model", "real", "metrics", "privacy", "lidm")


def main(
    lvdm_dir: str,
    vae_dir: str,
    latents: str,
    out_dir: str,
    sample: dict,
    scatteritem: str,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
    images: str | None = None,
) -> None:
    """``latents`` is the real latent index, or with ``images`` (an image set's ``latents/``
    folder) the image list of that set."""
    torch.set_num_threads(threads)
    config = SampleConfig(**{k: v for k, v in sample.items() if k not in WORKFLOW_KEYS})
    shard, n_shards = parse_scatteritem(scatteritem)
    device = pick_device(gpus)
    with deterministic():  # a given block and precision repeat bit for bit
        sample_shard(
            lvdm_dir,
            vae_dir,
            latents,
            out_dir,
            config,
            seed,
            shard,
            n_shards,
            device,
            images_dir=None if images is None else Path(images).parent,
        )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.lvdm,
        snakemake.input.vae,
        snakemake.input.latents,
        snakemake.output.shard,
        snakemake.params.sample,
        snakemake.wildcards.scatteritem,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
        snakemake.input.get("images"),
    )
