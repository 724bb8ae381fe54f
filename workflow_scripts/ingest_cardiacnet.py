"""Rule ingest_cardiacnet: gather converted CardiacNet videos into the manifest."""

from typing import TYPE_CHECKING

from echogen.data.cardiacnet import ingest_cardiacnet
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(parts: list[str], manifest: str, quarantine: str) -> None:
    ingest_cardiacnet(parts, manifest, quarantine)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(list(snakemake.input.parts), snakemake.output.manifest, snakemake.output.quarantine)
