"""Rule prepare_camus: export CAMUS images and labels (the chosen views and phases) as png."""

from typing import TYPE_CHECKING

from echogen.data.camus import prepare_camus
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(root: str, out_dir: str, on_error: str, views: list, phases: list) -> None:
    prepare_camus(root, out_dir, on_error=on_error, views=views, phases=phases)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.root,
        snakemake.output.root,
        snakemake.params.on_error,
        snakemake.params.views,
        snakemake.params.phases,
    )
