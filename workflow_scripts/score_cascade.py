"""Rule score_cascade: every sample of a cascade dataset against its real clip."""

from typing import TYPE_CHECKING

import torch

from echogen.metrics.paired import LPIPS
from echogen.pipelines.cascade_scoring import score_samples, write_scores
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    samples_dir: str,
    manifest: str,
    generated: str,
    real: str,
    scores: str,
    lpips_net: str,
    lpips_weights: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    lpips = LPIPS(lpips_net, lpips_weights, pick_device(gpus))
    write_scores(score_samples(samples_dir, manifest, generated, real, lpips), scores)


if "snakemake" in globals():
    from pathlib import Path

    setup_logging(snakemake.log[0])
    main(
        str(Path(snakemake.input.filelist).parent),
        snakemake.input.manifest,
        snakemake.input.generated,
        snakemake.input.real,
        snakemake.output.scores,
        snakemake.params.lpips_net,
        snakemake.input.get("lpips_weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
