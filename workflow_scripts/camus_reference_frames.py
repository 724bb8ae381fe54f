"""Rule camus_reference_frames: the real CAMUS TEST images as a frame folder at one size."""

from typing import TYPE_CHECKING

from echogen.pipelines.cardigan import write_reference_frames
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(camus: str, frames: str, size: int, quality: int) -> None:
    write_reference_frames(f"{camus}/index.csv", "test", size, frames, quality)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.camus,
        snakemake.output.frames,
        int(snakemake.wildcards.size),
        snakemake.params.quality,
    )
