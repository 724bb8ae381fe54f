"""Rule synthetic_manifest: a synthetic dataset as a manifest the EF regressors can read."""

from pathlib import Path
from typing import TYPE_CHECKING

from echogen.data.manifest import write_manifest
from echogen.pipelines.synthetic import synthetic_manifest
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(filelist: str, manifest: str, dataset: str) -> None:
    write_manifest(synthetic_manifest(Path(filelist).parent, dataset), manifest)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.input.filelist, snakemake.output.manifest, snakemake.wildcards.dataset)
