"""CAMUS (cardiGAN's ``camus05_256.hdf5``) → image/label PNGs of chosen views and phases + index.

cardiGAN trains on the 4CH end-diastolic frames (its ``prepare_dataset_v2.py``), the default
here; its first ``prepare_dataset.py`` exported both views at both phases, which
``views=("2CH", "4CH"), phases=("ED", "ES")`` reproduces.

Raw layout (``docs/data_contracts.md``): ``<root>/camus05_256.hdf5`` with groups
``{train,valid,test}/patientNNNN/{2CH,4CH}/{im,gt}``, each dataset ``(2, H, W)`` (or
``(2, H, W, 1)``), index 0 = ED, 1 = ES. Images are uint8, or floats in [0, 1] that are
scaled by 255 as cardiGAN's ``prepare_dataset.py`` does (it reads ``im[t, :, :, :]`` and
writes ``255 * image``). Labels are integers: 0 background, 1 LV cavity, 2 myocardium, 3 left
atrium.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.dynamic import tag_item
from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_dir

HDF5_NAME = "camus05_256.hdf5"
STRUCTURES = {1: "lv_cavity", 2: "myocardium", 3: "left_atrium"}
SPLIT_GROUPS = ("train", "valid", "test")
N_LABELS = 4
INDEX_COLUMNS = ["patient", "split", "image", "label", "height", "width", "view", "phase"]
VIEWS = ("2CH", "4CH")
PHASES = {"ED": 0, "ES": 1}  # index of the phase in each (2, H, W) dataset


def _read_frame(
    h5: h5py.File, path: str, file: Path, phase: str, label: bool = False
) -> np.ndarray:
    """The ``phase`` frame ``(H, W)`` of dataset ``path``: an image as uint8 (floats in
    [0, 1] scaled by 255), a label as its integers. A DataError names ``file:path`` if bad."""
    where = f"{file}:/{path}"
    if path not in h5 or not isinstance(h5[path], h5py.Dataset):
        raise DataError(where, "dataset is missing", "re-create the hdf5 file")
    data = h5[path]
    shape = data.shape[:-1] if data.ndim == 4 and data.shape[-1] == 1 else data.shape
    kinds = "iu" if label else "iuf"
    if len(shape) != 3 or shape[0] != 2 or data.dtype.kind not in kinds or 0 in shape:
        wanted = "integers" if label else "uint8, or floats in [0, 1],"
        raise DataError(
            where,
            f"expected {wanted} of shape (2, H, W) or (2, H, W, 1), got {data.dtype} {data.shape}",
            "re-create the hdf5 file",
        )
    frame = np.asarray(data[PHASES[phase]]).reshape(shape[1:])
    if label or frame.dtype == np.uint8:
        return frame
    if frame.dtype.kind == "f":
        if not np.isfinite(frame).all() or frame.min() < 0 or frame.max() > 1:
            raise DataError(
                where,
                f"float image values outside [0, 1] (min {frame.min()}, max {frame.max()})",
                "store images as uint8 or in [0, 1]",
            )
        return np.round(frame * 255.0).astype(np.uint8)
    if frame.min() < 0 or frame.max() > 255:
        raise DataError(
            where,
            f"image values outside 0..255 (min {frame.min()}, max {frame.max()})",
            "store images as uint8",
        )
    return frame.astype(np.uint8)


def prepare_camus(
    root: str | Path,
    out_dir: str | Path,
    on_error: str = "raise",
    views: tuple | list = ("4CH",),
    phases: tuple | list = ("ED",),
) -> pd.DataFrame:
    """Write each patient's image and label of every chosen view and phase as PNGs, plus
    ``index.csv``.

    An item is named by its patient (``patient0001``) when one view at one phase is
    exported, else ``<patient>_<view>_<phase>`` (``patient0001_2CH_ES``); its ``patient``
    column holds that name, which every later step uses as the item's identity.

    Output (written atomically as one folder): ``out_dir/{split}/image/<item>.png`` (grey,
    full size), ``out_dir/{split}/label/<item>.png`` (values 0-3 kept as they are),
    ``out_dir/index.csv`` (:data:`INDEX_COLUMNS`; paths under ``out_dir`` as given) and
    ``out_dir/quarantine.csv`` (always, possibly empty). ``split`` keeps the hdf5 group name.

    Args:
        root: folder holding ``camus05_256.hdf5``.
        out_dir: output folder (replaced as a whole on success).
        on_error: ``"raise"`` or ``"skip"`` for patients with a bad dataset.
        views: the views exported, of :data:`VIEWS` (cardiGAN: 4CH).
        phases: the phases exported, of ``ED`` and ``ES`` (cardiGAN: ED).

    Returns:
        The index: splits in the order train, valid, test; patients sorted within each, then
        views and phases in the order given.
    """
    views, phases = list(views), list(phases)
    for name, chosen, allowed in (("views", views, VIEWS), ("phases", phases, tuple(PHASES))):
        if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(allowed):
            raise ValueError(f"datasets.camus.{name} must be distinct values of "
                             f"{list(allowed)}, got {chosen}")  # fmt: skip
    single = len(views) == 1 and len(phases) == 1
    file = Path(root) / HDF5_NAME
    out_dir = Path(out_dir)
    if not file.is_file():
        raise DataError(file, "CAMUS hdf5 file not found", "check datasets.camus.root")
    quarantine = Quarantine(on_error)
    records = []
    with h5py.File(file, "r") as h5, atomic_dir(out_dir) as tmp:
        unknown = [g for g in h5 if g not in SPLIT_GROUPS]
        if unknown:
            raise DataError(
                f"{file}:/{unknown[0]}",
                f"unknown split group {unknown[0]!r}; expected {list(SPLIT_GROUPS)}",
                "rename or remove the group",
            )
        missing = [g for g in SPLIT_GROUPS if g not in h5 or not len(h5[g])]
        if len(missing) == len(SPLIT_GROUPS):
            raise DataError(file, "empty dataset: no patient group", "check the download")
        if missing:
            raise DataError(
                file,
                f"no patient in split group(s) {missing}; cardiGAN trains on train, validates "
                "on valid and scores on test",
                f"re-create the hdf5 with patients in each of {list(SPLIT_GROUPS)}",
            )
        items = [
            (split, patient, view, phase)
            for split in SPLIT_GROUPS
            for patient in sorted(h5[split])
            for view in views
            for phase in phases
        ]
        for split, patient, view, phase in tqdm(items, desc="prepare camus"):
            item = patient if single else f"{patient}_{view}_{phase}"
            with quarantine.guard(), tag_item(item):
                image = _read_frame(h5, f"{split}/{patient}/{view}/im", file, phase)
                label = _read_frame(h5, f"{split}/{patient}/{view}/gt", file, phase, label=True)
                if label.shape != image.shape:
                    raise DataError(
                        f"{file}:/{split}/{patient}/{view}/gt",
                        f"label shape {label.shape} differs from image shape {image.shape}",
                        "re-create the hdf5 file",
                    )
                bad = np.setdiff1d(np.unique(label), np.arange(N_LABELS))
                if bad.size:
                    raise DataError(
                        f"{file}:/{split}/{patient}/{view}/gt",
                        f"label values {bad.tolist()} outside 0..{N_LABELS - 1}",
                        "re-create the labels (0 background, 1 LV, 2 myocardium, 3 atrium)",
                    )
                label = label.astype(np.uint8)
                rel = {kind: Path(split) / kind / f"{item}.png" for kind in ("image", "label")}
                for kind, array in (("image", image), ("label", label)):
                    (tmp / rel[kind]).parent.mkdir(parents=True, exist_ok=True)
                    if not cv2.imwrite(str(tmp / rel[kind]), array):
                        raise RuntimeError(f"OpenCV cannot write {tmp / rel[kind]}")
                records.append(
                    {
                        "patient": item,
                        "split": split,
                        "image": str(out_dir / rel["image"]),
                        "label": str(out_dir / rel["label"]),
                        "height": image.shape[0],
                        "width": image.shape[1],
                        "view": view,
                        "phase": phase,
                    }
                )
        index = pd.DataFrame(records, columns=INDEX_COLUMNS)
        index.to_csv(tmp / "index.csv", index=False)
        quarantine.write(tmp / "quarantine.csv")
    return index


def read_camus_index(index_csv: str | Path, split: str) -> pd.DataFrame:
    """The rows of ``split`` (``train``, ``valid``, ``test``) of a CAMUS ``index.csv``.

    Raises:
        DataError: the file, a column or the split is missing (naming them and the fix).
    """
    index_csv = Path(index_csv)
    if not index_csv.is_file():
        raise DataError(index_csv, "CAMUS index not found", "run the prepare_camus rule")
    rows = pd.read_csv(index_csv, dtype={"patient": str, "split": str})
    missing = [c for c in INDEX_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(index_csv, f"missing column {missing[0]!r}", "re-run prepare_camus")
    unknown = sorted(set(rows["split"]) - set(SPLIT_GROUPS))
    if unknown:
        raise DataError(index_csv, f"unknown split {unknown[0]!r}; expected {list(SPLIT_GROUPS)}",
                        "re-run prepare_camus")  # fmt: skip
    rows = rows[rows["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise DataError(index_csv, f"no patient in split {split!r}", "check the CAMUS download")
    return rows


def load_pair(row: pd.Series, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A patient's grey image (float32 in [0, 1]) and label map (uint8 0-3), ``size x size``
    (image: area interpolation; labels: nearest). A row with ``resized_mask`` (a generated
    image of a full-size mask) first resizes the mask to the image.

    Raises:
        DataError: a file missing or unreadable, sizes differing, or a label outside 0-3,
            naming the patient and the fix.
    """
    arrays = {}
    for kind in ("image", "label"):
        array = cv2.imread(str(row[kind]), cv2.IMREAD_GRAYSCALE)
        if array is None:
            raise DataError(row[kind], f"{kind} of patient {row['patient']} missing or unreadable",
                            "re-run prepare_camus", item=row["patient"])  # fmt: skip
        arrays[kind] = array
    image, label = arrays["image"], arrays["label"]
    if row.get("resized_mask", False) and image.shape != label.shape:
        # a generated image (the generator's size) of a full-size mask
        label = cv2.resize(label, image.shape[::-1], interpolation=cv2.INTER_NEAREST)
    if image.shape != label.shape:
        raise DataError(row["label"], f"label {label.shape} and image {image.shape} of patient "
                        f"{row['patient']} differ in size", "re-run prepare_camus",
                        item=row["patient"])  # fmt: skip
    bad = np.setdiff1d(np.unique(label), np.arange(N_LABELS))
    if bad.size:
        raise DataError(row["label"], f"label values {bad.tolist()} of patient {row['patient']} "
                        f"outside 0..{N_LABELS - 1}", "re-create the labels (0 background, 1 LV, "
                        "2 myocardium, 3 atrium)", item=row["patient"])  # fmt: skip
    if image.shape != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        label = cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)
    return image.astype(np.float32) / 255.0, label


