"""RV-failure DICOM ingestion: header index, de-identified normalised clips and Farneback flow.

Raw layout (docs/data_contracts.md): ``<root>/<dicom_dir>/**/*.dcm`` multi-frame ultrasound
DICOMs whose ``PatientID`` holds the REDCap id, a class csv (header, then REDCap id and class
in {normal, mild, moderate, severe}) and a split csv (header, then REDCap id and
train/valid/test in any case).

De-identification: only PatientID (the REDCap id), frame count, size, colour layout and cine
rate are ever read from a header; no other tag value reaches an output, a quarantine or a log.
Input files are only read, never renamed, moved or modified (the original code renamed
them in place).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from tqdm import tqdm

from echogen.data.errors import DataError, Quarantine
from echogen.data.flow import FARNEBACK_PAPER, farneback_flow, save_npy
from echogen.data.io import atomic_dir, atomic_path
from echogen.data.manifest import chunk_rows, normalise_split
from echogen.data.parts import write_part_index
from echogen.data.video import resize_frames

log = logging.getLogger(__name__)

RV_CLASSES = ("normal", "mild", "moderate", "severe")  # class_id = position
INDEX_COLUMNS = [
    "FileName",
    "source",
    "patient_id",
    "class_name",
    "Split",
    "NumberOfFrames",
    "rows",
    "columns",
    "FPS",
]
# Colour layouts whose 8-bit frames we can turn into grey. pydicom decodes YBR_* to RGB.
PHOTOMETRIC = ("MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422")
# PatientID becomes part of output file names.
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def _read_id_csv(path: Path, value_name: str) -> list[tuple[int, str, str]]:
    """Rows ``(line, id, value)`` of a two-column ``id,<value>`` csv (header on line 1)."""
    if not path.is_file():
        raise DataError(path, "file does not exist", "check the dataset root and the csv name")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if table.shape[1] != 2:
        raise DataError(
            path,
            f"expected 2 columns (id, {value_name}), found {list(table.columns)}",
            f"write a header line then one 'id,{value_name}' row per patient",
        )
    rows, seen = [], set()
    for i, (patient_id, value) in enumerate(table.itertuples(index=False, name=None)):
        line = i + 2
        patient_id = patient_id.strip()
        if not patient_id:
            raise DataError(path, "empty patient id", "fill in the REDCap id", row=line)
        if patient_id in seen:
            raise DataError(
                path,
                f"patient {patient_id!r} is listed twice",
                "keep one row per patient",
                row=line,
                item=patient_id,
            )
        seen.add(patient_id)
        rows.append((line, patient_id, value))
    return rows


def read_class_csv(path: str | Path) -> dict[str, str]:
    """Map REDCap id -> RV-failure class from the class csv (labels in :data:`RV_CLASSES`)."""
    path = Path(path)
    classes = {}
    for line, patient_id, value in _read_id_csv(path, "class"):
        label = value.strip().lower()
        if label not in RV_CLASSES:
            raise DataError(
                path,
                f"unknown class label {value!r}",
                f"use one of {list(RV_CLASSES)}",
                row=line,
                item=patient_id,
            )
        classes[patient_id] = label
    return classes


def read_split_csv(path: str | Path) -> dict[str, str]:
    """Map REDCap id -> TRAIN/VAL/TEST from the split csv (train/valid/test, any case)."""
    path = Path(path)
    return {
        patient_id: normalise_split(value, path, line)
        for line, patient_id, value in _read_id_csv(path, "split")
    }


def _header_record(
    path: Path,
    classes: dict[str, str],
    splits: dict[str, str],
    class_csv: Path,
    split_csv: Path,
    min_frames: int,
) -> dict:
    """Index record of one DICOM from its header (pixel data is not loaded)."""
    try:
        # defer_size leaves large values (the pixel data) on disk: the header is enough.
        ds = pydicom.dcmread(path, defer_size="1 KB")
    except InvalidDicomError:
        raise DataError(
            path,
            "not a readable DICOM file (no DICM header)",
            "remove it from the DICOM folder or re-export it from the scanner",
        ) from None
    patient_id = str(ds.get("PatientID", "")).strip()
    if not patient_id:
        raise DataError(path, "PatientID is missing or empty", "write the REDCap id into PatientID")
    if not SAFE_ID.match(patient_id):
        raise DataError(
            path,
            f"PatientID {patient_id!r} is not a plain REDCap id (letters, digits, _ . -)",
            "write the REDCap id into PatientID",
            item=patient_id,
        )
    if "PixelData" not in ds:
        raise DataError(
            path,
            "no pixel data (a report or structured DICOM, not a cine loop)",
            "remove it from the DICOM folder",
            item=patient_id,
        )
    n_frames = int(ds.get("NumberOfFrames") or 1)  # absent or empty: a single-frame image
    if n_frames < min_frames:
        raise DataError(
            path,
            f"{n_frames} frames, fewer than the {min_frames} required",
            "remove the file, or lower min_frames in config",
            item=patient_id,
        )
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in PHOTOMETRIC or ds.get("BitsAllocated") != 8:
        raise DataError(
            path,
            f"unsupported pixel layout {photometric or '(none)'} at {ds.get('BitsAllocated')} bits",
            f"export the loops as 8-bit {' or '.join(PHOTOMETRIC)}",
            item=patient_id,
        )
    if patient_id not in classes:
        raise DataError(
            path,
            f"patient {patient_id!r} (PatientID) has no row in {class_csv}",
            f"add '{patient_id},<class>' to {class_csv}, or remove the file",
            item=patient_id,
        )
    if patient_id not in splits:
        raise DataError(
            path,
            f"patient {patient_id!r} (PatientID) has no row in {split_csv}",
            f"add '{patient_id},<train|valid|test>' to {split_csv}, or remove the file",
            item=patient_id,
        )
    cine_rate = ds.get("CineRate")
    return {
        "source": str(path),
        "patient_id": patient_id,
        "class_name": classes[patient_id],
        "Split": splits[patient_id],
        "NumberOfFrames": n_frames,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "FPS": float(cine_rate) if cine_rate else np.nan,
    }


def index_dicoms(
    root: str | Path,
    dicom_dir: str,
    class_csv: str,
    split_csv: str,
    index_out: str | Path,
    quarantine_out: str | Path,
    min_frames: int = 32,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Index the RV-failure DICOMs from their headers only.

    Problems with a csv (missing file, unknown class or split, duplicate patient) always
    raise, naming the csv row: the lists are short and a typo there should be fixed, not
    turned into missing patients. Problems with a DICOM file are quarantined under
    ``on_error="skip"``.

    Args:
        root: dataset root.
        dicom_dir: folder under ``root`` searched recursively for ``*.dcm``.
        class_csv: class csv under ``root`` (header, then REDCap id and class).
        split_csv: split csv under ``root`` (header, then REDCap id and split).
        index_out: index csv to write (:data:`INDEX_COLUMNS`; FileName is
            ``<redcap_id>_<k>``, k = rank of the file among the patient's indexed files in
            path order; ``source`` is the DICOM path as given; FPS is the CineRate if any).
        quarantine_out: quarantine csv of skipped files (always written).
        min_frames: fewest frames a loop may have.
        on_error: ``"raise"`` or ``"skip"``.

    Returns:
        The index.
    """
    if min_frames < 2:
        raise ValueError(f"min_frames must be at least 2 (flow needs pairs), got {min_frames}")
    root = Path(root)
    folder = root / dicom_dir
    class_path, split_path = root / class_csv, root / split_csv
    classes = read_class_csv(class_path)
    splits = read_split_csv(split_path)
    files = sorted(folder.rglob("*.dcm"))
    if not files:
        raise DataError(
            folder,
            "no .dcm files found (searched sub-folders too)",
            "check the dataset root and dicom_dir in config",
        )
    quarantine = Quarantine(on_error)
    records = []
    for path in tqdm(files, desc="index DICOM headers", unit="file"):
        with quarantine.guard():
            records.append(
                _header_record(path, classes, splits, class_path, split_path, min_frames)
            )
    index = pd.DataFrame(records, columns=[c for c in INDEX_COLUMNS if c != "FileName"])
    rank = index.groupby("patient_id", sort=False).cumcount()
    index.insert(0, "FileName", index["patient_id"] + "_" + rank.map("{:03d}".format))
    with atomic_path(index_out) as tmp:
        index.to_csv(tmp, index=False)
    quarantine.write(quarantine_out)
    log.info(
        "indexed %d DICOM loops of %d patients; %d files quarantined",
        len(index),
        index["patient_id"].nunique(),
        len(quarantine),
    )
    return index


