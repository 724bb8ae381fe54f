"""Rule infer_dartagnan: the counterfactuals of the configured (video, EF) pairs."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.pipelines.dartagnan import infer_counterfactuals
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model: str, expert: str, metainfo: str, dataset: str, items: list[dict], out_dir: str,
         seed: int, gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    infer_counterfactuals(model, expert, items, out_dir, {dataset: metainfo}, seed,
                          pick_device(gpus))  # fmt: skip


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.expert,
        snakemake.input.metainfo,
        snakemake.params.dataset,
        [dict(item) for item in snakemake.params.pairs],
        str(Path(snakemake.output.filelist).parent),
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
