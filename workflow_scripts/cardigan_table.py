"""Rule cardigan_table: cardiGAN's table over every SPADE model's TEST-mask images."""

from typing import TYPE_CHECKING

from echogen.metrics.generation import model_table_entries
from echogen.pipelines.cardigan import write_cardigan_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(models: list[str], plumbing: list[bool], scores: list[str], generation: list[str],
         txt: str, record: str) -> None:  # fmt: skip
    entries = model_table_entries(models, plumbing, scores, generation)
    write_cardigan_table(entries, txt, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.params.models),
        list(snakemake.params.plumbing),
        list(snakemake.input.scores),
        list(snakemake.input.generation),
        snakemake.output.table,
        snakemake.output.record,
    )
