"""Rule compute_generation_metrics: compare a fake frame folder with a real one."""

from typing import TYPE_CHECKING

import torch

from echogen.metrics.compare import compare_frame_folders
from echogen.metrics.generation import write_metric_table
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    comparison: dict,
    detectors: dict,
    table: str,
    record: str,
    batch_size: int,
    cache_dir: str | None,
    seed: int,
    lpips_net: str = "vgg",
    lpips_weights: str | None = None,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    result = compare_frame_folders(
        comparison["real"],
        comparison["fake"],
        comparison["metrics"],
        detectors,
        cache_dir=cache_dir,
        seed=seed,
        batch_size=batch_size,
        device=pick_device(gpus),
        lpips_net=lpips_net,
        lpips_weights=lpips_weights,
    )
    write_metric_table(result, table, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.params.comparison,
        snakemake.params.detectors,
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.batch_size,
        snakemake.params.cache_dir,
        snakemake.params.seed,
        snakemake.params.lpips_net,
        snakemake.input.get("lpips_weights"),
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
