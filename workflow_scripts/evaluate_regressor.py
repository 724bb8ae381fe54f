"""Rule evaluate_regressor: the TEST table of an EF regressor with bootstrap CIs."""

import json
from typing import TYPE_CHECKING

import pandas as pd

from echogen.pipelines.ef_prediction import regressor_report, write_regressor_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model_dir: str, predictions: str, table: str, record: str, n_boot: int, seed: int):
    train = json.loads(open(f"{model_dir}/train.json").read())
    report = regressor_report(
        pd.read_csv(predictions), train["train_mean_ef"], n_boot=n_boot, seed=seed
    )
    report["model"] = model_dir
    write_regressor_table(report, table, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.predictions,
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.n_bootstrap,
        snakemake.params.seed,
    )
