"""EchoNet-Dynamic ingestion on a tiny hand-made download."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from echogen.data.dynamic import ingest_dynamic
from echogen.data.errors import DataError
from echogen.data.manifest import FILELIST_COLUMNS, MANIFEST_COLUMNS, read_manifest
from echogen.data.video import write_video

SIZE = 32
N_FRAMES = 10


def tracing_rows(name: str, frame: int, diameter: float) -> list[list]:
    """A long axis of length 10 and two chords of ``diameter``: volume = 2π(d/2)²·10/2."""
    return [
        [f"{name}.avi", 16.0, 5.0, 16.0, 15.0, frame],
        [f"{name}.avi", 16.0 - diameter / 2, 8.0, 16.0 + diameter / 2, 8.0, frame],
        [f"{name}.avi", 16.0 - diameter / 2, 12.0, 16.0 + diameter / 2, 12.0, frame],
    ]


def make_dynamic(root, names=("v0", "v1", "v2"), splits=("TRAIN", "val", "TEST")):
    """Write a Dynamic-layout folder: FileList, VolumeTracings (ED frame 2, ES frame 7), Videos."""
    (root / "Videos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, lines = [], []
    for name, split in zip(names, splits, strict=True):
        frames = rng.integers(0, 255, (N_FRAMES, SIZE, SIZE), dtype=np.uint8)
        write_video(root / "Videos" / f"{name}.avi", frames, fps=50.0)
        rows.append([name, 60.0, 20.0, 50.0, SIZE, SIZE, 50.0, N_FRAMES, split])
        lines += tracing_rows(name, 7, 2.0) + tracing_rows(name, 2, 4.0)
    pd.DataFrame(rows, columns=FILELIST_COLUMNS).to_csv(root / "FileList.csv", index=False)
    pd.DataFrame(lines, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
        root / "VolumeTracings.csv", index=False
    )
    return root


def edit_filelist(root, fn):
    df = pd.read_csv(root / "FileList.csv", dtype={"FileName": str, "Split": str})
    df = fn(df)
    df.to_csv(root / "FileList.csv", index=False)


def run(root, tmp_path, on_error="raise"):
    return ingest_dynamic(
        root, tmp_path / "out" / "m.csv", tmp_path / "out" / "q.csv", on_error=on_error
    )


def assert_nothing_written(tmp_path):
    out = tmp_path / "out"
    assert not (out / "m.csv").exists() and not (out / "q.csv").exists()


def test_happy_path(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    df = run(root, tmp_path)
    written = read_manifest(tmp_path / "out" / "m.csv")
    assert list(written.columns) == MANIFEST_COLUMNS
    assert written["FileName"].tolist() == ["v0", "v1", "v2"]
    assert written["Split"].tolist() == ["TRAIN", "VAL", "TEST"]
    assert written["Path"].tolist() == [str(root / "Videos" / f"v{i}.avi") for i in range(3)]
    assert (written["View"] == "A4C").all() and (written["Dataset"] == "dynamic").all()
    # ED (frame 2) volume 2π·2²·5 = 40π, ES (frame 7) 2π·1²·5 = 10π -> EF 75 %.
    assert written["EDFrame"].tolist() == [2, 2, 2]
    assert written["ESFrame"].tolist() == [7, 7, 7]
    np.testing.assert_allclose(written["TracingEF"], 75.0)
    assert math.isclose(written["EF"][0], 60.0)
    assert written["Fold"].isna().all() and written["class_id"].isna().all()
    assert df["FileName"].tolist() == written["FileName"].tolist()
    q = pd.read_csv(tmp_path / "out" / "q.csv")
    assert q.empty and list(q.columns) == ["item", "file", "row", "problem", "fix"]


def test_missing_column(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    edit_filelist(root, lambda df: df.drop(columns="ESV"))
    with pytest.raises(DataError, match=r"FileList\.csv, row 1: missing column 'ESV'.*restore"):
        run(root, tmp_path)
    assert_nothing_written(tmp_path)


def test_extra_column(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    edit_filelist(root, lambda df: df.assign(Extra=1))
    with pytest.raises(DataError, match=r"unknown column\(s\) \['Extra'\].*FileName"):
        run(root, tmp_path)


@pytest.mark.parametrize("ef", [float("nan"), 101.0, -3.0])
def test_bad_ef(tmp_path, ef):
    root = make_dynamic(tmp_path / "dyn")
    edit_filelist(root, lambda df: df.assign(EF=[60.0, ef, 60.0]))
    with pytest.raises(DataError, match=r"FileList\.csv, row 3: EF of 'v1'"):
        run(root, tmp_path)
    assert_nothing_written(tmp_path)


def test_bad_ef_skip_quarantines_row(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    edit_filelist(root, lambda df: df.assign(EF=[60.0, float("nan"), 60.0]))
    df = run(root, tmp_path, on_error="skip")
    assert df["FileName"].tolist() == ["v0", "v2"]
    q = pd.read_csv(tmp_path / "out" / "q.csv")
    assert q["item"].tolist() == ["v1"] and q["row"].tolist() == [3]
    assert q["file"][0].endswith("FileList.csv")


def test_unknown_split(tmp_path):
    root = make_dynamic(tmp_path / "dyn", splits=("TRAIN", "TRAINING", "TEST"))
    with pytest.raises(DataError, match=r"row 3: unknown split name 'TRAINING'"):
        run(root, tmp_path)


def test_corrupt_video(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    bad = root / "Videos" / "v1.avi"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(DataError, match=r"v1\.avi"):
        run(root, tmp_path)
    assert_nothing_written(tmp_path)
    df = run(root, tmp_path, on_error="skip")
    assert df["FileName"].tolist() == ["v0", "v2"]
    q = pd.read_csv(tmp_path / "out" / "q.csv")
    assert q["item"].tolist() == ["v1"] and q["file"][0] == str(bad)


def test_truncated_video(tmp_path):
    """A file cut short: the header may survive (then it is caught when decoded, not here)."""
    root = make_dynamic(tmp_path / "dyn")
    bad = root / "Videos" / "v1.avi"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"v1\.avi"):
        run(root, tmp_path)


def test_missing_video(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    (root / "Videos" / "v2.avi").unlink()
    with pytest.raises(DataError, match=r"v2\.avi: video file does not exist"):
        run(root, tmp_path)


def test_size_mismatch(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    edit_filelist(root, lambda df: df.assign(FrameHeight=[SIZE, 112, SIZE]))
    with pytest.raises(DataError, match=r"row 3: FrameHeight x FrameWidth 112x32"):
        run(root, tmp_path)


def test_single_traced_frame(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    lines = pd.read_csv(root / "VolumeTracings.csv")
    drop = (lines["FileName"] == "v1.avi") & (lines["Frame"] == 7)
    lines[~drop].to_csv(root / "VolumeTracings.csv", index=False)
    with pytest.raises(DataError, match=r"VolumeTracings\.csv: video 'v1' has 1 traced frame"):
        run(root, tmp_path)
    df = run(root, tmp_path, on_error="skip")
    assert df["FileName"].tolist() == ["v0", "v2"]
    q = pd.read_csv(tmp_path / "out" / "q.csv")
    assert q["item"].tolist() == ["v1"] and q["file"][0].endswith("VolumeTracings.csv")


def test_traced_frame_outside_video(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    lines = pd.read_csv(root / "VolumeTracings.csv")
    lines.loc[(lines["FileName"] == "v0.avi") & (lines["Frame"] == 7), "Frame"] = N_FRAMES
    lines.to_csv(root / "VolumeTracings.csv", index=False)
    with pytest.raises(DataError, match=r"traced frame\(s\) \[10\] of 'v0' lie outside"):
        run(root, tmp_path)


def test_empty_filelist(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    edit_filelist(root, lambda df: df.iloc[:0])
    with pytest.raises(DataError, match="empty dataset"):
        run(root, tmp_path)


def test_empty_videos_folder(tmp_path):
    root = make_dynamic(tmp_path / "dyn")
    for video in (root / "Videos").iterdir():
        video.unlink()
    with pytest.raises(DataError, match=r"Videos: empty dataset"):
        run(root, tmp_path)
    assert_nothing_written(tmp_path)
