"""Rule score_dartagnan: every counterfactual against its factual clip."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.metrics.paired import LPIPS
from echogen.pipelines.dartagnan import score_counterfactuals, write_scores
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(samples_dir: str, metainfo: str, regressor: str, expert: str, scores: str,
         lpips_net: str, lpips_weights: str | None = None, gpus: int = 0,
         threads: int = 1, size: int | None = None) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    lpips = LPIPS(lpips_net, lpips_weights, pick_device(gpus))
    write_scores(score_counterfactuals(samples_dir, metainfo, regressor, expert, lpips, size),
                 scores)  # fmt: skip


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        str(Path(snakemake.input.filelist).parent),
        snakemake.input.metainfo,
        snakemake.input.regressor,
        snakemake.input.expert,
        snakemake.output.scores,
        snakemake.params.lpips_net,
        snakemake.input.get("lpips_weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
        snakemake.params.size,
    )
