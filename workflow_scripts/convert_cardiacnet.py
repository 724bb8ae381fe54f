"""Rule convert_cardiacnet: convert one chunk of CardiacNet NIfTI volumes to MP4."""

from typing import TYPE_CHECKING

from echogen.data.cardiacnet import convert_cardiacnet
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(index: str, chunk: int, n_chunks: int, part: str, cardiacnet: dict) -> None:
    convert_cardiacnet(
        index,
        chunk,
        n_chunks,
        part,
        fps=cardiacnet["fps"],
        size=cardiacnet["size"],
        on_error=cardiacnet.get("on_error", "raise"),
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.index,
        int(snakemake.wildcards.chunk),
        snakemake.params.n_chunks,
        snakemake.output.part,
        snakemake.params.cardiacnet,
    )
