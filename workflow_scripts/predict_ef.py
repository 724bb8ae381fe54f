"""Rule predict_ef: EF of every video of a manifest or a folder (single clip and all clips)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.manifest import read_manifest
from echogen.pipelines.ef_prediction import predict_ef, video_folder_rows
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    model_dir: str,
    out_csv: str,
    manifest: str | None = None,
    folder: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    rows = read_manifest(manifest) if manifest else video_folder_rows(folder)
    predict_ef(model_dir, rows, out_csv, device=pick_device(gpus))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.output.predictions,
        snakemake.input.get("manifest"),
        snakemake.input.get("folder"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
