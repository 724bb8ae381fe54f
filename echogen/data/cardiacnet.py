"""CardiacNet ingestion: NIfTI volumes → index with a patient split → MP4 parts → manifest.

Raw layout (``docs/data_contracts.md``):
``<root>/CardiacNet-{ASD,PAH}/{ASD,Non-ASD,PAH,Non-PAH}/<patient>/<patient>_image.nii[.gz]``,
each volume H×W×T. Three steps, as the workflow runs them:

1. :func:`index_cardiacnet` lists the volumes, fixes class ids from config and draws a
   patient-level split stratified by class.
2. :func:`convert_cardiacnet` (one job per chunk) converts volumes as EchoDream does: orient
   (:func:`orient_frames`), per-frame min-max to uint8, resize, MP4 at 32 fps.
3. :func:`ingest_cardiacnet` gathers the chunk parts into the harmonised manifest (no EF).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.filebasedimages import ImageFileError
from tqdm import tqdm

from echogen.data.dynamic import tag_item
from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_dir, atomic_path
from echogen.data.manifest import chunk_rows, write_manifest
from echogen.data.parts import gather_parts, write_part_index
from echogen.data.video import resize_frames, write_video

DATASET = "cardiacnet"
VIEW = "A4C"
INDEX_COLUMNS = ["FileName", "nifti", "class_name", "class_id", "patient_id", "Split"]
IMAGE_GLOBS = ("*_image.nii", "*_image.nii.gz")


def orient_frames(volume: np.ndarray) -> np.ndarray:
    """Turn a CardiacNet volume ``(H, W, T)`` into upright frames ``(T, W, H)``, as EchoDream.

    EchoDream applies ``np.rot90(volume, k=1, axes=(0, 1))`` (90° anti-clockwise) and then
    ``np.flip(..., axis=1)`` (left-right) to the whole volume. Per frame this is
    ``frames[t] = np.fliplr(np.rot90(volume[:, :, t], k=1))``, which equals
    ``volume[:, :, t].T[::-1, ::-1]`` (a transpose about the anti-diagonal). It is its own
    inverse up to the axis order: ``volume[:, :, t] = frames[t][::-1, ::-1].T``, which is how a
    phantom writes a volume that converts back to chosen frames.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected an (H, W, T) volume, got shape {volume.shape}")
    oriented = np.flip(np.rot90(volume, k=1, axes=(0, 1)), axis=1)  # (W, H, T)
    return np.ascontiguousarray(np.moveaxis(oriented, 2, 0))  # (T, W, H)


def minmax_uint8(frames: np.ndarray) -> np.ndarray:
    """Per-frame min-max scaling to ``uint8`` (truncated, as EchoDream); flat frames become 0."""
    frames = frames.astype(np.float64)
    low = frames.min(axis=(1, 2), keepdims=True)
    span = frames.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(255.0 * (frames - low), span, out=np.zeros_like(frames), where=span > 0)
    return scaled.astype(np.uint8)


def _split_counts(n: int, train: float, val: float) -> tuple[int, int, int]:
    """Numbers of train/val/test patients; each at least one when ``n >= 3``."""
    if n < 3:
        return n, 0, 0
    n_val = max(1, round(val * n))
    n_test = max(1, round((1.0 - train - val) * n))
    return n - n_val - n_test, n_val, n_test


def assign_splits(index: pd.DataFrame, split: dict) -> pd.Series:
    """Patient-level split stratified by class, deterministic from ``split["seed"]``.

    Args:
        index: rows with ``class_name``, ``class_id`` and ``patient_id``.
        split: ``{"train": fraction, "val": fraction, "seed": int}``; the rest is TEST.
            Each class is shuffled with its own generator ``default_rng([seed, class_id])`` so
            adding a class does not move the patients of the others. A class with fewer than
            three patients goes to TRAIN.

    Returns:
        TRAIN/VAL/TEST per row of ``index``.
    """
    if set(split) != {"train", "val", "seed"}:
        raise ValueError(f"split must have keys train, val, seed; got {sorted(split)}")
    if not (0 < split["train"] and 0 <= split["val"] and split["train"] + split["val"] < 1):
        raise ValueError(f"split fractions must be positive and sum below 1, got {split}")
    labels = pd.Series("", index=index.index, dtype="string")
    for (_, class_id), rows in index.groupby(["class_name", "class_id"], sort=True):
        patients = np.array(sorted(rows["patient_id"].unique()))
        rng = np.random.default_rng([split["seed"], int(class_id)])
        patients = patients[rng.permutation(len(patients))]
        n_train, n_val, _ = _split_counts(len(patients), split["train"], split["val"])
        by_patient = {p: "TRAIN" for p in patients[:n_train]}
        by_patient |= {p: "VAL" for p in patients[n_train : n_train + n_val]}
        by_patient |= {p: "TEST" for p in patients[n_train + n_val :]}
        labels[rows.index] = rows["patient_id"].map(by_patient)
    return labels


