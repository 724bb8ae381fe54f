"""Resumable training state shared by every trainer (regressor, VAE, LVDM, privacy, classifier).

A trainer keeps its state in a folder that is NOT a workflow output (so Snakemake never
deletes it before a re-run): ``checkpoint_<step:08d>/`` folders holding accelerate's
``save_state`` files plus ``progress.json`` (the trainer's record: step, a fingerprint of
every setting that shapes the trajectory, running logs). A checkpoint is written under a
temporary name and renamed once complete, so a job killed mid-save leaves the previous
checkpoint intact; :func:`resume` removes such leftovers and refuses a checkpoint saved
with other settings.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pandas as pd
from accelerate import Accelerator

from echogen.data.io import atomic_path, write_json

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint_(\d{8})$")
PROGRESS_FILE = "progress.json"


def checkpoints(state_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders ``checkpoint_<step:08d>`` in ``state_dir``, oldest first."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return []
    found = [p for p in state_dir.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def save_checkpoint(
    accelerator: Accelerator, state_dir: str | Path, record: dict, limit: int
) -> None:
    """accelerate ``save_state`` into a temporary folder, renamed once complete; rotate.

    Args:
        accelerator: the run's accelerator (every process calls this).
        state_dir: the run's state folder.
        record: the trainer's JSON-able record; must hold ``step``. Saved as progress.json.
        limit: keep this many newest checkpoints.
    """
    state_dir = Path(state_dir)
    name = f"checkpoint_{record['step']:08d}"
    tmp = state_dir / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        # Made here, before the barrier: accelerate creates the folder on the main process
        # only, and every process writes its RNG state into it without waiting for that.
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    # Every process has written its part (its RNG state) before the folder is renamed.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / PROGRESS_FILE, record)
        final = state_dir / name
        if final.exists():  # re-saving the same step (a budget re-run): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(state_dir)[:-limit]:
            shutil.rmtree(old)
        log.info("saved %s", final)
    accelerator.wait_for_everyone()


def resume(accelerator: Accelerator, state_dir: str | Path, fingerprint: dict) -> dict | None:
    """Load the newest checkpoint of ``state_dir`` into the accelerator's registered objects.

    Args:
        accelerator: with the model, optimiser and every registered object already prepared.
        state_dir: the run's state folder (created if missing).
        fingerprint: the current run's settings that shape the trajectory; must equal the
            saved one.

    Returns:
        The saved record, or None when there is no checkpoint (a fresh start).

    Raises:
        ValueError: the checkpoint was saved with another fingerprint; the message names the
            differing keys and says how to start afresh.
    """
    state_dir = Path(state_dir)
    if accelerator.is_main_process:
        state_dir.mkdir(parents=True, exist_ok=True)
        for stale in state_dir.glob(".checkpoint_*.tmp"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    found = checkpoints(state_dir)
    if not found:
        return None
    record = json.loads((found[-1] / PROGRESS_FILE).read_text())
    fingerprint = jsonable(fingerprint)
    if record.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{found[-1]} was saved by a run with other settings "
            f"({diff(record.get('fingerprint') or {}, fingerprint)}); use another state folder "
            f"or delete {state_dir} to start afresh"
        )
    accelerator.load_state(str(found[-1]))
    log.info("resumed from %s (step %d)", found[-1], record["step"])
    return record


def jsonable(obj):
    """``obj`` as it reads back from JSON (tuples become lists), for exact comparisons."""
    return json.loads(json.dumps(obj, default=str))


def diff(stored: dict, current: dict) -> str:
    """The top-level keys whose values differ, e.g. ``train: saved {...}, now {...}``."""
    keys = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    return "; ".join(f"{k}: saved {stored.get(k)!r}, now {current.get(k)!r}" for k in keys)


def write_log(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Write a training log csv (one row per logged step or epoch) atomically."""
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)
