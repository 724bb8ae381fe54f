"""Rule encode_latents: VAE latents of one chunk of a dataset's videos."""

from typing import TYPE_CHECKING

import torch

from echogen.pipelines.latents import encode_chunk
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifest: str,
    vae_dir: str,
    part_dir: str,
    chunk: int,
    n_chunks: int,
    latents: dict,
    on_error: str,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    encode_chunk(
        manifest,
        vae_dir,
        part_dir,
        chunk,
        n_chunks,
        fps=latents["fps"],
        size=latents["size"],
        device=pick_device(gpus),
        batch_size=latents["batch_size"],
        on_error=on_error,
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.input.vae,
        snakemake.output.part,
        int(snakemake.wildcards.chunk),
        snakemake.params.n_chunks,
        snakemake.params.latents,
        snakemake.params.on_error,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