class CamusPairSet:
    """``(image, label)`` pairs of an index's rows: images ``(C, size, size)`` float32 in
    ``[-1, 1]`` (grey repeated to ``channels``), labels ``(size, size)`` int64; loaded once."""

    def __init__(self, rows: pd.DataFrame, size: int, channels: int = 1):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.rows = rows.reset_index(drop=True)
        self.patients = self.rows["patient"].tolist()
        pairs = [load_pair(row, size) for _, row in self.rows.iterrows()]
        self.images = np.stack([np.repeat(p[0][None], channels, 0) * 2 - 1 for p in pairs])
        self.labels = np.stack([p[1] for p in pairs]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


# The CAMUS groups' names for the synthetic-dataset contract's splits.
CONTRACT_SPLITS = {"train": "TRAIN", "valid": "VAL", "test": "TEST"}


def pair_rows(source: str | Path, split: str) -> pd.DataFrame:
    """Image/label rows (``patient``, ``image``, ``label``) of one split of ``source``: a
    CAMUS ``index.csv``, or a synthetic image dataset folder (``FileList.csv`` whose ``Mask``
    column holds each sample's input mask; the image is ``frames/<FileName>/0000.jpg``).

    Raises:
        DataError: a missing file or column, or no row in ``split`` (naming them).
    """
    source = Path(source)
    if not source.is_dir():
        return read_camus_index(source, split)
    filelist = source / "FileList.csv"
    if not filelist.is_file():
        raise DataError(filelist, "synthetic dataset has no FileList.csv", "re-run its sampling")
    rows = pd.read_csv(filelist, dtype={"FileName": str, "Split": str, "Mask": str})
    for column in ("FileName", "Split", "Mask"):
        if column not in rows.columns:
            raise DataError(filelist, f"missing column {column!r}", "re-run its sampling")
    rows = rows[rows["Split"] == CONTRACT_SPLITS.get(split, split)]
    if rows.empty:
        raise DataError(filelist, f"no sample in split {split!r}", "sample that split")
    return pd.DataFrame({
        "patient": rows["FileName"].to_numpy(),
        "image": [str(source / "frames" / name / "0000.jpg") for name in rows["FileName"]],
        "label": rows["Mask"].to_numpy(),
        "resized_mask": True,
    })  # fmt: skip
