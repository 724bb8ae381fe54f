"""RV-failure DICOM index, clip conversion and ingestion: bad inputs, de-identification, splits."""

import json
import logging
import os

import cv2
import numpy as np
import pandas as pd
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from echogen.data.dicom import convert_dicoms, index_dicoms, read_dicom_frames
from echogen.data.errors import DataError
from echogen.data.manifest import read_manifest
from echogen.data.rvfailure import ingest_rvfailure

NAME, BIRTH, INSTITUTION = "Doe^Jane", "19700101", "Saint Elsewhere Hospital"
IDENTIFYING = [NAME, "Jane", BIRTH, INSTITUTION]
H, W, T = 40, 56, 33
SPLIT_NAMES = ("train", "val", "test")


def write_dicom(path, frames, patient_id, photometric="MONOCHROME2", pixels=True, cine_rate=None):
    """A multi-frame ultrasound DICOM with identifying tags, like a scanner export."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.PatientID = patient_id
    ds.PatientName = NAME
    ds.PatientBirthDate = BIRTH
    ds.InstitutionName = INSTITUTION
    if pixels:
        ds.set_pixel_data(frames, photometric, 8)
    else:
        ds.SOPInstanceUID = generate_uid()
    ds.NumberOfFrames = len(frames)
    if cine_rate is not None:
        ds.CineRate = cine_rate
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def moving_clip(seed, n_frames=T, colour=False):
    """Smooth texture drifting 1 px/frame to the right (uint8)."""
    noise = np.random.default_rng(seed).random((H, W)).astype(np.float32)
    base = cv2.GaussianBlur(noise, (0, 0), 2)
    base = (base - base.min()) / (base.max() - base.min()) * 200 + 20
    frames = np.stack([np.roll(base, t, axis=1) for t in range(n_frames)]).astype(np.uint8)
    if colour:
        return np.stack([frames, frames // 2, frames // 3], axis=-1)
    return frames


def write_csvs(root, classes=None, splits=None):
    classes = classes or {"P001": "severe", "P002": "normal", "P003": "mild"}
    splits = splits or {"P001": "train", "P002": "Valid", "P003": "TEST"}
    lines = ["redcap_id,rv_failure_class"] + [f"{k},{v}" for k, v in classes.items()]
    (root / "REDcap_class.csv").write_text("\n".join(lines) + "\n")
    lines = ["redcap_id,split"] + [f"{k},{v}" for k, v in splits.items()]
    (root / "splits.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def raw(tmp_path):
    """Raw layout: 4 loops of 3 patients in nested folders with arbitrary names."""
    root = tmp_path / "raw"
    colour = moving_clip(0, colour=True)
    write_dicom(root / "dcm" / "site_b" / "zz.dcm", colour, "P001", "RGB", cine_rate=30)
    write_dicom(root / "dcm" / "site_a" / "deep" / "1.dcm", moving_clip(1), "P001")
    write_dicom(root / "dcm" / "IM_0003.dcm", moving_clip(2), "P002")
    write_dicom(root / "dcm" / "site_a" / "x.dcm", moving_clip(3, colour=True), "P003", "RGB")
    write_csvs(root)
    return root


def index(raw, tmp_path, **kwargs):
    return index_dicoms(
        raw,
        "dcm",
        "REDcap_class.csv",
        "splits.csv",
        tmp_path / "out" / "index.csv",
        tmp_path / "out" / "index_quarantine.csv",
        **kwargs,
    )


def test_index_reads_headers(raw, tmp_path):
    df = index(raw, tmp_path)
    df = df.set_index("source")
    dcm = raw / "dcm"
    p1_a, p1_b = str(dcm / "site_a" / "deep" / "1.dcm"), str(dcm / "site_b" / "zz.dcm")
    assert df.loc[p1_a, "FileName"] == "P001_000"  # sorted path order within the patient
    assert df.loc[p1_b, "FileName"] == "P001_001"
    assert df.loc[str(dcm / "IM_0003.dcm"), "FileName"] == "P002_000"
    assert df.loc[p1_b, "class_name"] == "severe"
    assert df["Split"].to_dict() == {
        p1_b: "TRAIN",
        p1_a: "TRAIN",
        str(dcm / "IM_0003.dcm"): "VAL",
        str(dcm / "site_a" / "x.dcm"): "TEST",
    }
    assert (df["NumberOfFrames"] == T).all()
    assert (df["rows"] == H).all() and (df["columns"] == W).all()
    assert df.loc[p1_b, "FPS"] == 30 and np.isnan(df.loc[p1_a, "FPS"])
    written = pd.read_csv(tmp_path / "out" / "index.csv", dtype=str)
    assert list(written.columns) == [
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
    assert pd.read_csv(tmp_path / "out" / "index_quarantine.csv").empty


def test_unknown_class_label_names_csv_row(raw, tmp_path):
    write_csvs(raw, classes={"P001": "severe", "P002": "terrible", "P003": "mild"})
    expected = r"REDcap_class\.csv, row 3: unknown class label 'terrible'"
    with pytest.raises(DataError, match=expected) as err:
        index(raw, tmp_path)
    assert "normal" in str(err.value) and "severe" in str(err.value)


def test_unknown_split_names_csv_row(raw, tmp_path):
    write_csvs(raw, splits={"P001": "train", "P002": "holdout", "P003": "test"})
    with pytest.raises(DataError, match=r"splits\.csv, row 3: unknown split name 'holdout'"):
        index(raw, tmp_path)


def test_patient_without_class_row_names_file_and_id(raw, tmp_path):
    write_dicom(raw / "dcm" / "other" / "p9.dcm", moving_clip(4), "P009")
    with pytest.raises(DataError, match=r"p9\.dcm: patient 'P009' \(PatientID\) has no row in"):
        index(raw, tmp_path)


def test_no_pixel_data_names_file(raw, tmp_path):
    write_dicom(raw / "dcm" / "report.dcm", moving_clip(4), "P002", pixels=False)
    with pytest.raises(DataError, match=r"report\.dcm: no pixel data"):
        index(raw, tmp_path)


def test_too_few_frames_names_file_and_count(raw, tmp_path):
    write_dicom(raw / "dcm" / "short.dcm", moving_clip(4, n_frames=12), "P002")
    with pytest.raises(DataError, match=r"short\.dcm: 12 frames, fewer than the 32 required"):
        index(raw, tmp_path)


def test_non_dicom_file_names_file(raw, tmp_path):
    (raw / "dcm" / "notes.dcm").write_text("not a dicom")
    with pytest.raises(DataError, match=r"notes\.dcm: not a readable DICOM file"):
        index(raw, tmp_path)


def test_empty_folder_names_folder(tmp_path):
    root = tmp_path / "raw"
    (root / "dcm" / "sub").mkdir(parents=True)
    (root / "dcm" / "sub" / "readme.txt").write_text("no dicoms here")
    write_csvs(root)
    with pytest.raises(DataError, match=r"raw/dcm: no \.dcm files found"):
        index(root, tmp_path)


def test_skip_mode_quarantines_bad_files(raw, tmp_path):
    (raw / "dcm" / "notes.dcm").write_text("not a dicom")
    write_dicom(raw / "dcm" / "short.dcm", moving_clip(4, n_frames=12), "P002")
    write_dicom(raw / "dcm" / "p9.dcm", moving_clip(4), "P009")
    df = index(raw, tmp_path, on_error="skip")
    assert sorted(df["FileName"]) == ["P001_000", "P001_001", "P002_000", "P003_000"]
    quarantine = pd.read_csv(tmp_path / "out" / "index_quarantine.csv", dtype=str)
    names = sorted(quarantine["file"].str.rsplit("/", n=1).str[-1])
    assert names == ["notes.dcm", "p9.dcm", "short.dcm"]
    assert set(quarantine.dropna(subset=["item"])["item"]) == {"P002", "P009"}


def test_rgb_to_grey_uses_rgb_luminance(tmp_path):
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 200, 50
    write_dicom(tmp_path / "rgb.dcm", frames, "P001", "RGB")
    grey = read_dicom_frames(tmp_path / "rgb.dcm")
    assert grey.shape == (2, 4, 4) and grey.dtype == np.uint8
    assert (grey == 126).all()  # 0.299*10 + 0.587*200 + 0.114*50; G/B swapped would give 55


def test_convert_quarantines_undecodable_pixels(raw, tmp_path):
    index(raw, tmp_path)
    broken = raw / "dcm" / "IM_0003.dcm"
    broken.write_bytes(broken.read_bytes()[:-500])  # truncate the pixel data after indexing
    part = tmp_path / "parts" / "part_000"
    with pytest.raises(DataError, match=r"IM_0003\.dcm: pixel data cannot be decoded"):
        convert_dicoms(tmp_path / "out" / "index.csv", 0, 1, part, size=16)
    assert not part.exists()  # nothing half-written
    convert_dicoms(tmp_path / "out" / "index.csv", 0, 1, part, size=16, on_error="skip")
    assert "P002_000" not in set(pd.read_csv(part / "index.csv")["FileName"])
    assert pd.read_csv(part / "quarantine.csv")["item"].tolist() == ["P002_000"]


def snapshot(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_pipeline_outputs_deidentified_inputs_untouched(raw, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    write_dicom(raw / "dcm" / "short.dcm", moving_clip(4, n_frames=12), "P002")  # quarantined
    before = snapshot(raw)
    assert NAME.encode() in before[str(raw / "dcm" / "short.dcm")][0]  # the grep below can see it
    out = tmp_path / "out"
    index(raw, tmp_path, on_error="skip")
    assert "short.dcm" in (out / "index_quarantine.csv").read_text()
    parts = [out / "clips" / f"part_{i:03d}" for i in range(2)]
    for i, part in enumerate(parts):
        convert_dicoms(out / "index.csv", i, 2, part, size=16)
    manifest = ingest_rvfailure(
        parts,
        out / "index.csv",
        out / "rvfailure.csv",
        out / "rvfailure_quarantine.csv",
        out / "stats.json",
        out / "splits",
        positive_class="severe",
    )

    # Clips and flow (index rows are in path order, strided over the 2 chunks).
    assert (parts[1] / "P001_000.npy").is_file() and (parts[0] / "P003_000.npy").is_file()
    clip = np.load(parts[1] / "P001_000.npy")
    assert clip.shape == (T, 16, 16) and clip.dtype == np.float16 and clip.max() == 1
    flow = np.load(parts[1] / "P001_000_flow.npy")
    assert flow.shape == (T - 1, 16, 16, 2) and flow.dtype == np.float16
    # 1 px/frame at 56 px wide is 16/56 px at 16 px (computed at full resolution).
    assert flow[..., 0].astype(float).mean() == pytest.approx(16 / W, abs=0.05)

    # Manifest.
    written = read_manifest(out / "rvfailure.csv")
    assert len(written) == len(manifest) == 4
    row = written.set_index("FileName").loc["P001_001"]
    assert row["class_id"] == 3 and row["FPS"] == 30 and row["Dataset"] == "rvfailure"
    assert row["FrameHeight"] == row["FrameWidth"] == 16 and row["NumberOfFrames"] == T
    assert written.set_index("FileName").loc["P003_000", "class_id"] == 1
    assert np.isnan(written.set_index("FileName").loc["P001_000", "FPS"])

    # Splits are per patient; label = severe.
    splits = {s: pd.read_csv(out / "splits" / f"{s}.csv", dtype=str) for s in SPLIT_NAMES}
    assert sorted(splits["train"]["FileName"]) == ["P001_000", "P001_001"]
    assert splits["val"]["patient_id"].tolist() == ["P002"]
    assert splits["test"]["patient_id"].tolist() == ["P003"]
    assert list(splits["train"].columns) == [
        "FileName",
        "Path",
        "FlowPath",
        "patient_id",
        "class_name",
        "label",
    ]
    assert splits["train"]["label"].tolist() == ["1", "1"]
    assert splits["val"]["label"].tolist() == splits["test"]["label"].tolist() == ["0"]
    all_ids = [set(s["patient_id"]) for s in splits.values()]
    assert not (all_ids[0] & all_ids[1] or all_ids[0] & all_ids[2] or all_ids[1] & all_ids[2])

    # Stats over TRAIN clips only.
    stats = json.loads((out / "stats.json").read_text())
    train = np.concatenate([np.load(p).astype(np.float64).ravel() for p in splits["train"]["Path"]])
    assert stats["mean"] == pytest.approx(train.mean(), rel=1e-9)
    assert stats["std"] == pytest.approx(train.std(), rel=1e-6)
    assert stats["counts"]["clips"] == {"TRAIN": 2, "VAL": 1, "TEST": 1}
    assert stats["counts"]["classes"]["TRAIN"]["severe"] == 2

    # De-identification: no identifying value in any output or log.
    captured = capfd.readouterr()
    texts = {"log": caplog.text, "stdout": captured.out, "stderr": captured.err}
    texts.update({str(p): p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()})
    for where, text in texts.items():
        for value in IDENTIFYING:
            assert value not in text, f"{value!r} leaked into {where}"
    assert "index DICOM headers" in captured.err  # tqdm progress was shown

    # Inputs: same files, same bytes, same mtimes.
    assert snapshot(raw) == before


def test_ingest_rejects_patient_in_two_splits(raw, tmp_path):
    index(raw, tmp_path)
    out = tmp_path / "out"
    table = pd.read_csv(out / "index.csv", dtype=str)
    table.loc[table["FileName"] == "P001_001", "Split"] = "TEST"
    table.to_csv(out / "index.csv", index=False)
    convert_dicoms(out / "index.csv", 0, 1, out / "part_000", size=16)
    with pytest.raises(ValueError, match=r"more than one split: \['P001'\]"):
        ingest_rvfailure(
            [out / "part_000"],
            out / "index.csv",
            out / "m.csv",
            out / "q.csv",
            out / "s.json",
            out / "splits",
        )


def test_mtime_check_detects_changes(tmp_path):
    """Guard for the untouched-inputs test: the snapshot does see a touched file."""
    path = tmp_path / "f.dcm"
    path.write_bytes(b"x")
    before = snapshot(tmp_path)
    os.utime(path, ns=(0, 0))
    assert snapshot(tmp_path) != before


def test_unsupported_pixel_layout_names_file(raw, tmp_path):
    write_dicom(raw / "dcm" / "inverted.dcm", moving_clip(4), "P002", "MONOCHROME1")
    with pytest.raises(DataError, match=r"inverted\.dcm: unsupported pixel layout MONOCHROME1"):
        index(raw, tmp_path)


def test_all_files_quarantined_gives_empty_index(tmp_path):
    root = tmp_path / "raw"
    write_dicom(root / "dcm" / "short.dcm", moving_clip(4, n_frames=5), "P002")
    write_csvs(root)
    df = index(root, tmp_path, on_error="skip")
    assert df.empty and "FileName" in df.columns
    part = tmp_path / "out" / "part_000"
    convert_dicoms(tmp_path / "out" / "index.csv", 0, 1, part, size=16)
    with pytest.raises(DataError, match=r"index\.csv: no clip was converted"):
        ingest_rvfailure(
            [part],
            tmp_path / "out" / "index.csv",
            tmp_path / "m.csv",
            tmp_path / "q.csv",
            tmp_path / "s.json",
            tmp_path / "splits",
        )
