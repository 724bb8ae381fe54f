"""Rule classification_table: CardiacNet TEST scores per training source."""

from typing import TYPE_CHECKING

import pandas as pd

from echogen.pipelines.classification import classification_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    predictions: list[str], sources: list[str], table: str, record: str, n_bootstrap: int, seed: int
) -> None:
    results = {source: pd.read_csv(path) for source, path in zip(sources, predictions, strict=True)}
    classification_table(results, table, record, n_bootstrap=n_bootstrap, seed=seed)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.predictions),
        snakemake.params.sources,
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.n_bootstrap,
        snakemake.params.seed,
    )
