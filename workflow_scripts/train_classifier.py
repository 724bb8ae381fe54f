"""Rules train_classifier(_fold): a CardiacNet video classifier of one task on real, synthetic
or both (one fold of a cross-validation for the _fold rule)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    manifest: str,
    model_dir: str,
    state_dir: str,
    source: str,
    classification: dict,
    classes: list[int],
    seed: int,
    filelist: str | None = None,
    weights: str | None = None,
    gpus: int = 0,
    threads: int = 1,
    fold: int | None = None,
) -> None:
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {
        "source": source,
        "manifest": manifest,
        "filelist": filelist,
        "out_dir": model_dir,
        "state_dir": state_dir,
        "classification": classification,
        "classes": classes,
        "seed": seed,
        "device": device,
        "pretrained": weights,
        "fold": fold,
    }
    target = "echogen.training.classifier:train_classifier_from_config"
    run_distributed(target, kwargs, gpus, device)
    write_json(
        f"{model_dir}/provenance.json",
        provenance(
            classification, device, seed=seed, classes=classes, pretrained=weights, fold=fold
        ),
    )


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.manifest,
        snakemake.output.model,
        snakemake.params.state_dir,
        snakemake.wildcards.source,
        snakemake.params.classification,
        snakemake.params.classes,
        snakemake.params.seed,
        snakemake.input.get("filelist"),
        snakemake.input.get("weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
        int(snakemake.wildcards.get("fold") or 0) or None,  # rule train_classifier_fold
    )
