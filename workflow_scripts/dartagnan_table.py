"""Rule dartagnan_table: D'ARTAGNAN's table over every model's counterfactuals."""

from typing import TYPE_CHECKING

from echogen.metrics.generation import model_table_entries
from echogen.pipelines.dartagnan import write_dartagnan_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(models: list[str], plumbing: list[bool], scores: list[str], generation: list[str],
         txt: str, record: str, regressor: str, expert: str) -> None:  # fmt: skip
    entries = model_table_entries(models, plumbing, scores, generation)
    write_dartagnan_table(entries, txt, record, regressor, expert)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.params.models),
        list(snakemake.params.plumbing),
        list(snakemake.input.scores),
        list(snakemake.input.generation),
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.regressor,
        snakemake.params.expert,
    )
