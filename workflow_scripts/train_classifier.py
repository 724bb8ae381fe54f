"""Rule train_classifier: a CardiacNet video classifier on real, synthetic or both."""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.training.classifier import (
    resolve_classifier_config,
    train_classifier,
    training_rows,
)
from echogen.workflow import pick_device, provenance, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifest: str,
    model_dir: str,
    state_dir: str,
    source: str,
    classification: dict,
    class_map: dict,
    seed: int,
    filelist: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    classes = classification.get("classes") or sorted(class_map.values())
    samples_dir = Path(filelist).parent if filelist else None
    rows = training_rows(source, manifest, samples_dir, classes)
    config = resolve_classifier_config(classification["preset"], classification.get("overrides"))
    train_classifier(rows, model_dir, state_dir, config, len(classes), seed, device)
    write_json(f"{model_dir}/provenance.json", provenance(classification, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.wildcards.source,
        snakemake.params.classification,
        snakemake.params.class_map,
        snakemake.params.seed,
        snakemake.input.get("filelist"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
