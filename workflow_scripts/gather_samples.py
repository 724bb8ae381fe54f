"""Rule gather_samples: merge the shards of a synthetic dataset into one EchoNet-style folder."""

from pathlib import Path
from typing import TYPE_CHECKING

from echogen.pipelines.synthetic import gather_samples
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(shards: list[str], filelist: str) -> None:
    gather_samples(shards, Path(filelist).parent)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(list(snakemake.input.shards), snakemake.output.filelist)
