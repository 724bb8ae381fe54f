"""Rule evaluate_regressor: an EF regressor's VAL/TEST table with bootstrap CIs."""

import json
from typing import TYPE_CHECKING

import pandas as pd

from echogen.data.ef_balance import describe_training
from echogen.pipelines.ef_prediction import regressor_record, write_regressor_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    model_dir: str,
    predictions: str,
    table: str,
    record: str,
    n_boot: int,
    seed: int,
    splits: list[str],
    ci_level: float,
    run: dict | None = None,
):
    train = json.loads(open(f"{model_dir}/train.json").read())
    clips = json.loads(open(f"{model_dir}/clips.json").read())
    result = regressor_record(
        pd.read_csv(predictions),
        train["train_mean_ef"],
        splits=splits,
        clip_start=clips.get("clip_start", "first"),
        n_boot=n_boot,
        seed=seed,
        ci_level=ci_level,
    )
    result["model"] = model_dir
    if run is not None:
        result["trained_on"] = describe_training(run)
        result["tested_on"] = run["dataset"]
    write_regressor_table(result, table, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.predictions,
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.n_bootstrap,
        snakemake.params.seed,
        snakemake.params.splits,
        snakemake.params.ci_level,
        snakemake.params.run,
    )
