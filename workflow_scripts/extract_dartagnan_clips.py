"""Rule extract_dartagnan_clips: cut one chunk of D'ARTAGNAN clips between ES and ED."""

from typing import TYPE_CHECKING

from echogen.data.clips import extract_dartagnan_clips
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(manifest: str, chunk: int, n_chunks: int, part: str, clips: dict, on_error: str) -> None:
    extract_dartagnan_clips(
        manifest,
        chunk,
        n_chunks,
        part,
        frames=clips["frames"],
        fps=clips["fps"],
        on_error=on_error,
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        int(snakemake.wildcards.chunk),
        snakemake.params.n_chunks,
        snakemake.output.part,
        snakemake.params.clips,
        snakemake.params.on_error,
    )
