"""The harmonised manifest: one schema for every video dataset.

It is EchoNet-Dynamic's ``FileList.csv`` (FileName without extension, EF, ESV, EDV,
FrameHeight, FrameWidth, FPS, NumberOfFrames, Split) followed by columns that some datasets
fill and others leave empty. Every manifest has every column, in this order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echogen.data.errors import DataError
from echogen.data.io import atomic_path

SPLITS = ("TRAIN", "VAL", "TEST")
FILELIST_COLUMNS = [
    "FileName",
    "EF",
    "ESV",
    "EDV",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "Split",
]
EXTRA_COLUMNS = [
    "Dataset",  # dataset id in config (dynamic, ped_a4c, ped_psax, cardiacnet, rvfailure)
    "Path",  # video (or clip) file, relative to the workflow directory
    "Fold",  # Pediatric's integer fold 0-9
    "View",  # A4C, PSAX, ...
    "class_name",  # CardiacNet / RV-failure class label
    "class_id",  # integer id fixed by config
    "patient_id",  # patient (CardiacNet folder id, REDCap id)
    "EDFrame",  # traced end-diastolic frame (larger disk volume)
    "ESFrame",  # traced end-systolic frame
    "TracingEF",  # EF from the tracings by the method of disks (%)
]
MANIFEST_COLUMNS = FILELIST_COLUMNS + EXTRA_COLUMNS
INT_COLUMNS = [
    "FrameHeight",
    "FrameWidth",
    "NumberOfFrames",
    "Fold",
    "class_id",
    "EDFrame",
    "ESFrame",
]


def harmonise(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly :data:`MANIFEST_COLUMNS` (missing ones empty), typed."""
    unknown = sorted(set(df.columns) - set(MANIFEST_COLUMNS))
    if unknown:
        raise ValueError(f"columns not in the manifest schema: {unknown}")
    out = df.reindex(columns=MANIFEST_COLUMNS)
    for col in INT_COLUMNS:
        out[col] = pd.array(out[col], dtype="Int64")
    for col in ["EF", "ESV", "EDV", "FPS", "TracingEF"]:
        out[col] = out[col].astype(float)
    for col in ["FileName", "Split", "Dataset", "Path", "View", "class_name", "patient_id"]:
        out[col] = out[col].astype("string")
    return out.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Harmonise, check and write a manifest atomically; returns the harmonised table."""
    df = harmonise(df)
    bad = ~df["Split"].isin(SPLITS)
    if bad.any():
        raise ValueError(
            f"manifest rows with split outside {SPLITS}: {df.loc[bad, 'FileName'].tolist()}"
        )
    duplicated = df["FileName"].duplicated()
    if duplicated.any():
        names = df.loc[duplicated, "FileName"].tolist()
        raise ValueError(f"duplicate FileName in manifest: {names}")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return df


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, with the schema's dtypes."""
    path = Path(path)
    # Only empty cells are missing: a video or patient named "NA" or "null" stays a name.
    df = pd.read_csv(
        path,
        dtype={"FileName": str, "patient_id": str},
        keep_default_na=False,
        na_values={col: [""] for col in MANIFEST_COLUMNS},
    )
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            path, f"not a harmonised manifest (missing {missing})", "re-run its ingestion rule"
        )
    return harmonise(df[MANIFEST_COLUMNS])


def chunk_rows(df: pd.DataFrame, chunk: int, n_chunks: int) -> pd.DataFrame:
    """Rows of chunk ``chunk`` out of ``n_chunks``: a strided slice, so chunks are balanced."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} out of range for {n_chunks} chunks")
    return df.iloc[np.arange(chunk, len(df), n_chunks)]


def normalise_split(
    value, file: str | Path, row: int, aliases: dict[str, str] | None = None
) -> str:
    """Map a split label (any case; ``valid``/``validation`` accepted) onto TRAIN/VAL/TEST."""
    aliases = aliases or {
        "TRAIN": "TRAIN",
        "VAL": "VAL",
        "VALID": "VAL",
        "VALIDATION": "VAL",
        "TEST": "TEST",
    }
    key = str(value).strip().upper()
    if key not in aliases:
        raise DataError(
            file,
            f"unknown split name {value!r}",
            f"use one of {sorted(set(aliases))} (case-insensitive)",
            row=row,
        )
    return aliases[key]


def row_fps(row: pd.Series, manifest_csv: str | Path, line: int) -> float:
    """The FPS of a manifest row, or a DataError naming the manifest row if it is not positive."""
    if pd.isna(row["FPS"]) or row["FPS"] <= 0:
        raise DataError(
            manifest_csv,
            f"video {row['FileName']} has no positive FPS ({row['FPS']})",
            "re-run the dataset's ingestion rule so FPS is filled from the video header",
            row=line,
            item=str(row["FileName"]),
        )
    return float(row["FPS"])