def read_dicom_frames(path: str | Path, item: str | None = None) -> np.ndarray:
    """Decode a multi-frame DICOM as grey ``uint8 (T, H, W)``.

    Args:
        path: DICOM file.
        item: clip name to attach to a decoding error (for the quarantine).

    Colour frames are converted with ITU-R BT.601 luminance (0.299 R + 0.587 G + 0.114 B).
    The original code passed RGB pixels to a BGR conversion, which swaps the G and B weights;
    we convert from RGB as the data are RGB.
    """
    ds = pydicom.dcmread(path)
    try:
        pixels = ds.pixel_array  # YBR_* frames come back as RGB (pydicom's default as_rgb)
    except (ValueError, RuntimeError, NotImplementedError) as err:
        raise DataError(
            path,
            f"pixel data cannot be decoded ({type(err).__name__}: {err})",
            "re-export the file, or set on_error: skip to quarantine it",
            item=item,
        ) from None
    if ds.get("SamplesPerPixel", 1) == 3:
        n_frames, height, width, _ = pixels.shape
        grey = cv2.cvtColor(pixels.reshape(n_frames * height, width, 3), cv2.COLOR_RGB2GRAY)
        return grey.reshape(n_frames, height, width)
    return pixels


def convert_dicoms(
    index_csv: str | Path,
    chunk: int,
    n_chunks: int,
    part_dir: str | Path,
    size: int = 112,
    flow_params: dict = FARNEBACK_PAPER,
    on_error: str = "raise",
) -> None:
    """Convert one chunk of the DICOM index to normalised grey clips and flow (a part folder).

    Per index row: ``<FileName>.npy`` float16 ``(T, size, size)`` = grey frames resized to
    ``size²`` and divided by the clip maximum; ``<FileName>_flow.npy`` float16
    ``(T-1, size, size, 2)`` = Farneback flow on the full-resolution grey frames, then resized.
    The part's ``index.csv`` lists FileName, Path, FlowPath, NumberOfFrames, FrameHeight,
    FrameWidth, Split, class_name, patient_id. The folder appears only once complete.

    Args:
        index_csv: index written by :func:`index_dicoms`.
        chunk: this job's chunk, ``0 <= chunk < n_chunks``.
        n_chunks: number of chunk jobs (rows are strided across them).
        part_dir: output part folder.
        size: output side in pixels.
        flow_params: Farneback parameters (see :func:`~echogen.data.flow.farneback_flow`).
        on_error: ``"raise"`` or ``"skip"`` (quarantine undecodable or blank loops).
    """
    index = pd.read_csv(index_csv, dtype={"FileName": str, "patient_id": str, "source": str})
    rows = chunk_rows(index, chunk, n_chunks)
    quarantine = Quarantine(on_error)
    records = []
    with atomic_dir(part_dir) as tmp:
        for row in tqdm(rows.to_dict("records"), desc=f"convert DICOM chunk {chunk}/{n_chunks}"):
            with quarantine.guard():
                grey = read_dicom_frames(row["source"], item=row["FileName"])
                clip = resize_frames(grey, size)
                peak = int(clip.max())
                if peak == 0:
                    raise DataError(
                        row["source"],
                        "every pixel is 0 (blank loop)",
                        "remove the file",
                        item=row["FileName"],
                    )
                flow = farneback_flow(grey, flow_params, size)
                clip_name, flow_name = f"{row['FileName']}.npy", f"{row['FileName']}_flow.npy"
                save_npy(tmp / clip_name, (clip / peak).astype(np.float16))
                save_npy(tmp / flow_name, flow)
                records.append(
                    {
                        "FileName": row["FileName"],
                        "Path": str(Path(part_dir) / clip_name),
                        "FlowPath": str(Path(part_dir) / flow_name),
                        "NumberOfFrames": len(grey),
                        "FrameHeight": size,
                        "FrameWidth": size,
                        "Split": row["Split"],
                        "class_name": row["class_name"],
                        "patient_id": row["patient_id"],
                    }
                )
        write_part_index(tmp, records, quarantine)
