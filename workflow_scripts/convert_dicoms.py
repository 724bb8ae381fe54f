"""Rule convert_dicoms: convert one chunk of DICOMs to grey clips and optical flow."""

from typing import TYPE_CHECKING

from echogen.data.dicom import convert_dicoms
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    index: str, chunk: int, n_chunks: int, part: str, rvfailure: dict, farneback: dict
) -> None:
    convert_dicoms(
        index,
        chunk,
        n_chunks,
        part,
        size=rvfailure["size"],
        flow_params=farneback,
        on_error=rvfailure.get("on_error", "raise"),
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.index,
        int(snakemake.wildcards.chunk),
        snakemake.params.n_chunks,
        snakemake.output.part,
        snakemake.params.rvfailure,
        dict(snakemake.params.farneback),
    )
