"""EchoNet-Pediatric ingestion (one view folder, A4C or PSAX) → harmonised manifest.

Raw layout (``docs/data_contracts.md``): ``<root>/FileList.csv`` with ``FileName`` (with
``.avi``), ``EF, Sex, Age, Weight, Height, Split`` (integer fold 0-9), ``<root>/Videos/`` and
optionally ``<root>/VolumeTracings.csv`` (same line format as Dynamic). Following
EchoNet-Synthetic: the fold goes to ``Fold``; folds 0-7 → TRAIN, 8 → VAL, 9 → TEST; the
extension is stripped from ``FileName``; size, FPS and frame count are probed from the video.
Sex, Age, Weight and Height are not part of the manifest schema and are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from echogen.data.dynamic import (
    check_ef,
    read_filelist,
    tag_item,
    tracing_columns,
)
from echogen.data.errors import DataError, Quarantine
from echogen.data.manifest import normalise_split, write_manifest
from echogen.data.tracings import read_volume_tracings
from echogen.data.video import probe_video

PEDIATRIC_COLUMNS = ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]
# Fold label (as written in FileList.csv) -> split, EchoNet-Synthetic's convention.
FOLD_SPLITS = {str(fold): "TRAIN" for fold in range(8)} | {"8": "VAL", "9": "TEST"}


def ingest_pediatric(
    root: str | Path,
    view: str,
    manifest_out: str | Path,
    quarantine_out: str | Path,
    on_error: str = "raise",
    dataset: str | None = None,
) -> pd.DataFrame:
    """Check one EchoNet-Pediatric view folder and write its harmonised manifest.

    Args:
        root: the view folder (``EchoNet-Pediatric/A4C`` or ``/PSAX``); written into ``Path``
            as given (not resolved).
        view: view name, stored upper-case in ``View``.
        manifest_out: manifest csv to write.
        quarantine_out: quarantine csv to write (always, possibly empty).
        on_error: ``"raise"`` stops at the first bad row; ``"skip"`` quarantines it.
        dataset: value of the ``Dataset`` column; default ``f"ped_{view.lower()}"``.

    Returns:
        The harmonised manifest. Tracing columns are empty when ``VolumeTracings.csv`` is absent.
    """
    root = Path(root)
    dataset = dataset or f"ped_{view.lower()}"
    filelist, df = read_filelist(root, PEDIATRIC_COLUMNS)
    tracings_path = root / "VolumeTracings.csv"
    tracings = read_volume_tracings(tracings_path) if tracings_path.is_file() else None

    quarantine = Quarantine(on_error)
    records = []
    seen: set[str] = set()
    for i, row in enumerate(tqdm(df.to_dict("records"), desc=f"ingest {dataset}")):
        line = i + 2
        name = os.path.splitext(str(row["FileName"]))[0]
        with quarantine.guard(), tag_item(name):
            if name in seen:
                raise DataError(filelist, f"duplicate FileName {name!r}", "remove one", row=line)
            split = normalise_split(row["Split"], filelist, line, aliases=FOLD_SPLITS)
            ef = check_ef(row["EF"], filelist, line, name)
            video = root / "Videos" / str(row["FileName"])
            info = probe_video(video)
            record = {
                "FileName": name,
                "EF": ef,
                "FrameHeight": info.height,
                "FrameWidth": info.width,
                "FPS": info.fps,
                "NumberOfFrames": info.frames,
                "Split": split,
                "Dataset": dataset,
                "Path": str(video),
                "Fold": int(row["Split"]),
                "View": view.upper(),
            }
            if tracings is not None:
                record.update(tracing_columns(tracings, tracings_path, name, info.frames))
            records.append(record)
            seen.add(name)

    manifest = write_manifest(pd.DataFrame(records), manifest_out)
    quarantine.write(quarantine_out)
    return manifest
