"""Rule pretrain_rvfailure_stream: train one stream to regress EF (resumable)."""

from typing import TYPE_CHECKING

import torch

from echogen.data.io import write_json
from echogen.workflow import pick_device, provenance, run_distributed, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(stream: str, manifest: str, flow_index: str | None, kinetics: str | None, model_dir: str,
         state_dir: str, rvfailure: dict, seed: int, gpus: int = 0,
         threads: int = 1) -> None:  # fmt: skip
    torch.set_num_threads(threads)
    device = pick_device(gpus)
    clips = {**rvfailure["clips"], **rvfailure["pretrain"]["clips"]}
    kwargs = {"objective": "ef", "out_dir": model_dir, "state_dir": state_dir,
              "network": rvfailure["network"], "streams": [stream], "clips": clips,
              "train": rvfailure["pretrain"]["train"], "seed": seed, "device": device,
              "manifest": manifest, "flow_index": flow_index,
              "init": {stream: ["kinetics", kinetics]} if kinetics else None}  # fmt: skip
    run_distributed("echogen.training.rvfailure:train_rvfailure_from_config", kwargs, gpus, device)
    write_json(f"{model_dir}/provenance.json", provenance(kwargs, device, seed=seed))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.wildcards.stream,
        snakemake.input.manifest,
        snakemake.input.get("flow"),
        snakemake.input.get("kinetics"),
        snakemake.output.model,
        snakemake.params.state_dir,
        dict(snakemake.params.rvfailure),
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
