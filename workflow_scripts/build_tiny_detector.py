"""Rule build_tiny_detector: a tiny random TorchScript detector (plumbing checks only)."""

from typing import TYPE_CHECKING

from echogen.metrics.detectors import write_tiny_detector
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(kind: str, path: str, seed: int) -> None:
    write_tiny_detector(kind, path, seed)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.wildcards.detector, snakemake.output.detector, snakemake.params.seed)
