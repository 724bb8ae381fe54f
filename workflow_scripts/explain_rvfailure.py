"""Rule explain_rvfailure: guided backpropagation (captum) of TEST clips, and their GIF."""

from typing import TYPE_CHECKING

import torch

from echogen.data.rvfailure import read_split_rows
from echogen.pipelines.rvfailure import explain_rvfailure
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model_dir: str, test_csv: str, out_dir: str, out_gif: str, videos: int, seed: int,
         gpus: int = 0, threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    rows = read_split_rows({"TEST": test_csv})
    explain_rvfailure(model_dir, rows, out_dir, out_gif, videos, seed, pick_device(gpus))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.test,
        snakemake.output.saliency,
        snakemake.output.gif,
        snakemake.params.videos,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
