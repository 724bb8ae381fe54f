"""Rule compare_regressors: every regressor's real-split numbers in one table."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from echogen.pipelines.ef_prediction import write_regressor_comparison
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(records: list[str], table: str) -> None:
    named = {
        Path(p).stem.removeprefix("regressor_"): json.loads(Path(p).read_text()) for p in records
    }
    write_regressor_comparison(named, table)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(list(snakemake.input.records), snakemake.output.table)
