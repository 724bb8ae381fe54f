"""Rule report_loss_curves: training loss curves of the VAE and every LVDM."""

from pathlib import Path
from typing import TYPE_CHECKING

from echogen.report import loss_curves
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(model_dirs: dict[str, str], png: str) -> None:
    loss_curves({label: Path(folder) / "log.csv" for label, folder in model_dirs.items()}, png)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(dict(snakemake.input.items()), snakemake.output.png)
