"""Rule ingest_pediatric: harmonise one EchoNet-Pediatric view into the manifest schema."""

from typing import TYPE_CHECKING

from echogen.data.pediatric import ingest_pediatric
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(root: str, view: str, manifest: str, quarantine: str, on_error: str) -> None:
    ingest_pediatric(root, view, manifest, quarantine, on_error=on_error)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.root,
        snakemake.wildcards.view,
        snakemake.output.manifest,
        snakemake.output.quarantine,
        snakemake.params.on_error,
    )
