"""Rule import_cascade: a cascade folder from a released EchoDiffusion model."""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from echogen.models.cascade import import_released_cascade
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(release: str, index: str, stages_dir: str, stages: int) -> None:
    folder = Path(index).parent
    written = import_released_cascade(release, folder, stages, Path(stages_dir).name)
    logging.getLogger(__name__).info("imported %s: %s", release, written["stages"])


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        str(Path(snakemake.input.config).parent),
        snakemake.output.index,
        snakemake.output.stages,
        snakemake.params.stages,
    )
