"""Rule train_classifier: a CardiacNet video classifier on real, synthetic or both."""

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
    class_map: dict,
    seed: int,
    filelist: str | None = None,
    gpus: int = 0,
    threads: int = 1,
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
        "class_map": class_map,
        "seed": seed,
        "device": device,
    }
    target = "echogen.training.classifier:train_classifier_from_config"
    run_distributed(target, kwargs, gpus, device)
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
