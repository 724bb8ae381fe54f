"""Labelled rows of video classification datasets: real videos of a manifest, synthetic
videos of a samples folder, or both (EchoDream's CardiacNet protocol: train on real,
synthetic or real+synthetic TRAIN videos, validate and test on real ones).

:func:`training_rows` builds one training source's rows plus the real VAL rows;
:func:`real_test_rows` the real TEST rows. Every bad cell is a DataError naming the csv, its
line and the fix. Classifiers train on them (``echogen.training.classifier``) and predict
on them (``echogen.pipelines.classification``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echogen.data.errors import DataError
from echogen.data.manifest import SPLITS

SOURCES = ("real", "synthetic", "real+synthetic")
REAL_COLUMNS = ("FileName", "Path", "FPS", "Split", "class_id", "class_name")
SYNTHETIC_COLUMNS = ("FileName", "FPS", "class_id", "class_name")
ROW_COLUMNS = ["FileName", "Path", "FPS", "Split", "class_id", "class_name", "label", "source"]
FILELIST = "FileList.csv"
VIDEOS = "Videos"
SYNTHETIC_SUFFIX = ".mp4"
# csv line of a table row = its 0-based position + header line + 1.
CSV_LINE_OFFSET = 2


def _read_table(path: Path, required: tuple[str, ...], fix: str) -> pd.DataFrame:
    """A csv with string names (empty cells missing) and the required columns, else DataError."""
    if not path.is_file():
        raise DataError(path, "file does not exist", fix)
    table = pd.read_csv(
        path,
        dtype={"FileName": str, "Path": str, "Split": str, "class_name": str},
        keep_default_na=False,
        na_values=[""],
    )
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(path, f"columns {missing} are missing (need {list(required)})", fix, row=1)
    return table


def _labelled(
    table: pd.DataFrame, path: Path, classes: list[int], kind: str
) -> tuple[pd.DataFrame, dict[int, str]]:
    """Rows of ``classes`` with their label; the class names seen; DataError on a bad cell."""
    names: dict[int, str] = {}
    keep = []
    for position, row in enumerate(table.to_dict("records")):
        line = position + CSV_LINE_OFFSET
        name = str(row["FileName"])
        value = pd.to_numeric(pd.Series([row["class_id"]]), errors="coerce").iloc[0]
        if pd.isna(value) or value != round(value):
            raise DataError(
                path,
                f"{kind} video {name} has class_id {row['class_id']!r}, not an integer",
                "fill in the integer class id fixed by config",
                row=line,
                item=name,
            )
        class_id, class_name = int(value), row["class_name"]
        if pd.isna(class_name):
            raise DataError(
                path,
                f"{kind} video {name} has no class_name",
                "fill in the class name",
                row=line,
                item=name,
            )
        if names.setdefault(class_id, str(class_name)) != str(class_name):
            raise DataError(
                path,
                f"class_id {class_id} is named both {names[class_id]!r} and {class_name!r}",
                "use one name per class id",
                row=line,
                item=name,
            )
        if class_id in classes:
            keep.append(position)
    rows = table.iloc[keep].copy()
    rows["class_id"] = rows["class_id"].astype(float).astype(int)
    rows["label"] = [classes.index(c) for c in rows["class_id"]]
    rows["_line"] = np.asarray(keep, dtype=int) + CSV_LINE_OFFSET
    return rows, names


def _check_videos(rows: pd.DataFrame, path: Path, root: Path, kind: str, fix: str) -> None:
    """DataError for the first row whose FPS is not positive or whose video file is missing."""
    fps = pd.to_numeric(rows["FPS"], errors="coerce")
    for position, row in enumerate(rows.to_dict("records")):
        name, line = str(row["FileName"]), int(row["_line"])
        if not fps.iloc[position] > 0:
            raise DataError(
                path,
                f"{kind} video {name} has no positive FPS ({row['FPS']!r})",
                "fill in the frame rate the video was written at",
                row=line,
                item=name,
            )
        if pd.isna(row["Path"]) or not (root / str(row["Path"])).is_file():
            raise DataError(
                path,
                f"{kind} video {name} is missing ({root / str(row['Path'])})",
                fix,
                row=line,
                item=name,
            )


def _check_classes(classes: list[int]) -> list[int]:
    classes = [int(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must list at least two distinct class ids, got {classes}")
    return classes


def _real_rows(
    manifest: str | Path, classes: list[int], splits: tuple[str, ...], root: str | Path
) -> pd.DataFrame:
    manifest = Path(manifest)
    fix = "use the harmonised manifest written by the dataset's ingestion rule (CardiacNet)"
    table = _read_table(manifest, REAL_COLUMNS, fix)
    for position, split in enumerate(table["Split"]):
        if split not in SPLITS:
            raise DataError(
                manifest,
                f"video {table['FileName'].iloc[position]} has split {split!r}",
                f"use one of {list(SPLITS)}",
                row=position + CSV_LINE_OFFSET,
            )
    rows, names = _labelled(table, manifest, classes, "real")
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise DataError(
            manifest,
            f"classes {unknown} have no videos (its classes are {sorted(names)})",
            "choose class ids the manifest has (CardiacNet: 0 ASD, 1 Non-ASD, 2 Non-PAH, 3 PAH)",
        )
    rows = rows[rows["Split"].isin(splits)]
    _check_videos(rows, manifest, Path(root), "real", "re-run the dataset's ingestion rule")
    rows["source"] = "real"
    return rows


def _synthetic_rows(samples_dir: str | Path, classes: list[int], root: str | Path) -> pd.DataFrame:
    samples_dir = Path(samples_dir)
    filelist = samples_dir / FILELIST
    fix = "point at a samples folder written by the sampling rule (FileList.csv + Videos/)"
    table = _read_table(Path(root) / filelist, SYNTHETIC_COLUMNS, fix)
    rows, _ = _labelled(table, filelist, classes, "synthetic")
    if rows.empty:
        raise DataError(
            filelist,
            f"no synthetic videos of classes {classes}",
            "sample videos of these classes or choose other classes",
        )
    rows["Path"] = [str(samples_dir / VIDEOS / f"{n}{SYNTHETIC_SUFFIX}") for n in rows["FileName"]]
    _check_videos(rows, filelist, Path(root), "synthetic", "re-run the sampling rule")
    rows["Split"] = "TRAIN"  # every synthetic video trains; validation and test stay real
    rows["source"] = "synthetic"
    return rows


def _finish(parts: list[pd.DataFrame], source: str) -> pd.DataFrame:
    rows = pd.concat(parts, ignore_index=True)[ROW_COLUMNS]
    rows["FPS"] = rows["FPS"].astype(float)
    rows.attrs["source"] = source
    return rows


def training_rows(
    source: str,
    manifest: str | Path,
    samples_dir: str | Path | None,
    classes: list[int],
    root: str | Path = ".",
) -> pd.DataFrame:
    """The labelled training rows of one source, plus the real VAL rows for validation.

    Args:
        source: ``"real"`` (the manifest's TRAIN rows), ``"synthetic"`` (every video of the
            samples folder) or ``"real+synthetic"`` (both).
        manifest: harmonised manifest csv with FileName, Path, FPS, Split, class_id,
            class_name (CardiacNet's).
        samples_dir: samples folder with ``FileList.csv`` (FileName without extension, FPS,
            class_id, class_name) and ``Videos/<FileName>.mp4``; relative to ``root`` like the
            manifest's ``Path`` (or absolute); ignored for ``"real"``.
        classes: class ids to classify; ``label`` is the position of a row's class id in this
            list, rows of other classes are dropped (EchoDream: ``[0, 1]`` ASD, ``[2, 3]`` PAH).
        root: folder the ``Path`` column (and ``samples_dir``) are relative to.

    Returns:
        Columns FileName, Path, FPS, Split (TRAIN for training rows, VAL for the real
        validation rows; synthetic rows are all TRAIN whatever their FileList says),
        class_id, class_name, label, source (``"real"`` | ``"synthetic"``).

    Raises:
        DataError: a missing file or column, a class id that is not an integer or has two
            names, a class of ``classes`` absent from the manifest, a missing video or FPS
            (naming the file, row and fix).
        ValueError: unknown source, fewer than two classes, no samples_dir for a synthetic
            source.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    classes = _check_classes(classes)
    real_splits = ("VAL",) if source == "synthetic" else ("TRAIN", "VAL")
    parts = [_real_rows(manifest, classes, real_splits, root)]
    if source != "real":
        if samples_dir is None:
            raise ValueError(f"source {source!r} needs samples_dir (a folder of generated videos)")
        parts.append(_synthetic_rows(samples_dir, classes, root))
    rows = _finish(parts, str(manifest))
    for split in ("TRAIN", "VAL"):
        if not (rows["Split"] == split).any():
            raise DataError(
                manifest, f"no {split} videos of classes {classes}", "check the split and classes"
            )
    return rows


def real_test_rows(
    manifest: str | Path, classes: list[int], root: str | Path = "."
) -> pd.DataFrame:
    """The real TEST rows of ``classes``, labelled as :func:`training_rows` labels them.

    Returns:
        The columns of :func:`training_rows`, Split all TEST, source ``"real"``.
    """
    classes = _check_classes(classes)
    rows = _finish([_real_rows(manifest, classes, ("TEST",), root)], str(manifest))
    if rows.empty:
        raise DataError(manifest, f"no TEST videos of classes {classes}", "check the split")
    return rows
