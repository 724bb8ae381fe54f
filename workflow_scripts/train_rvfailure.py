"""Rule train_rvfailure: train a fusion network on RV failure (resumable)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(train_csv: str, val_csv: str, init: dict, model_dir: str, state_dir: str,
         streams: list[str], rvfailure: dict, seed: int, gpus: int = 0,
         threads: int = 1, test_csv: str | None = None) -> None:  # fmt: skip
    """``test_csv`` only when ``clips.stat_splits`` names TEST (its videos' statistics)."""
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    kwargs = {"objective": "rvfailure", "out_dir": model_dir, "state_dir": state_dir,
              "network": rvfailure["network"], "streams": streams, "clips": rvfailure["clips"],
              "train": rvfailure["train"], "seed": seed, "device": device,
              "splits": {"TRAIN": train_csv, "VAL": val_csv,
                         **({"TEST": test_csv} if test_csv else {})}, "init": init}  # fmt: skip
    run_distributed("echogen.training.rvfailure:train_rvfailure_from_config", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(kwargs, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.input.train,
        snakemake.input.val,
        dict(snakemake.params.init),
        snakemake.output.model,
        snakemake.params.state_dir,
        list(snakemake.params.streams),
        dict(snakemake.params.rvfailure),
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
        snakemake.input.get("test"),
    )
