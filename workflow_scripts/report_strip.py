"""Rule report_strip: GIF of real (top) vs generated (bottom) videos."""

from typing import TYPE_CHECKING

from echogen.metrics.frame_folders import list_videos
from echogen.report import video_strip_gif
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(real: str, fake: str, gif: str) -> None:
    video_strip_gif(list_videos(real)[:4], list_videos(fake)[:4], gif)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.input.real, snakemake.input.fake, snakemake.output.gif)
