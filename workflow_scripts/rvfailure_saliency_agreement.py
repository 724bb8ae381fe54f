"""Rule rvfailure_saliency_agreement: the TF1 innvestigate maps against captum's, and their
report GIF."""

from typing import TYPE_CHECKING

from echogen.data.io import write_json
from echogen.models.rvfailure import load_clip_spec
from echogen.pipelines.rvfailure import saliency_agreement, saliency_gif
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model_dir: str, captum_dir: str, innvestigate_dir: str, out_json: str, out_gif: str,
         start: str, tolerance: float) -> None:  # fmt: skip
    # maps started from the output's value are not captum's: reported, not required equal
    record = saliency_agreement(captum_dir, innvestigate_dir,
                                tolerance if start == "unit" else None)  # fmt: skip
    record["start"] = start
    saliency_gif(captum_dir, innvestigate_dir, load_clip_spec(model_dir), out_gif)
    write_json(out_json, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.captum,
        snakemake.input.innvestigate,
        snakemake.output.record,
        snakemake.output.gif,
        snakemake.params.start,
        snakemake.params.tolerance,
    )
