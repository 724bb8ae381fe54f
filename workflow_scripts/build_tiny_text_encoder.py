"""Rule build_tiny_text_encoder: a tiny random CLIP text model with real transformers classes."""

from typing import TYPE_CHECKING

from echogen.models.text import write_tiny_text_encoder
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(folder: str, seed: int) -> None:
    write_tiny_text_encoder(folder, seed=seed)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.output.folder, snakemake.params.seed)
