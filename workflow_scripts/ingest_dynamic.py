"""Rule ingest_dynamic: harmonise EchoNet-Dynamic into the manifest schema."""

from typing import TYPE_CHECKING

from echogen.data.dynamic import ingest_dynamic
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(root: str, manifest: str, quarantine: str, on_error: str) -> None:
    ingest_dynamic(root, manifest, quarantine, on_error=on_error)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.root,
        snakemake.output.manifest,
        snakemake.output.quarantine,
        snakemake.params.on_error,
    )
