"""Shared core of echogen.data: errors, io, video, manifest, tracings, parts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from echogen.data.errors import QUARANTINE_COLUMNS, DataError, Quarantine
from echogen.data.io import atomic_dir, atomic_path, write_json
from echogen.data.manifest import (
    INT_COLUMNS,
    MANIFEST_COLUMNS,
    chunk_rows,
    harmonise,
    normalise_split,
    read_manifest,
    write_manifest,
)
from echogen.data.parts import PART_INDEX, PART_QUARANTINE, gather_parts, write_part_index
from echogen.data.tracings import disk_volume, read_volume_tracings, tracing_ef
from echogen.data.video import (
    probe_video,
    read_video,
    resample_frames,
    resize_frames,
    write_video,
)


def hidden(folder):
    """Names starting with '.' in ``folder`` (where the atomic writers put their temps)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- errors ---


def test_data_error_message_and_record():
    err = DataError("a/FileList.csv", "EF is missing", "fill it in", row=7, item="0X1")
    assert str(err) == "a/FileList.csv, row 7: EF is missing. Fix: fill it in"
    assert isinstance(err, ValueError)
    assert err.as_record() == {
        "item": "0X1",
        "file": "a/FileList.csv",
        "row": 7,
        "problem": "EF is missing",
        "fix": "fill it in",
    }


def test_data_error_without_row_or_item():
    err = DataError("v.avi", "broken", "re-encode")
    assert str(err) == "v.avi: broken. Fix: re-encode"
    assert err.as_record() == {
        "item": "",
        "file": "v.avi",
        "row": "",
        "problem": "broken",
        "fix": "re-encode",
    }


def test_quarantine_raise_mode_reraises():
    q = Quarantine("raise")
    with pytest.raises(DataError, match="bad.avi: broken"):
        with q.guard():
            raise DataError("bad.avi", "broken", "fix it")
    assert len(q) == 0


def test_quarantine_skip_mode_collects_and_continues():
    q = Quarantine("skip")
    done = []
    for i in range(4):
        with q.guard():
            if i % 2:
                raise DataError(f"v{i}.avi", f"problem {i}", "fix", item=f"v{i}")
            done.append(i)
    assert done == [0, 2]
    assert len(q) == 2
    assert q.frame()["item"].tolist() == ["v1", "v3"]
    assert list(q.frame().columns) == QUARANTINE_COLUMNS


def test_quarantine_does_not_swallow_other_errors():
    q = Quarantine("skip")
    with pytest.raises(KeyError):
        with q.guard():
            raise KeyError("not a data problem")
    assert len(q) == 0


def test_quarantine_invalid_on_error():
    with pytest.raises(ValueError, match="on_error"):
        Quarantine("ignore")


def test_quarantine_write_empty_and_full(tmp_path):
    empty = tmp_path / "sub" / "empty.csv"
    Quarantine("skip").write(empty)
    assert empty.read_text().strip() == ",".join(QUARANTINE_COLUMNS)
    back = pd.read_csv(empty)
    assert list(back.columns) == QUARANTINE_COLUMNS and len(back) == 0

    q = Quarantine("skip")
    q.add(DataError("f.csv", "p", "x", row=3, item="a"))
    full = tmp_path / "full.csv"
    q.write(full)
    back = pd.read_csv(full, dtype=str, keep_default_na=False)
    assert back.to_dict("records") == [
        {"item": "a", "file": "f.csv", "row": "3", "problem": "p", "fix": "x"}
    ]
    assert hidden(tmp_path) == []


def test_quarantine_merge(tmp_path):
    paths = []
    for name, n in [("a", 2), ("b", 0), ("c", 1)]:
        q = Quarantine("skip")
        for i in range(n):
            q.add(DataError(f"{name}{i}.avi", "broken", "fix", item=f"{name}{i}"))
        paths.append(tmp_path / f"{name}.csv")
        q.write(paths[-1])
    out = tmp_path / "merged.csv"
    assert Quarantine.merge(paths, out) == 3
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(back.columns) == QUARANTINE_COLUMNS
    assert back["item"].tolist() == ["a0", "a1", "c0"]
    assert back["row"].tolist() == ["", "", ""]


