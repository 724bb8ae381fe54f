"""Rule report_ef_scatter: requested vs regressed EF of a synthetic dataset."""

from typing import TYPE_CHECKING

from echogen.report import ef_scatter
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(per_video: str, png: str, dataset: str) -> None:
    ef_scatter(per_video, png, title=f"{dataset}: regressed vs requested EF")


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.input.per_video, snakemake.output.png, snakemake.wildcards.dataset)
