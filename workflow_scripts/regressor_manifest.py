"""Rule regressor_manifest: the rows an EF regressor run trains and validates on, composed."""

import logging
from typing import TYPE_CHECKING

from echogen.data.ef_balance import regressor_training_manifest
from echogen.data.manifest import read_manifest, write_manifest
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(real: str, synthetic: str | None, manifest: str, run: dict, seed: int) -> None:
    rows = regressor_training_manifest(
        read_manifest(real),
        read_manifest(synthetic) if synthetic else None,
        with_real=bool(run.get("with_real")),
        balance=run.get("balance"),
        limit=run.get("limit"),
        seed=seed,
    )
    written = write_manifest(rows, manifest)
    counts = written.groupby(["Split", "Dataset"]).size()
    for (split, dataset), n in counts.items():
        logging.info("%s %s: %d videos", split, dataset, n)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.real,
        snakemake.input.get("synthetic"),
        snakemake.output.manifest,
        snakemake.params.run,
        snakemake.params.seed,
    )
