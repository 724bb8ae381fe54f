"""Rule ingest_rvfailure: gather RV-failure clips: manifest, TRAIN statistics, split lists."""

from pathlib import Path
from typing import TYPE_CHECKING

from echogen.data.rvfailure import ingest_rvfailure
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    parts: list[str],
    index: str,
    manifest: str,
    quarantine: str,
    stats: str,
    splits_dir: str,
    positive_class: str,
) -> None:
    ingest_rvfailure(
        parts, index, manifest, quarantine, stats, splits_dir, positive_class=positive_class
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.input.parts),
        snakemake.input.index,
        snakemake.output.manifest,
        snakemake.output.quarantine,
        snakemake.output.stats,
        str(Path(snakemake.output.splits[0]).parent),
        snakemake.params.positive_class,
    )
