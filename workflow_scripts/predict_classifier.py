"""Rule predict_classifier: class probabilities of the real CardiacNet TEST videos."""

from typing import TYPE_CHECKING

import torch

from echogen.data.class_rows import real_test_rows
from echogen.data.io import atomic_path
from echogen.models.regressor import load_classifier
from echogen.pipelines.classification import predict_classes
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model: str, manifest: str, out_csv: str, gpus: int = 0, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    _, _, classes = load_classifier(model)
    rows = real_test_rows(manifest, [c["class_id"] for c in classes])
    predictions = predict_classes(model, rows, pick_device(gpus))
    with atomic_path(out_csv) as tmp:
        predictions.to_csv(tmp, index=False)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.model,
        snakemake.input.manifest,
        snakemake.output.predictions,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
