"""Chunked per-video work: each chunk job writes a *part* folder, one gather step indexes them.

A part folder holds the chunk's files, an ``index.csv`` (one row per item written, with a
``Path`` column relative to the workflow directory) and a ``quarantine.csv`` (items skipped
for bad input). :func:`gather_parts` concatenates the parts' indexes and quarantines, so
consumers read one index and never list folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from echogen.data.errors import Quarantine
from echogen.data.io import atomic_path

PART_INDEX = "index.csv"
PART_QUARANTINE = "quarantine.csv"


def write_part_index(part_dir: str | Path, records: Sequence[dict], quarantine: Quarantine) -> None:
    """Write a part's ``index.csv`` and ``quarantine.csv``."""
    part_dir = Path(part_dir)
    with atomic_path(part_dir / PART_INDEX) as tmp:
        pd.DataFrame(list(records)).to_csv(tmp, index=False)
    quarantine.write(part_dir / PART_QUARANTINE)


def read_part_index(part_dir: str | Path) -> pd.DataFrame:
    path = Path(part_dir) / PART_INDEX
    try:
        return pd.read_csv(path, dtype={"FileName": str, "patient_id": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def gather_parts(
    part_dirs: Sequence[str | Path], index_out: str | Path, quarantine_out: str | Path
) -> pd.DataFrame:
    """Concatenate the parts' indexes into ``index_out`` and quarantines into ``quarantine_out``."""
    frames = [read_part_index(p) for p in part_dirs]
    index = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame()
    )
    if "FileName" in index.columns:
        index = index.sort_values("FileName", kind="stable").reset_index(drop=True)
    with atomic_path(index_out) as tmp:
        index.to_csv(tmp, index=False)
    Quarantine.merge([Path(p) / PART_QUARANTINE for p in part_dirs], quarantine_out)
    return index
