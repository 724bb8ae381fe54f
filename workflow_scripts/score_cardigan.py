"""Rule score_cardigan: every TEST-mask image against the real image of its mask, the
real-trained segmenter's Dice on it, and the report's mask | real | generated strips."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.metrics.paired import LPIPS
from echogen.pipelines.cardigan import score_images, write_scores, write_strips
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(samples_dir: str, segmenter: str, scores: str, strips: str, lpips_net: str,
         lpips_weights: str | None = None, gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    lpips = LPIPS(lpips_net, lpips_weights, device)
    write_scores(score_images(samples_dir, segmenter, lpips, device), scores)
    write_strips(samples_dir, strips)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        str(Path(snakemake.input.filelist).parent),
        snakemake.input.segmenter,
        snakemake.output.scores,
        snakemake.output.strips,
        snakemake.params.lpips_net,
        snakemake.input.get("lpips_weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
