"""Rule cardigan_segmentation_table: each U-Net's Dice on the real CAMUS TEST images."""

from typing import TYPE_CHECKING

import torch

from echogen.pipelines.cardigan import evaluate_segmenter, write_segmentation_table
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(camus: str, segmenters: list[str], sources: list[str], txt: str, record: str,
         n_bootstrap: int, seed: int, plumbing: bool, gpus: int = 0,
         threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    runs = {source: evaluate_segmenter(folder, f"{camus}/index.csv", "test", device)
            for source, folder in zip(sources, segmenters, strict=True)}  # fmt: skip
    write_segmentation_table(runs, txt, record, n_bootstrap, seed, plumbing)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.camus,
        list(snakemake.input.segmenters),
        list(snakemake.params.sources),
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.n_bootstrap,
        snakemake.params.seed,
        snakemake.params.plumbing,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
