"""Rule predict_classifier: class probabilities of the CardiacNet TEST videos (real, and the
synthetic dataset's when evaluation.classification.test_sets names it)."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.data.io import atomic_path
from echogen.pipelines.classification import predict_test_sets
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    model: str,
    manifest: str,
    out_csv: str,
    test_sets: list[str],
    filelist: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    samples_dir = Path(filelist).parent if filelist else None
    predictions = predict_test_sets(model, manifest, samples_dir, test_sets, pick_device(gpus))
    with atomic_path(out_csv) as tmp:
        predictions.to_csv(tmp, index=False)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.manifest,
        snakemake.output.predictions,
        list(snakemake.params.test_sets),
        snakemake.input.get("filelist"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
