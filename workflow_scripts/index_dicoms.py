"""Rule index_dicoms: index RV-failure DICOM headers without identifying tags."""

from typing import TYPE_CHECKING

from echogen.data.dicom import index_dicoms
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(root: str, rvfailure: dict, index: str, quarantine: str) -> None:
    index_dicoms(
        root,
        rvfailure["dicom_dir"],
        rvfailure["class_csv"],
        rvfailure["split_csv"],
        index,
        quarantine,
        min_frames=rvfailure["min_frames"],
        on_error=rvfailure.get("on_error", "raise"),
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.root,
        snakemake.params.rvfailure,
        snakemake.output.index,
        snakemake.output.quarantine,
    )
