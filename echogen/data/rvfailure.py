"""RV-failure dataset: gather converted clip parts into a manifest, z-score stats and splits.

Consumes the part folders of :func:`echogen.data.dicom.convert_dicoms` and the header index
of :func:`echogen.data.dicom.index_dicoms`. Splits are per patient (the split csv has one row
per patient), so every clip of a patient lands in the same split; this is checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.class_rows import CSV_LINE_OFFSET
from echogen.data.dicom import RV_CLASSES
from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_dir, write_json
from echogen.data.manifest import SPLITS, write_manifest
from echogen.data.parts import PART_QUARANTINE, read_part_index

log = logging.getLogger(__name__)

SPLIT_FILES = {"TRAIN": "train.csv", "VAL": "val.csv", "TEST": "test.csv"}
SPLIT_COLUMNS = ["FileName", "Path", "FlowPath", "patient_id", "class_name", "label"]


def clip_stats(paths: list[str]) -> dict:
    """Mean and standard deviation over every pixel of the given ``.npy`` clips (float64 sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    for path in tqdm(paths, desc="TRAIN clip mean/std", unit="clip"):
        clip = np.load(path).astype(np.float64)
        total += clip.sum()
        total_sq += np.square(clip).sum()
        count += clip.size
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean**2, 0.0)))  # max: float rounding near 0
    return {"mean": mean, "std": std, "pixels": count}


def split_counts(clips: pd.DataFrame) -> dict:
    """Clips, patients and clips per class, for each split."""
    by_split = {split: clips[clips["Split"] == split] for split in SPLITS}
    return {
        "clips": {split: len(rows) for split, rows in by_split.items()},
        "patients": {split: rows["patient_id"].nunique() for split, rows in by_split.items()},
        "classes": {
            split: {name: int((rows["class_name"] == name).sum()) for name in RV_CLASSES}
            for split, rows in by_split.items()
        },
    }


def ingest_rvfailure(
    part_dirs: list,
    index_csv: str | Path,
    manifest_out: str | Path,
    quarantine_out: str | Path,
    stats_out: str | Path,
    splits_dir: str | Path,
    positive_class: str = "severe",
) -> pd.DataFrame:
    """Gather converted RV-failure clips into the manifest, TRAIN statistics and split lists.

    Args:
        part_dirs: part folders written by :func:`~echogen.data.dicom.convert_dicoms`.
        index_csv: DICOM header index (gives each clip's FPS from the CineRate, if recorded).
        manifest_out: harmonised manifest (Dataset ``rvfailure``, class_id by
            :data:`~echogen.data.dicom.RV_CLASSES` order).
        quarantine_out: the parts' quarantines, merged.
        stats_out: JSON with ``mean``/``std`` of the grey clips over TRAIN clips only (for
            z-scoring at load time) and clip, patient and class counts per split.
        splits_dir: folder for ``train.csv``, ``val.csv``, ``test.csv`` (:data:`SPLIT_COLUMNS`;
            ``label`` is 1 for ``positive_class``, else 0).
        positive_class: class that counts as positive (the paper: severe vs rest).

    Returns:
        The manifest.
    """
    if positive_class not in RV_CLASSES:
        raise ValueError(f"positive_class must be one of {RV_CLASSES}, got {positive_class!r}")
    n_quarantined = Quarantine.merge([Path(p) / PART_QUARANTINE for p in part_dirs], quarantine_out)
    parts = [part for part in map(read_part_index, part_dirs) if len(part)]
    if not parts:
        raise DataError(
            index_csv, "no clip was converted", f"see the quarantined files in {quarantine_out}"
        )
    clips = pd.concat(parts, ignore_index=True).sort_values("FileName", kind="stable")
    index = pd.read_csv(index_csv, dtype={"FileName": str, "patient_id": str, "source": str})
    clips = clips.merge(index[["FileName", "FPS"]], on="FileName", how="left", validate="1:1")

    splits_per_patient = clips.groupby("patient_id")["Split"].nunique()
    mixed = splits_per_patient.index[splits_per_patient > 1].tolist()
    if mixed:
        raise ValueError(f"patients with clips in more than one split: {mixed}")

    manifest = pd.DataFrame(
        {
            "FileName": clips["FileName"],
            "Split": clips["Split"],
            "NumberOfFrames": clips["NumberOfFrames"],
            "FrameHeight": clips["FrameHeight"],
            "FrameWidth": clips["FrameWidth"],
            "FPS": clips["FPS"],
            "Dataset": "rvfailure",
            "Path": clips["Path"],
            "class_name": clips["class_name"],
            "class_id": clips["class_name"].map(RV_CLASSES.index),
            "patient_id": clips["patient_id"],
        }
    )
    manifest = write_manifest(manifest, manifest_out)

    train = clips[clips["Split"] == "TRAIN"]
    if train.empty:
        raise DataError(
            index_csv,
            "no TRAIN clip, so there are no z-score statistics",
            "put some patients in the train split of the split csv",
        )
    stats = clip_stats(train["Path"].tolist())
    stats["counts"] = split_counts(clips)
    stats["quarantined"] = n_quarantined
    stats["positive_class"] = positive_class
    write_json(stats_out, stats)

    lists = clips.assign(label=(clips["class_name"] == positive_class).astype(int))
    with atomic_dir(splits_dir) as tmp:
        for split, name in SPLIT_FILES.items():
            lists.loc[lists["Split"] == split, SPLIT_COLUMNS].to_csv(tmp / name, index=False)
    log.info(
        "RV failure: %s clips per split, TRAIN mean %.4f std %.4f, %d quarantined",
        stats["counts"]["clips"],
        stats["mean"],
        stats["std"],
        n_quarantined,
    )
    return manifest


