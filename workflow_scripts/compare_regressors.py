"""Rule compare_regressors: every regressor's real-split numbers in one table."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from echogen.pipelines.ef_prediction import write_regressor_comparison
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(records: list[str], table: str, runs: dict | None = None) -> None:
    named = {
        Path(p).stem.removeprefix("regressor_"): json.loads(Path(p).read_text()) for p in records
    }
    tiny = [name for name, run in (runs or {}).items() if run.get("preset") == "tiny"]
    write_regressor_comparison(named, table, plumbing=tiny)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(list(snakemake.input.records), snakemake.output.table, snakemake.params.runs)
