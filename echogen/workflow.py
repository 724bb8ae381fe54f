"""Helpers shared by the workflow scripts: logging into the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_path: str | Path) -> None:
    """Send logging records and stderr (tqdm progress bars, warnings) to the rule's log file.

    Also echoes records to the original stderr, so a local run shows them in the terminal.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    console = sys.__stderr__
    sys.stderr = stream
    handlers = [logging.StreamHandler(stream), logging.StreamHandler(console)]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
