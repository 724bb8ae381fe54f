"""Rules filter_samples, filter_lidm: drop synthetic samples too close to a real TRAIN video."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.pipelines.privacy import filter_samples
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    model: str,
    latents: str,
    filelist: str,
    out_filelist: str,
    percentile: float,
    gpus: int = 0,
    threads: int = 1,
    heldout: list[str] | None = None,
    link_frames: bool = False,
) -> None:
    torch.set_num_threads(threads)
    filter_samples(
        model,
        latents,
        Path(filelist).parent,
        Path(out_filelist).parent,
        percentile=percentile,
        device=pick_device(gpus),
        heldout=tuple(heldout or ("VAL", "TEST")),
        link_frames=link_frames,
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.latents,
        snakemake.input.filelist,
        snakemake.output.filelist,
        snakemake.params.percentile,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
        snakemake.params.heldout,
        snakemake.params.link_frames,
    )
