"""Rule index_cardiacnet: list CardiacNet volumes with classes and a patient-stratified split."""

from typing import TYPE_CHECKING

from echogen.data.cardiacnet import index_cardiacnet
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(root: str, cardiacnet: dict, index: str, quarantine: str) -> None:
    index_cardiacnet(
        root,
        dict(cardiacnet["class_map"]),
        dict(cardiacnet["split"]),
        index,
        quarantine,
        on_error=cardiacnet.get("on_error", "raise"),
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.root,
        snakemake.params.cardiacnet,
        snakemake.output.index,
        snakemake.output.quarantine,
    )