# --- io ---


def test_atomic_path_success_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_failure_keeps_original(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_failure_creates_nothing(tmp_path):
    target = tmp_path / "new" / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_dir_replaces_existing_on_success(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert (target / "new.txt").read_text() == "new"
    assert hidden(tmp_path) == []


def test_atomic_dir_failure_keeps_existing(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert hidden(tmp_path) == []


def test_atomic_dir_failure_creates_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_json_round_trip(tmp_path):
    obj = {"b": [1, 2.5, "x"], "a": {"nested": None}, "path": tmp_path}
    out = tmp_path / "d" / "x.json"
    write_json(out, obj)
    back = json.loads(out.read_text())
    assert back == {"a": {"nested": None}, "b": [1, 2.5, "x"], "path": str(tmp_path)}
    assert out.read_text().endswith("\n")
    assert hidden(out.parent) == []


# --- video ---


def smooth_video(n_frames=20, height=48, width=64):
    y, x = np.mgrid[0:height, 0:width]
    frames = [100 + 60 * np.sin(x / 10 + t / 5) * np.cos(y / 12) for t in range(n_frames)]
    return np.stack(frames).round().astype(np.uint8)


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_round_trip(tmp_path, suffix):
    frames = smooth_video()
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames, fps=25.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    back = read_video(path)
    assert back.dtype == np.uint8
    assert back.shape == (20, 48, 64)
    assert np.abs(back.astype(float) - frames).mean() < 3
    info = probe_video(path)
    assert (info.frames, info.height, info.width) == (20, 48, 64)
    assert info.fps == pytest.approx(25.0)


def test_read_missing_video(tmp_path):
    path = tmp_path / "missing.avi"
    with pytest.raises(DataError, match="does not exist") as err:
        read_video(path)
    assert err.value.file == str(path)
    with pytest.raises(DataError, match="does not exist"):
        probe_video(path)


def test_read_empty_video(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="0 bytes") as err:
        read_video(path)
    assert str(path) in str(err.value)


def test_read_random_bytes_video(tmp_path):
    path = tmp_path / "noise.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as err:
        read_video(path)
    assert str(path) in str(err.value)
    with pytest.raises(DataError) as err:
        probe_video(path)
    assert str(path) in str(err.value)


def test_read_truncated_video(tmp_path):
    full = tmp_path / "full.avi"
    write_video(full, smooth_video(60), fps=30.0)
    data = full.read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        read_video(path)
    message = str(err.value)
    assert str(path) in message
    assert "truncated" in message or "decode" in message


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.avi", np.zeros((3, 8, 8), np.float32), fps=10)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.avi", np.zeros((3, 8, 8, 3), np.uint8), fps=10)
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "a.mkv", np.zeros((3, 8, 8), np.uint8), fps=10)
    assert list(tmp_path.iterdir()) == []


def test_resample_frames_50_to_32():
    frames = np.arange(100)
    out = resample_frames(frames, 50, 32)
    assert len(out) == 64
    assert out[0] == 0 and out[-1] == 98
    assert np.all(np.diff(out) >= 1)
    assert np.all(np.abs(out - np.arange(64) * 50 / 32) <= 0.5)


def test_resample_frames_identity_and_upsample():
    frames = np.arange(37)
    np.testing.assert_array_equal(resample_frames(frames, 30, 30), frames)
    up = resample_frames(np.arange(10), 16, 32)
    assert len(up) == 20
    assert up.max() == 9
    with pytest.raises(ValueError):
        resample_frames(frames, 0, 32)


def test_resize_frames():
    frames = smooth_video(3, 40, 50)
    small = resize_frames(frames, 16)
    assert small.shape == (3, 16, 16) and small.dtype == np.uint8
    large = resize_frames(frames, 112)
    assert large.shape == (3, 112, 112)
    same = smooth_video(2, 16, 16)
    assert resize_frames(same, 16) is same
    flat = np.full((2, 30, 30), 77, np.uint8)
    assert np.all(resize_frames(flat, 12) == 77)


# --- manifest ---


def manifest_rows(names=("0001", "0X2", "0010"), splits=("TRAIN", "VAL", "TEST")):
    return pd.DataFrame(
        {
            "FileName": list(names),
            "EF": [55.5, 60.0, 30.25][: len(names)],
            "FrameHeight": [112] * len(names),
            "FrameWidth": [112] * len(names),
            "FPS": [50.0, 32.0, 30.0][: len(names)],
            "NumberOfFrames": [100, 64, 7][: len(names)],
            "Split": list(splits),
            "Dataset": ["dynamic"] * len(names),
            "Fold": [None, 3, None][: len(names)],
            "patient_id": ["007", "008", "009"][: len(names)],
        }
    )


def test_harmonise_columns_and_values():
    out = harmonise(manifest_rows())
    assert list(out.columns) == MANIFEST_COLUMNS
    assert out["FileName"].tolist() == ["0001", "0X2", "0010"]
    assert out["EF"].tolist() == [55.5, 60.0, 30.25]
    assert out["NumberOfFrames"].tolist() == [100, 64, 7]
    assert out["Fold"].isna().tolist() == [True, False, True]
    assert out["Fold"].iloc[1] == 3
    assert out["ESV"].isna().all() and out["View"].isna().all()
    for col in INT_COLUMNS:
        assert str(out[col].dtype) == "Int64"


def test_harmonise_unknown_column():
    df = manifest_rows().assign(Extra=1)
    with pytest.raises(ValueError, match="Extra"):
        harmonise(df)


def test_manifest_round_trip(tmp_path):
    path = tmp_path / "m.csv"
    write_manifest(manifest_rows(), path)
    back = read_manifest(path)
    assert list(back.columns) == MANIFEST_COLUMNS
    assert back["FileName"].tolist() == ["0001", "0X2", "0010"]
    assert back["patient_id"].tolist() == ["007", "008", "009"]
    assert back["Split"].tolist() == ["TRAIN", "VAL", "TEST"]
    assert back["EF"].tolist() == [55.5, 60.0, 30.25]
    for col in INT_COLUMNS:
        assert str(back[col].dtype) == "Int64"
    assert back["NumberOfFrames"].tolist() == [100, 64, 7]
    assert back["Fold"].iloc[1] == 3 and back["Fold"].isna().sum() == 2
    pd.testing.assert_frame_equal(back, harmonise(manifest_rows()))
    assert hidden(tmp_path) == []


def test_write_manifest_bad_split(tmp_path):
    df = manifest_rows(splits=("TRAIN", "valid", "TEST"))
    with pytest.raises(ValueError, match="0X2"):
        write_manifest(df, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_write_manifest_duplicates(tmp_path):
    df = manifest_rows(names=("a", "b", "a"))
    with pytest.raises(ValueError, match="duplicate"):
        write_manifest(df, tmp_path / "m.csv")
    assert list(tmp_path.iterdir()) == []


def test_read_manifest_missing_columns(tmp_path):
    path = tmp_path / "FileList.csv"
    pd.DataFrame({"FileName": ["a"], "EF": [50.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="not a harmonised manifest") as err:
        read_manifest(path)
    assert str(path) in str(err.value) and "Split" in str(err.value)


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 4])
def test_chunk_rows_partition(n_chunks):
    df = pd.DataFrame({"FileName": [f"v{i}" for i in range(10)]})
    chunks = [chunk_rows(df, c, n_chunks) for c in range(n_chunks)]
    seen = sorted(name for part in chunks for name in part["FileName"])
    assert seen == sorted(df["FileName"])
    assert sum(len(part) for part in chunks) == 10
    sizes = [len(part) for part in chunks]
    assert max(sizes) - min(sizes) <= 1
    assert chunks[0]["FileName"].tolist() == [f"v{i}" for i in range(0, 10, n_chunks)]


def test_chunk_rows_out_of_range():
    df = pd.DataFrame({"FileName": ["a"]})
    with pytest.raises(ValueError):
        chunk_rows(df, 2, 2)


def test_normalise_split():
    assert normalise_split("train", "s.csv", 2) == "TRAIN"
    assert normalise_split("Valid", "s.csv", 3) == "VAL"
    assert normalise_split(" VALIDATION ", "s.csv", 4) == "VAL"
    assert normalise_split("test", "s.csv", 5) == "TEST"
    with pytest.raises(DataError, match="foo") as err:
        normalise_split("foo", "splits.csv", 9)
    assert err.value.row == 9
    assert str(err.value).startswith("splits.csv, row 9: unknown split name 'foo'")


# --- tracings ---


def ellipse_lines(a, b, n_chords, cx=50.0, cy=50.0):
    """Long axis along y (length 2b) and chords at the centres of n equal disks."""
    half = 2 * b / n_chords
    ys = -b + (np.arange(n_chords) + 0.5) * half
    radius = a * np.sqrt(1 - (ys / b) ** 2)
    axis = [[cx, cy - b, cx, cy + b]]
    chords = np.stack([cx - radius, cy + ys, cx + radius, cy + ys], axis=1)
    return np.concatenate([np.array(axis), chords])


def test_disk_volume_ellipsoid():
    a, b = 12.0, 30.0
    volume = disk_volume(ellipse_lines(a, b, 40))
    assert volume == pytest.approx(4 / 3 * np.pi * a**2 * b, rel=0.01)


def test_disk_volume_scales_cubically():
    lines = ellipse_lines(9.0, 25.0, 20)
    rotation = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    rotated = np.concatenate([lines[:, :2] @ rotation.T, lines[:, 2:] @ rotation.T], axis=1)
    base = disk_volume(rotated)
    assert base == pytest.approx(disk_volume(lines), rel=1e-9)
    assert disk_volume(2.5 * rotated) == pytest.approx(2.5**3 * base, rel=1e-9)


def test_disk_volume_bad_shape():
    with pytest.raises(ValueError):
        disk_volume(np.zeros((1, 4)))


TRACINGS = """FileName,X1,Y1,X2,Y2,Frame
0X1.avi,10,0,10,20,5
0X1.avi,5,5,15,5,5
0X1.avi,6,10,14,10,5
0X1.avi,10,0,10,10,9
0X1.avi,8,5,12,5,9
0X2.avi,1,2,3,4,0
0X2.avi,2,3,4,5,0
"""


def test_read_volume_tracings(tmp_path):
    path = tmp_path / "VolumeTracings.csv"
    path.write_text(TRACINGS)
    tracings = read_volume_tracings(path)
    assert list(tracings) == ["0X1", "0X2"]
    assert sorted(tracings["0X1"]) == [5, 9]
    np.testing.assert_array_equal(
        tracings["0X1"][5], [[10, 0, 10, 20], [5, 5, 15, 5], [6, 10, 14, 10]]
    )
    np.testing.assert_array_equal(tracings["0X1"][9], [[10, 0, 10, 10], [8, 5, 12, 5]])
    np.testing.assert_array_equal(tracings["0X2"][0], [[1, 2, 3, 4], [2, 3, 4, 5]])


def test_read_volume_tracings_wrong_header(tmp_path):
    path = tmp_path / "VolumeTracings.csv"
    path.write_text(TRACINGS.replace("X1,Y1", "x1,y1", 1))
    with pytest.raises(DataError, match="header") as err:
        read_volume_tracings(path)
    assert err.value.row == 1
    assert str(err.value).startswith(f"{path}, row 1:")


def test_read_volume_tracings_nan_row(tmp_path):
    path = tmp_path / "VolumeTracings.csv"
    lines = TRACINGS.splitlines()
    lines[4] = "0X1.avi,10,,10,10,9"  # 5th line of the file (header is line 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="missing") as err:
        read_volume_tracings(path)
    assert err.value.row == 5
    assert str(err.value).startswith(f"{path}, row 5:")


def test_read_volume_tracings_missing_file(tmp_path):
    path = tmp_path / "VolumeTracings.csv"
    with pytest.raises(DataError, match="not found") as err:
        read_volume_tracings(path)
    assert err.value.file == str(path)


def test_tracing_ef():
    small = ellipse_lines(8.0, 25.0, 20)
    large = ellipse_lines(12.0, 30.0, 20)
    ed, es, edv, esv, ef = tracing_ef({3: small, 40: large})
    assert (ed, es) == (40, 3)
    assert edv == pytest.approx(disk_volume(large))
    assert esv == pytest.approx(disk_volume(small))
    assert edv > esv
    assert ef == pytest.approx(100 * (edv - esv) / edv)
    # ellipsoid volumes a²b: 64·25 vs 144·30 → EF = 100·(1 − 1600/4320)
    assert ef == pytest.approx(100 * (1 - 1600 / 4320), rel=0.01)


def test_tracing_ef_needs_two_frames():
    with pytest.raises(ValueError, match="two"):
        tracing_ef({0: ellipse_lines(8.0, 25.0, 10)})


# --- parts ---


def test_gather_parts(tmp_path):
    parts = [tmp_path / f"part_{i:03d}" for i in range(3)]
    specs = [
        (["0003", "0001"], ["bad_a"]),
        ([], ["bad_b", "bad_c"]),
        (["0002", "0000"], []),
    ]
    for part, (names, bad) in zip(parts, specs, strict=True):
        q = Quarantine("skip")
        records = []
        for name in names + bad:
            with q.guard():
                if name.startswith("bad"):
                    raise DataError(f"{name}.avi", "broken", "re-export", item=name)
                records.append({"FileName": name, "Path": f"{part.name}/{name}.mp4", "n": 1})
        write_part_index(part, records, q)
        assert (part / PART_INDEX).is_file() and (part / PART_QUARANTINE).is_file()

    index_out = tmp_path / "index.csv"
    quarantine_out = tmp_path / "quarantine.csv"
    index = gather_parts(parts, index_out, quarantine_out)
    assert index["FileName"].tolist() == ["0000", "0001", "0002", "0003"]
    assert index["Path"].tolist() == [
        "part_002/0000.mp4",
        "part_000/0001.mp4",
        "part_002/0002.mp4",
        "part_000/0003.mp4",
    ]
    back = pd.read_csv(index_out, dtype={"FileName": str})
    assert back["FileName"].tolist() == ["0000", "0001", "0002", "0003"]
    merged = pd.read_csv(quarantine_out, dtype=str, keep_default_na=False)
    assert list(merged.columns) == QUARANTINE_COLUMNS
    assert merged["item"].tolist() == ["bad_a", "bad_b", "bad_c"]
    assert merged["file"].tolist() == ["bad_a.avi", "bad_b.avi", "bad_c.avi"]
    assert hidden(tmp_path) == []


def test_read_manifest_keeps_names_that_look_missing(tmp_path):
    from echogen.data.manifest import read_manifest, write_manifest

    df = pd.DataFrame(
        {"FileName": ["NA", "null"], "EF": [50.0, None], "Split": ["TRAIN", "TEST"],
         "patient_id": ["nan", "p2"]}
    )  # fmt: skip
    write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert back["FileName"].tolist() == ["NA", "null"]
    assert back["patient_id"].tolist() == ["nan", "p2"]
    assert back["EF"].isna().tolist() == [False, True]


def test_atomic_writes_get_umask_permissions(tmp_path):
    import os

    from echogen.data.io import atomic_dir, atomic_path

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
