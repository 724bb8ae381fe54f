"""Rule extract_cardiacnet_frames: write every CardiacNet frame as jpg."""

from typing import TYPE_CHECKING

from echogen.data.frames import extract_frames
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(manifest: str, out_dir: str, index: str, quality: int, on_error: str) -> None:
    extract_frames(manifest, out_dir, index, quality=quality, on_error=on_error)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output.frames,
        snakemake.output.index,
        snakemake.params.quality,
        snakemake.params.on_error,
    )
