"""Rule make_phantom: write one synthetic raw dataset in its public layout."""

from typing import TYPE_CHECKING

from echogen.phantom import write_phantom
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(dataset: str, root: str, params: dict, seed: int) -> None:
    write_phantom(dataset, root, params, seed)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.wildcards.dataset,
        snakemake.output.root,
        dict(snakemake.params.phantom),
        snakemake.params.seed,
    )
