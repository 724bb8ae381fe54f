"""Rule cascade_paired_metrics: FID and FVD of each video's first draw against its real clip."""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from echogen.metrics.compare import compare_frame_folders
from echogen.metrics.generation import write_metric_table
from echogen.pipelines.cascade_scoring import write_paired_frames
from echogen.workflow import pick_device, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    samples_dir: str,
    manifest: str,
    frames: str,
    tables: dict[str, tuple[str, str]],
    metrics: list[str],
    detectors: dict,
    pad_to: int,
    batch_size: int,
    cache_dir: str | None,
    seed: int,
    gpus: int = 0,
    threads: int = 1,
) -> None:
    torch.set_num_threads(threads)
    n = write_paired_frames(samples_dir, manifest, frames)
    logging.info("%d first draws paired with their real clips in %s", n, frames)
    for pad, (txt, record) in ((None, tables["native"]), (pad_to, tables["padded"])):
        result = compare_frame_folders(
            Path(frames) / "real",
            Path(frames) / "fake",
            metrics,
            detectors,
            cache_dir=cache_dir,
            seed=seed,
            batch_size=batch_size,
            device=pick_device(gpus),
            pad_to=pad,
        )
        write_metric_table(result, txt, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    out = snakemake.output
    main(
        str(Path(snakemake.input.filelist).parent),
        snakemake.input.manifest,
        out.frames,
        {"native": (out.table, out.record), "padded": (out.padded_table, out.padded_record)},
        snakemake.params.metrics,
        snakemake.params.detectors,
        snakemake.params.pad_to,
        snakemake.params.batch_size,
        snakemake.params.cache_dir,
        snakemake.params.seed,
        snakemake.resources.get("gpu", 0),
        snakemake.threads,
    )
