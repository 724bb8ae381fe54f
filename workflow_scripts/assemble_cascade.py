"""Rule assemble_cascade: cascade.json referencing a cascade's trained stage folders."""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from echogen.models.cascade import write_cascade_folder
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(stage_dirs: list[str], index: str) -> None:
    written = write_cascade_folder(Path(index).parent, stage_dirs)
    logging.getLogger(__name__).info("cascade of %d stages: %s", len(stage_dirs), written["stages"])


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(list(snakemake.input.stages), snakemake.output.index)
