"""EchoNet-Dynamic ingestion: ``FileList.csv`` + ``VolumeTracings.csv`` + ``Videos/`` → manifest.

Raw layout (``docs/data_contracts.md``): ``<root>/FileList.csv`` with exactly the nine EchoNet
columns, ``<root>/VolumeTracings.csv`` (two traced frames per video) and
``<root>/Videos/<FileName>.avi``. Every video is probed (not decoded) and its traced frames
give ``EDFrame``/``ESFrame``/``TracingEF`` (the larger disk volume is ED).

The small helpers here (:func:`tag_item`, :func:`check_columns`, :func:`check_ef`,
:func:`check_videos_folder`, :func:`tracing_columns`) are shared with the Pediatric ingestion.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.errors import DataError, Quarantine
from echogen.data.manifest import FILELIST_COLUMNS, normalise_split, write_manifest
from echogen.data.tracings import read_volume_tracings, tracing_ef
from echogen.data.video import probe_video

VIEW = "A4C"


@contextmanager
def tag_item(name: str) -> Iterator[None]:
    """Attach the item name to a DataError raised inside (so the quarantine names the video)."""
    try:
        yield
    except DataError as err:
        err.item = err.item or name
        raise


def check_columns(df: pd.DataFrame, path: Path, expected: list[str]) -> None:
    """Raise a DataError naming ``path`` if the csv's columns are not exactly ``expected``.

    Args:
        df: the csv as read.
        path: the csv file (for the message).
        expected: the fixed column layout (order is not checked).
    """
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise DataError(
            path,
            f"missing column {missing[0]!r} (expected columns {expected})",
            "restore the column from the original download",
            row=1,
        )
    unknown = [c for c in df.columns if c not in expected]
    if unknown:
        raise DataError(
            path,
            f"unknown column(s) {unknown}; the layout is fixed to {expected}",
            "remove the extra column(s)",
            row=1,
        )


def check_ef(value, path: Path, row: int, name: str) -> float:
    """Return EF as float; raise a DataError if it is missing, not a number or outside [0, 100]."""
    ef = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.isna(ef) or not 0.0 <= ef <= 100.0:
        raise DataError(
            path,
            f"EF of {name!r} is {value!r}, expected a number in [0, 100]",
            "correct the EF value or remove the row",
            row=row,
            item=name,
        )
    return float(ef)


def check_videos_folder(videos: Path) -> None:
    """Raise the "empty dataset" DataError if ``videos`` is missing or holds no file."""
    if not videos.is_dir() or not any(videos.iterdir()):
        raise DataError(
            videos,
            "empty dataset: the Videos folder is missing or empty",
            "point the dataset root at the unpacked download (it holds Videos/)",
        )


def tracing_columns(
    tracings: dict[str, dict[int, np.ndarray]], tracings_path: Path, name: str, n_frames: int
) -> dict:
    """``EDFrame``, ``ESFrame`` and ``TracingEF`` of one video from its tracings.

    Args:
        tracings: output of :func:`~echogen.data.tracings.read_volume_tracings`.
        tracings_path: the tracings csv (for messages).
        name: FileName without extension.
        n_frames: frame count of the video (header); traced frames must lie in ``[0, n_frames)``.
    """
    frames = tracings.get(name, {})
    if len(frames) < 2:
        raise DataError(
            tracings_path,
            f"video {name!r} has {len(frames)} traced frame(s), need two (ED and ES)",
            "add the missing tracing, or set on_error: skip to leave the video out",
            item=name,
        )
    outside = sorted(f for f in frames if not 0 <= f < n_frames)
    if outside:
        raise DataError(
            tracings_path,
            f"traced frame(s) {outside} of {name!r} lie outside its {n_frames} frames",
            "correct the Frame column for this video",
            item=name,
        )
    no_chord = sorted(f for f, lines in frames.items() if len(lines) < 2)
    if no_chord:
        raise DataError(
            tracings_path,
            f"traced frame(s) {no_chord} of {name!r} have a long axis but no chord",
            "restore the chord rows for this video",
            item=name,
        )
    ed, es, _, _, ef = tracing_ef(frames)
    return {"EDFrame": ed, "ESFrame": es, "TracingEF": ef}


def read_filelist(root: Path, columns: list[str]) -> tuple[Path, pd.DataFrame]:
    """Read ``root/FileList.csv`` with exactly ``columns``, and check ``root/Videos`` is there.

    Raises a DataError naming the file for a missing FileList, wrong columns, no rows, or a
    missing or empty Videos folder.
    """
    filelist = root / "FileList.csv"
    if not filelist.is_file():
        raise DataError(filelist, "FileList.csv not found", "check the dataset root")
    df = pd.read_csv(filelist, dtype={"FileName": str, "Split": str})
    check_columns(df, filelist, columns)
    if df.empty:
        raise DataError(filelist, f"empty dataset: no rows under {root}", "check the download")
    check_videos_folder(root / "Videos")
    return filelist, df


def ingest_dynamic(
    root: str | Path,
    manifest_out: str | Path,
    quarantine_out: str | Path,
    on_error: str = "raise",
    dataset: str = "dynamic",
) -> pd.DataFrame:
    """Check an EchoNet-Dynamic download and write its harmonised manifest.

    Args:
        root: dataset folder holding ``FileList.csv``, ``VolumeTracings.csv`` and ``Videos/``;
            written into ``Path`` as given (not resolved).
        manifest_out: manifest csv to write.
        quarantine_out: quarantine csv to write (always, possibly empty).
        on_error: ``"raise"`` stops at the first bad row; ``"skip"`` quarantines it.
        dataset: value of the ``Dataset`` column.

    Returns:
        The harmonised manifest (FileList columns + Dataset, Path, View, EDFrame, ESFrame,
        TracingEF filled; the other schema columns empty).
    """
    root = Path(root)
    filelist, df = read_filelist(root, FILELIST_COLUMNS)
    tracings_path = root / "VolumeTracings.csv"
    tracings = read_volume_tracings(tracings_path)

    quarantine = Quarantine(on_error)
    records = []
    seen: set[str] = set()
    for i, row in enumerate(tqdm(df.to_dict("records"), desc=f"ingest {dataset}")):
        line = i + 2
        name = str(row["FileName"])
        with quarantine.guard(), tag_item(name):
            if name in seen:
                raise DataError(filelist, f"duplicate FileName {name!r}", "remove one", row=line)
            row["EF"] = check_ef(row["EF"], filelist, line, name)
            row["Split"] = normalise_split(row["Split"], filelist, line)
            video = root / "Videos" / f"{name}.avi"
            info = probe_video(video)
            if (row["FrameHeight"], row["FrameWidth"]) != (info.height, info.width):
                raise DataError(
                    filelist,
                    f"FrameHeight x FrameWidth {row['FrameHeight']}x{row['FrameWidth']} but "
                    f"{video} is {info.height}x{info.width}",
                    "correct the FileList row or the video",
                    row=line,
                )
            row.update(tracing_columns(tracings, tracings_path, name, info.frames))
            row.update(Dataset=dataset, Path=str(video), View=VIEW)
            records.append(row)
            seen.add(name)

    manifest = write_manifest(pd.DataFrame(records), manifest_out)
    quarantine.write(quarantine_out)
    return manifest