def read_split_rows(splits: dict[str, str | Path]) -> pd.DataFrame:
    """The rows of the split csvs (``{"VAL": path, "TEST": path}``) with ``Split``,
    ``SourceCsv`` and ``SourceLine`` (the row's csv and line, which errors name)."""
    parts = []
    for split, path in splits.items():
        rows = pd.read_csv(path, dtype={"FileName": str, "patient_id": str})
        rows.attrs["source"] = str(path)
        missing = [c for c in ("FileName", "patient_id", "label") if c not in rows.columns]
        if missing:
            raise DataError(path, f"columns {missing} are missing",
                            "use the split csvs of the ingest_rvfailure rule")  # fmt: skip
        # each row keeps its own csv and line: errors about it name those, not the concatenation
        lines = np.arange(len(rows)) + CSV_LINE_OFFSET
        parts.append(rows.assign(Split=split, SourceCsv=str(path), SourceLine=lines))
    rows = pd.concat(parts, ignore_index=True)
    rows.attrs["source"] = ", ".join(str(p) for p in splits.values())
    return rows


def ef_stream_rows(manifest_csv: str | Path, flow_index_csv: str | Path | None,
                   min_frames: int = 1) -> pd.DataFrame:  # fmt: skip
    """EF-labelled videos with their flow, for the streams' EF pretraining: the manifest's
    FileName, Split, EF and Path (the video) joined with the flow index's Path (FlowPath);
    without a flow index (the grey stream) every video with an EF.

    Videos without a numeric EF, without flow, or shorter than ``min_frames`` (a clip's
    length) are left out before training starts (logged); none left is an error.
    """
    manifest = pd.read_csv(manifest_csv, dtype={"FileName": str})
    flow = pd.DataFrame({"FileName": manifest["FileName"], "Path": None})
    if flow_index_csv is not None:
        flow = pd.read_csv(flow_index_csv, dtype={"FileName": str})
    for table, path, columns in ((manifest, manifest_csv, ("FileName", "Split", "EF", "Path")),
                                 (flow, flow_index_csv, ("FileName", "Path"))):  # fmt: skip
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataError(path, f"columns {missing} are missing",
                            "use the workflow's manifest and flow index")  # fmt: skip
    short = pd.Series(False, index=manifest.index)
    if "NumberOfFrames" in manifest.columns:
        short = pd.to_numeric(manifest["NumberOfFrames"], errors="coerce") < min_frames
    if short.any():
        log.info("EF pretraining: %d videos have fewer than %d frames and are left out, e.g. %s",
                 int(short.sum()), min_frames, manifest.loc[short, "FileName"].iloc[0])  # fmt: skip
        manifest = manifest[~short]
    rows = manifest[["FileName", "Split", "EF", "Path"]].merge(
        flow[["FileName", "Path"]].rename(columns={"Path": "FlowPath"}), on="FileName"
    )
    if flow_index_csv is None:
        rows = rows.drop(columns="FlowPath")
    rows["EF"] = pd.to_numeric(rows["EF"], errors="coerce")
    kept = rows.dropna(subset=["EF"]).reset_index(drop=True)
    dropped = len(manifest) - len(kept)
    if dropped:
        log.info("EF pretraining: %d of %d videos lack EF or flow and are left out", dropped,
                 len(manifest))  # fmt: skip
    if kept.empty:
        raise DataError(
            manifest_csv,
            "no video has both an EF and flow",
            f"check the manifest's EF and NumberOfFrames, and the flow index {flow_index_csv}",
        )
    kept.attrs["source"] = str(manifest_csv)
    return kept
