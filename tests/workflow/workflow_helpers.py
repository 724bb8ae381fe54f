"""What the workflow tests share: the repository paths and a Snakemake runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
DEMO_CONFIG = REPO / "config" / "config.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"


# The SLURM executor plugin runs `scontrol show config` whenever Snakemake starts. On a
# machine with SLURM's client tools but no running controller (e.g. after `pytest -m slurm`)
# that call waits 9 s; these tiers never talk to a controller, so a stub scontrol that fails
# at once comes first on their PATH.
NO_SLURM = Path(__file__).parent / "no_slurm"


def runner_env(**extra) -> dict:
    """The environment of the Snakemake runs of the fast and e2e tiers."""
    env = {**os.environ, **extra}
    env["PATH"] = os.pathsep.join([str(NO_SLURM), env.get("PATH", "")])
    return env


def snakemake(*args, cwd=REPO, timeout=1200):
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=runner_env(),
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
