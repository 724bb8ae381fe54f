"""Rule ef_fidelity: regressed EF of generated videos vs the EF they were asked for."""

from typing import TYPE_CHECKING

from echogen.pipelines.ef_fidelity import ef_fidelity, write_ef_fidelity_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    filelist: str,
    predictions: str,
    model: str,
    table: str,
    record_json: str,
    per_video: str,
    n_bootstrap: int,
    seed: int,
    plumbing: bool,
) -> None:
    record = ef_fidelity(
        filelist,
        predictions,
        n_bootstrap=n_bootstrap,
        seed=seed,
        regressor=model,
        model=model,
        plumbing=plumbing,
        per_video_csv=per_video,
    )
    write_ef_fidelity_table(record, table, record_json)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.filelist,
        snakemake.input.predictions,
        snakemake.input.model,
        snakemake.output.table,
        snakemake.output.record,
        snakemake.output.per_video,
        snakemake.params.n_bootstrap,
        snakemake.params.seed,
        snakemake.params.plumbing,
    )
