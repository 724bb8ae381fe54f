"""Rule classification_table: CardiacNet TEST scores per task, training source and TEST set
(mean ± std over the folds under cross-validation)."""

from typing import TYPE_CHECKING

import pandas as pd

from echogen.pipelines.classification import classification_tables
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    predictions: list[str],
    tasks: dict[str, list[str]],
    sources: list[str],
    table: str,
    record: str,
    n_bootstrap: int,
    seed: int,
    pretrained: str | None = None,
    plumbing: bool = False,
    folds: int | None = None,
) -> None:
    """``predictions`` are task by task, source by source, fold by fold (``folds`` of them
    under cross-validation; rules/evaluation_helpers.smk); ``tasks`` maps each task to its
    class names."""
    paths = iter(predictions)

    def read() -> pd.DataFrame | list[pd.DataFrame]:
        if not folds:
            return pd.read_csv(next(paths))
        return [pd.read_csv(next(paths)) for _ in range(folds)]

    results = {task: {source: read() for source in sources} for task in tasks}
    classification_tables(results, table, record, n_bootstrap, seed, pretrained, tasks, plumbing)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.predictions),
        dict(snakemake.params.tasks),
        snakemake.params.sources,
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.n_bootstrap,
        snakemake.params.seed,
        snakemake.params.pretrained,
        snakemake.params.plumbing,
        snakemake.params.folds,
    )
