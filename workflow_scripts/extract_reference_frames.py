"""Rule extract_reference_frames: write a StyleGAN-V reference frame set."""

from typing import TYPE_CHECKING

from echogen.data.frames import extract_reference_frames
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifest: str, out_dir: str, index: str, frames: int, reference: dict, seed: int, on_error: str
) -> None:
    extract_reference_frames(
        manifest,
        out_dir,
        index,
        frames=frames,
        fps=reference["fps"],
        max_videos=reference["max_videos"],
        split=reference["split"],
        seed=seed,
        quality=reference["quality"],
        on_error=on_error,
        policy=reference["policy"],
        shuffle_seed=reference["shuffle_seed"],
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output.frames,
        snakemake.output.index,
        int(snakemake.wildcards.frames),
        snakemake.params.reference,
        snakemake.params.seed,
        snakemake.params.on_error,
    )
