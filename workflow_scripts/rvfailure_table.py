"""Rule rvfailure_table: AUC, specificity at the sensitivity, confusion matrix per model."""

from typing import TYPE_CHECKING

from echogen.pipelines.rvfailure import write_rvfailure_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    predict = snakemake.params.predict
    write_rvfailure_table(
        dict(zip(snakemake.params.models, snakemake.input.predictions, strict=True)),
        snakemake.output.table,
        snakemake.output.record,
        predict["sensitivity"],
        predict["n_bootstrap"],
        snakemake.params.seed,
        snakemake.params.plumbing,
    )
