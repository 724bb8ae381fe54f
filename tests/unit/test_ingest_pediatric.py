"""EchoNet-Pediatric ingestion on a tiny hand-made view folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echogen.data.errors import DataError
from echogen.data.manifest import MANIFEST_COLUMNS, read_manifest
from echogen.data.pediatric import PEDIATRIC_COLUMNS, ingest_pediatric
from echogen.data.video import write_video

FOLDS = [0, 7, 8, 9]
SIZES = [(32, 48), (32, 32), (16, 32), (32, 32)]  # (H, W) per video
FRAMES = [6, 8, 5, 7]
FPS = 25.0


def make_pediatric(root, tracings=True):
    """Write a Pediatric view folder: FileList (names with .avi), Videos, optional tracings."""
    (root / "Videos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, lines = [], []
    for i, (fold, (h, w), t) in enumerate(zip(FOLDS, SIZES, FRAMES, strict=True)):
        name = f"CR{i}-acc-00000{i}"
        write_video(root / "Videos" / f"{name}.avi", rng.integers(0, 255, (t, h, w), np.uint8), FPS)
        rows.append([f"{name}.avi", 55.0 + i, "F", 7, 25.0, 120.0, fold])
        # ED at frame 1: axis 10, chords 3 -> 2π(1.5)²·5; ES at frame 3: chords 1.5.
        for frame, d in ((3, 1.5), (1, 3.0)):
            lines += [
                [f"{name}.avi", 8.0, 2.0, 8.0, 12.0, frame],
                [f"{name}.avi", 8.0 - d / 2, 5.0, 8.0 + d / 2, 5.0, frame],
                [f"{name}.avi", 8.0 - d / 2, 9.0, 8.0 + d / 2, 9.0, frame],
            ]
    pd.DataFrame(rows, columns=PEDIATRIC_COLUMNS).to_csv(root / "FileList.csv", index=False)
    if tracings:
        pd.DataFrame(lines, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
            root / "VolumeTracings.csv", index=False
        )
    return root


def run(root, tmp_path, on_error="raise", view="A4C"):
    return ingest_pediatric(
        root, view, tmp_path / "out" / "m.csv", tmp_path / "out" / "q.csv", on_error=on_error
    )


def edit_filelist(root, fn):
    df = pd.read_csv(root / "FileList.csv", dtype={"FileName": str, "Split": str})
    fn(df).to_csv(root / "FileList.csv", index=False)


def test_happy_path(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    run(root, tmp_path)
    df = read_manifest(tmp_path / "out" / "m.csv")
    assert list(df.columns) == MANIFEST_COLUMNS
    assert df["FileName"].tolist() == [f"CR{i}-acc-00000{i}" for i in range(4)]
    assert df["Path"].tolist() == [
        str(root / "Videos" / f"CR{i}-acc-00000{i}.avi") for i in range(4)
    ]
    assert df["Fold"].tolist() == FOLDS
    assert df["Split"].tolist() == ["TRAIN", "TRAIN", "VAL", "TEST"]
    assert df["FrameHeight"].tolist() == [h for h, _ in SIZES]
    assert df["FrameWidth"].tolist() == [w for _, w in SIZES]
    assert df["NumberOfFrames"].tolist() == FRAMES
    np.testing.assert_allclose(df["FPS"], FPS)
    np.testing.assert_allclose(df["EF"], [55.0, 56.0, 57.0, 58.0])
    assert (df["View"] == "A4C").all() and (df["Dataset"] == "ped_a4c").all()
    assert df["EDFrame"].tolist() == [1] * 4 and df["ESFrame"].tolist() == [3] * 4
    np.testing.assert_allclose(df["TracingEF"], 75.0)  # (3² - 1.5²) / 3²
    assert df["ESV"].isna().all() and df["EDV"].isna().all()


def test_without_tracings_and_psax(tmp_path):
    root = make_pediatric(tmp_path / "PSAX", tracings=False)
    df = run(root, tmp_path, view="psax")
    assert (df["View"] == "PSAX").all() and (df["Dataset"] == "ped_psax").all()
    assert df[["EDFrame", "ESFrame", "TracingEF"]].isna().all().all()


def test_unknown_fold(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    edit_filelist(root, lambda df: df.assign(Split=["0", "10", "8", "9"]))
    with pytest.raises(DataError, match=r"FileList\.csv, row 3: unknown split name '10'"):
        run(root, tmp_path)
    assert not (tmp_path / "out" / "m.csv").exists()
    df = run(root, tmp_path, on_error="skip")
    assert df["Fold"].tolist() == [0, 8, 9]
    q = pd.read_csv(tmp_path / "out" / "q.csv")
    assert q["item"].tolist() == ["CR1-acc-000001"] and q["row"].tolist() == [3]


def test_nan_ef(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    edit_filelist(root, lambda df: df.assign(EF=[50.0, 50.0, float("nan"), 50.0]))
    with pytest.raises(DataError, match=r"row 4: EF of 'CR2-acc-000002'"):
        run(root, tmp_path)


def test_missing_column(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    edit_filelist(root, lambda df: df.drop(columns="Split"))
    with pytest.raises(DataError, match=r"FileList\.csv, row 1: missing column 'Split'"):
        run(root, tmp_path)


def test_corrupt_video_skip(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    bad = root / "Videos" / "CR3-acc-000003.avi"
    bad.write_bytes(b"RIFF" + np.random.default_rng(2).bytes(2000))
    with pytest.raises(DataError, match=r"CR3-acc-000003\.avi"):
        run(root, tmp_path)
    df = run(root, tmp_path, on_error="skip")
    assert len(df) == 3
    q = pd.read_csv(tmp_path / "out" / "q.csv")
    assert q["file"].tolist() == [str(bad)] and q["item"].tolist() == ["CR3-acc-000003"]


def test_single_traced_frame(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    lines = pd.read_csv(root / "VolumeTracings.csv")
    lines[~((lines["FileName"] == "CR0-acc-000000.avi") & (lines["Frame"] == 3))].to_csv(
        root / "VolumeTracings.csv", index=False
    )
    with pytest.raises(DataError, match=r"VolumeTracings\.csv: video 'CR0-acc-000000' has 1"):
        run(root, tmp_path)


def test_empty_videos_folder(tmp_path):
    root = make_pediatric(tmp_path / "A4C")
    for video in (root / "Videos").iterdir():
        video.unlink()
    with pytest.raises(DataError, match="empty dataset"):
        run(root, tmp_path)
