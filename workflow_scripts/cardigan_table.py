"""Rule cardigan_table: cardiGAN's table over every SPADE model's TEST-mask images."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from echogen.pipelines.cardigan import write_cardigan_table
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(models: list[str], plumbing: list[bool], scores: list[str], generation: list[str],
         txt: str, record: str) -> None:  # fmt: skip
    entries = {}
    for name, tiny, score, metrics in zip(models, plumbing, scores, generation, strict=True):
        metrics = json.loads(Path(metrics).read_text())
        entries[name] = {
            "scores": pd.read_csv(score, dtype={"FileName": str, "Source": str}),
            "generation": metrics,
            "plumbing": tiny or not all(metrics.get("verified", {}).values()),
        }
    write_cardigan_table(entries, txt, record)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        list(snakemake.params.models),
        list(snakemake.params.plumbing),
        list(snakemake.input.scores),
        list(snakemake.input.generation),
        snakemake.output.table,
        snakemake.output.record,
    )
