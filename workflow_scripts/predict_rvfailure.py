"""Rule predict_rvfailure: every VAL and TEST video's probability of severe RV failure."""

from typing import TYPE_CHECKING

import torch

from echogen.data.rvfailure import read_split_rows
from echogen.pipelines.rvfailure import predict_rvfailure
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model_dir: str, val_csv: str, test_csv: str, out_csv: str, seed: int, gpus: int = 0,
         threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    rows = read_split_rows({"VAL": val_csv, "TEST": test_csv})
    predict_rvfailure(model_dir, rows, out_csv, seed, pick_device(gpus))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.val,
        snakemake.input.test,
        snakemake.output.predictions,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
