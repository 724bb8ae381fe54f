"""Rule score_cardigan: every TEST-mask image against the real image of its mask, the
real-trained segmenter's Dice on it, the report's mask | real | generated strips and the
real-vs-generated embedding plot."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.metrics.paired import LPIPS
from echogen.pipelines.cardigan import (
    score_images,
    write_embedding_plot,
    write_scores,
    write_strips,
)
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(samples_dir: str, segmenter: str, real: str, inception: str, scores: str, strips: str,
         embedding: str, lpips_net: str, seed: int, lpips_weights: str | None = None,
         gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    lpips = LPIPS(lpips_net, lpips_weights, device)
    write_scores(score_images(samples_dir, segmenter, lpips, device), scores)
    write_strips(samples_dir, strips)
    write_embedding_plot(real, f"{samples_dir}/frames", inception, embedding, seed, device)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        str(Path(snakemake.input.filelist).parent),
        snakemake.input.segmenter,
        snakemake.input.real,
        snakemake.input.inception,
        snakemake.output.scores,
        snakemake.output.strips,
        snakemake.output.embedding,
        snakemake.params.lpips_net,
        snakemake.params.seed,
        snakemake.input.get("lpips_weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
