"""EchoNet ``VolumeTracings.csv``: parsing and the method of disks.

Format (EchoNet-Dynamic): header exactly ``FileName,X1,Y1,X2,Y2,Frame``; ``FileName``
includes the ``.avi`` extension; for each traced frame, the first row is the LV long axis
(apex to mitral annulus) and the following rows are chords perpendicular to it.
Coordinates are in pixels of the 112×112 video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echogen.data.errors import DataError

TRACING_HEADER = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


def disk_volume(lines: np.ndarray) -> float:
    """Method-of-disks volume (px³) of one traced frame.

    Args:
        lines: ``(1 + N, 4)`` rows of ``X1, Y1, X2, Y2``: the long axis then N chords.

    Returns:
        ``Σ π (dᵢ/2)² · L / N`` with L the long-axis length and dᵢ the chord lengths.
    """
    lines = np.asarray(lines, dtype=float)
    if lines.ndim != 2 or lines.shape[1] != 4 or len(lines) < 2:
        raise ValueError(f"need a long axis and at least one chord as (N, 4), got {lines.shape}")
    axis, chords = lines[0], lines[1:]
    length = np.hypot(axis[2] - axis[0], axis[3] - axis[1])
    diameters = np.hypot(chords[:, 2] - chords[:, 0], chords[:, 3] - chords[:, 1])
    return float(np.sum(np.pi * (diameters / 2) ** 2) * length / len(chords))


def read_volume_tracings(path: str | Path) -> dict[str, dict[int, np.ndarray]]:
    """Parse a tracings csv into ``{FileName without extension: {frame: lines (N, 4)}}``.

    Rows keep their file order within a frame (row 0 = long axis).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "VolumeTracings.csv not found", "check the dataset root")
    df = pd.read_csv(path)
    if list(df.columns) != TRACING_HEADER:
        raise DataError(
            path,
            f"header is {list(df.columns)}, expected {TRACING_HEADER}",
            "use EchoNet's VolumeTracings.csv unchanged",
            row=1,
        )
    coords = df[["X1", "Y1", "X2", "Y2"]]
    bad = coords.isna().any(axis=1) | df["Frame"].isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            path, "missing coordinate or frame value", "repair or drop that row", row=first + 2
        )
    tracings: dict[str, dict[int, np.ndarray]] = {}
    names = df["FileName"].astype(str).str.replace(r"\.avi$", "", regex=True)
    for (name, frame), rows in df.groupby([names, df["Frame"].astype(int)], sort=False):
        tracings.setdefault(name, {})[int(frame)] = rows[["X1", "Y1", "X2", "Y2"]].to_numpy(float)
    return tracings


def tracing_ef(frames: dict[int, np.ndarray]) -> tuple[int, int, float, float, float]:
    """ED/ES from a video's traced frames: the larger disk volume is ED.

    Returns:
        ``(ed_frame, es_frame, edv_px, esv_px, ef_percent)``.
    """
    if len(frames) < 2:
        raise ValueError(f"need two traced frames, got {len(frames)}")
    volumes = {frame: disk_volume(lines) for frame, lines in frames.items()}
    ed = max(volumes, key=volumes.get)
    es = min(volumes, key=volumes.get)
    edv, esv = volumes[ed], volumes[es]
    return ed, es, edv, esv, 100.0 * (edv - esv) / edv
