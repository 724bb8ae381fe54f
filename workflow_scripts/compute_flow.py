"""Rule compute_flow: compute Farneback optical flow for one chunk of a manifest."""

from typing import TYPE_CHECKING

from echogen.data.flow import compute_flow
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(manifest: str, chunk: int, n_chunks: int, part: str, flow: dict, on_error: str) -> None:
    compute_flow(
        manifest,
        chunk,
        n_chunks,
        part,
        params=dict(flow["farneback"]),
        size=flow["size"],
        on_error=on_error,
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        int(snakemake.wildcards.chunk),
        snakemake.params.n_chunks,
        snakemake.output.part,
        snakemake.params.flow,
        snakemake.params.on_error,
    )
