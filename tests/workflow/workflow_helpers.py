"""What the workflow tests share: the repository paths and a Snakemake runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
DEMO_CONFIG = REPO / "config" / "config.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"


def snakemake(*args, cwd=REPO, timeout=1200):
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def demo_config() -> dict:
    return yaml.safe_load(DEMO_CONFIG.read_text())


def paper_data_folders(root: Path) -> None:
    """The empty data folders config/paper.yaml points at (enough for a dry run)."""
    for folder in [
        "EchoNet-Dynamic",
        "EchoNet-Pediatric/A4C",
        "EchoNet-Pediatric/PSAX",
        "CardiacNet",
        "CAMUS",
        "rvfailure",
        "weights/clip-vit-large-patch14",
    ]:
        (root / "data" / folder).mkdir(parents=True)
