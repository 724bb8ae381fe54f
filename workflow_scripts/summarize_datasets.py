"""Rule summarize_datasets: one row per synthetic dataset of every system, side by side."""

from typing import TYPE_CHECKING

from echogen.metrics.summary import dataset_row, write_summary
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(datasets: dict[str, dict], table: str, record: str) -> None:
    """``datasets``: id -> {system, samples_dir, generation, ef_fidelity} (paths or None)."""
    rows = [dataset_row(dataset, **entry) for dataset, entry in datasets.items()]
    write_summary(rows, table, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.params.datasets, snakemake.output.table, snakemake.output.record)
