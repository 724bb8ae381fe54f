"""Rule gather_parts: index the part folders of a chunked artefact."""

from typing import TYPE_CHECKING

from echogen.data.parts import gather_parts
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(parts: list[str], index: str, quarantine: str) -> None:
    gather_parts(parts, index, quarantine)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(list(snakemake.input.parts), snakemake.output.index, snakemake.output.quarantine)
