"""Rule cascade_table: EchoDiffusion's table of one cascade (every task, mean and best of N)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from echogen.pipelines.cascade_scoring import cascade_report, write_cascade_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(
    model: str,
    modes: list[str],
    scores: list[str],
    generation: list[str],
    native: list[str],
    samples: list[str],
    txt: str,
    record: str,
    tiny: bool,
    regressor: str,
) -> None:
    tasks, plumbing = {}, tiny
    for mode, score, padded, unpadded, folder in zip(
        modes, scores, generation, native, samples, strict=True
    ):
        metrics = json.loads(Path(padded).read_text())
        plumbing = plumbing or not all(metrics.get("verified", {}).values())
        tasks[mode] = {
            "report": cascade_report(pd.read_csv(score, dtype={"FileName": str, "Source": str})),
            "generation": metrics,
            "native": json.loads(Path(unpadded).read_text()),
            "sampling": json.loads((Path(folder) / "sampling.json").read_text()),
        }
    write_cascade_table(model, tasks, txt, record, plumbing, regressor)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.wildcards.model,
        snakemake.params.modes,
        list(snakemake.input.scores),
        list(snakemake.input.generation),
        list(snakemake.input.native),
        [str(Path(f).parent) for f in snakemake.input.filelists],
        snakemake.output.table,
        snakemake.output.record,
        snakemake.params.tiny,
        snakemake.params.regressor,
    )