def index_cardiacnet(
    root: str | Path,
    class_map: dict[str, int],
    split: dict,
    index_out: str | Path,
    quarantine_out: str | Path,
    on_error: str = "raise",
) -> pd.DataFrame:
    """List CardiacNet volumes, attach class ids and a patient split, write the index csv.

    Args:
        root: folder holding ``CardiacNet-ASD/`` and ``CardiacNet-PAH/``.
        class_map: class folder name → class id (config ``datasets.cardiacnet.class_map``).
        split: ``{"train": 0.8, "val": 0.1, "seed": 42}``, see :func:`assign_splits`.
        index_out: index csv to write (columns :data:`INDEX_COLUMNS`).
        quarantine_out: quarantine csv to write (always, possibly empty).
        on_error: ``"raise"`` or ``"skip"`` for patient folders without exactly one volume.

    Returns:
        The index, sorted by FileName.
    """
    root = Path(root)
    class_dirs = sorted(d for d in root.glob("CardiacNet-*/*") if d.is_dir())
    if not class_dirs:
        raise DataError(
            root,
            "empty dataset: no CardiacNet-*/<class>/ folder",
            "point datasets.cardiacnet.root at the unpacked download",
        )
    unknown = [d for d in class_dirs if d.name not in class_map]
    if unknown:
        raise DataError(
            unknown[0],
            f"unknown class folder {unknown[0].name!r}; configured classes are {sorted(class_map)}",
            "add it to datasets.cardiacnet.class_map (or remove the folder)",
        )
    quarantine = Quarantine(on_error)
    records = []
    for class_dir in class_dirs:
        for patient_dir in sorted(p for p in class_dir.iterdir() if p.is_dir()):
            name = f"{class_dir.name}_{patient_dir.name}"
            with quarantine.guard(), tag_item(name):
                volumes = sorted(v for pattern in IMAGE_GLOBS for v in patient_dir.glob(pattern))
                if len(volumes) != 1:
                    raise DataError(
                        patient_dir,
                        f"expected one *_image.nii[.gz] volume, found {len(volumes)}",
                        "keep exactly one image volume per patient folder",
                    )
                records.append(
                    {
                        "FileName": name,
                        "nifti": str(volumes[0]),
                        "class_name": class_dir.name,
                        "class_id": class_map[class_dir.name],
                        "patient_id": patient_dir.name,
                    }
                )
    if not records:
        raise DataError(root, "empty dataset: no patient volume found", "check the download")
    index = pd.DataFrame(records).sort_values("FileName", kind="stable").reset_index(drop=True)
    index["Split"] = assign_splits(index, split)
    with atomic_path(index_out) as tmp:
        index[INDEX_COLUMNS].to_csv(tmp, index=False)
    quarantine.write(quarantine_out)
    return index[INDEX_COLUMNS]


def load_volume(path: str | Path) -> np.ndarray:
    """Load a NIfTI volume ``(H, W, T)``; raise a DataError if it cannot be read."""
    try:
        volume = np.asanyarray(nib.load(path).dataobj)
    except (ImageFileError, OSError, EOFError, ValueError) as err:
        raise DataError(path, f"nibabel cannot read the volume ({err})", "re-download it") from err
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise DataError(path, f"expected an H×W×T volume, got shape {volume.shape}", "re-export it")
    return volume


def convert_cardiacnet(
    index_csv: str | Path,
    chunk: int,
    n_chunks: int,
    part_dir: str | Path,
    fps: float = 32.0,
    size: int = 112,
    on_error: str = "raise",
) -> None:
    """Convert one chunk of the index to grey MP4s in a part folder (written atomically).

    Args:
        index_csv: index written by :func:`index_cardiacnet`.
        chunk: this job's chunk number, ``0 <= chunk < n_chunks`` (strided rows).
        n_chunks: number of chunk jobs.
        part_dir: part folder: ``<FileName>.mp4`` files, ``index.csv`` (manifest columns, Path as
            ``part_dir/<FileName>.mp4`` as given) and ``quarantine.csv``.
        fps: frame rate written into the MP4 (EchoDream: 32).
        size: output frame side in pixels (EchoDream: 112). Resizing uses
            :func:`~echogen.data.video.resize_frames` (area interpolation when shrinking, where
            EchoDream used cv2's default bilinear).
        on_error: ``"raise"`` or ``"skip"`` for unreadable volumes.
    """
    index = pd.read_csv(index_csv, dtype={"FileName": str, "patient_id": str})
    rows = chunk_rows(index, chunk, n_chunks)
    part_dir = Path(part_dir)
    quarantine = Quarantine(on_error)
    records = []
    with atomic_dir(part_dir) as tmp:
        for row in tqdm(rows.to_dict("records"), desc=f"convert cardiacnet chunk {chunk}"):
            with quarantine.guard(), tag_item(row["FileName"]):
                frames = orient_frames(load_volume(row["nifti"]))
                frames = resize_frames(minmax_uint8(frames), size)
                write_video(tmp / f"{row['FileName']}.mp4", frames, fps)
                records.append(
                    {
                        "FileName": row["FileName"],
                        "Path": str(part_dir / f"{row['FileName']}.mp4"),
                        "FrameHeight": size,
                        "FrameWidth": size,
                        "FPS": fps,
                        "NumberOfFrames": len(frames),
                        "Split": row["Split"],
                        "Dataset": DATASET,
                        "View": VIEW,
                        "class_name": row["class_name"],
                        "class_id": row["class_id"],
                        "patient_id": row["patient_id"],
                    }
                )
        write_part_index(tmp, records, quarantine)


def ingest_cardiacnet(
    part_dirs: list[str | Path], manifest_out: str | Path, quarantine_out: str | Path
) -> pd.DataFrame:
    """Gather converted parts into the harmonised CardiacNet manifest (EF empty).

    Args:
        part_dirs: part folders written by :func:`convert_cardiacnet`.
        manifest_out: manifest csv to write.
        quarantine_out: merged quarantine csv to write (always, possibly empty).

    Returns:
        The harmonised manifest, sorted by FileName.
    """
    with tempfile.TemporaryDirectory() as tmp:
        index = gather_parts(part_dirs, Path(tmp) / "index.csv", quarantine_out)
    manifest = write_manifest(index, manifest_out)
    return manifest
