"""jpg frame folders: names, StyleGAN-V reference sets, CardiacNet frame folders."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from echogen.data.errors import DataError
from echogen.data.frames import (
    extract_frames,
    extract_reference_frames,
    frame_name,
    quarantine_path,
    write_frames,
)
from echogen.data.manifest import write_manifest
from echogen.data.video import write_video

SIZE = 16
STEP = 3  # frame i has pixel value 3 * i (MJPG and jpg are off by a level or two)


def encoded_video(n_frames: int) -> np.ndarray:
    values = (STEP * np.arange(n_frames)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None], (n_frames, SIZE, SIZE)).copy()


def make_manifest(tmp_path, videos: dict[str, int], fps: float = 32, splits=None, name="m.csv"):
    """Write ``{FileName: n_frames}`` videos (reused if already there) and a manifest."""
    splits = splits or {}
    rows = []
    for i, (file_name, n) in enumerate(videos.items()):
        path = tmp_path / "Videos" / f"{file_name}.avi"
        if not path.exists():
            write_video(path, encoded_video(n), fps)
        rows.append(
            {
                "FileName": file_name,
                "FPS": fps,
                "NumberOfFrames": n,
                "Split": splits.get(file_name, "TRAIN"),
                "Path": str(path),
                "class_name": "ASD" if i % 2 == 0 else "Non-ASD",
                "class_id": i % 2,
            }
        )
    manifest = tmp_path / name
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest


def frame_values(folder: Path) -> np.ndarray:
    names = sorted(p.name for p in folder.iterdir())
    return np.array([cv2.imread(str(folder / n), cv2.IMREAD_GRAYSCALE).mean() for n in names])


# --- names and writing ---


def test_frame_name_widths_sort_in_frame_order():
    assert frame_name(7, 12) == "0007.jpg"
    names = [frame_name(i, 12) for i in range(12)]
    assert sorted(names) == names
    assert frame_name(9999, 10000) == "9999.jpg"  # 4 digits still suffice
    assert frame_name(0, 10001) == "00000.jpg" and frame_name(10000, 10001) == "10000.jpg"
    names = [frame_name(i, 10001) for i in range(10001)]
    assert sorted(names) == names
    with pytest.raises(ValueError, match="out of range"):
        frame_name(12, 12)


def test_write_frames(tmp_path):
    write_frames(encoded_video(12), tmp_path / "v")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        frame_name(i, 12) for i in range(12)
    ]
    np.testing.assert_allclose(frame_values(tmp_path / "v"), STEP * np.arange(12), atol=1.5)
    assert [p.name for p in tmp_path.iterdir()] == ["v"]  # no temporary folder left behind
    with pytest.raises(ValueError, match="uint8"):
        write_frames(encoded_video(3).astype(float), tmp_path / "w")


# --- StyleGAN-V reference set ---


def reference(tmp_path, manifest, out="ref", **kwargs):
    kwargs = {"frames": 8, "seed": 0, **kwargs}
    return extract_reference_frames(manifest, tmp_path / out, tmp_path / f"{out}.csv", **kwargs)


def test_reference_set_layout_and_content(tmp_path):
    videos = {"b": 40, "a": 30, "short": 5, "val": 40}
    manifest = make_manifest(tmp_path, videos, splits={"val": "VAL"})
    index = reference(tmp_path, manifest)

    assert index["FileName"].tolist() == ["a", "b"]  # sorted; short dropped; VAL left out
    assert list(index.columns) == ["FileName", "start", "frames", "fps", "Path", "policy"]
    assert (index["policy"] == "seeded_windows").all()
    assert (index["frames"] == 8).all() and (index["fps"] == 32).all()
    assert pd.read_csv(tmp_path / "ref.csv")["start"].tolist() == index["start"].tolist()
    files = [p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*") if p.is_file()]
    assert len(files) == 16 and all(len(f.parts) == 2 and f.suffix == ".jpg" for f in files)
    for row in index.itertuples():
        assert 0 <= row.start <= videos[row.FileName] - 8
        expected = STEP * np.arange(row.start, row.start + 8)
        np.testing.assert_allclose(frame_values(tmp_path / "ref" / row.FileName), expected, atol=2)
    assert len(pd.read_csv(quarantine_path(tmp_path / "ref.csv"))) == 0


def test_echonet_synthetic_policy_follows_create_reference_dataset(tmp_path):
    """FileList shuffled with random_state 42 (all splits, then TRAIN kept in that order), videos
    shorter than frames/fps seconds skipped, linspace resampling, the first frames, the count."""
    videos = {f"v{i}": 30 + 4 * i for i in range(8)} | {"short": 10, "val": 60}
    manifest = make_manifest(tmp_path, videos, fps=48, splits={"val": "VAL"})
    index = reference(tmp_path, manifest, policy="echonet_synthetic", max_videos={8: 4, 16: 2})

    table = pd.read_csv(manifest)
    order = table.sample(frac=1, random_state=42)  # create_reference_dataset.py's shuffle
    expected = [
        n
        for n, f, s in zip(order["FileName"], order["NumberOfFrames"], order["Split"], strict=True)
        if s == "TRAIN" and f / 48 >= 8 / 32
    ][:4]
    assert index["FileName"].tolist() == expected
    assert expected != sorted(expected)  # the shuffle, not FileName order
    assert (index["start"] == 0).all() and (index["policy"] == "echonet_synthetic").all()
    for name in expected:
        n = videos[name]
        picked = np.linspace(0, n, int(np.floor(32 / 48 * n)), endpoint=False).round()[:8]
        np.testing.assert_allclose(frame_values(tmp_path / "ref" / name), STEP * picked, atol=2)
    other = reference(tmp_path, manifest, out="r2", policy="echonet_synthetic", shuffle_seed=0)
    assert other["FileName"].tolist() != index["FileName"].tolist()
    with pytest.raises(ValueError, match="no entry for 8-frame"):
        reference(tmp_path, manifest, out="r3", policy="echonet_synthetic", max_videos={16: 2})
    with pytest.raises(ValueError, match="policy"):
        reference(tmp_path, manifest, out="r4", policy="random")


def test_reference_starts_deterministic_per_video(tmp_path):
    manifest = make_manifest(tmp_path, {"a": 60, "c": 60})
    first = reference(tmp_path, manifest, out="r1")
    again = reference(tmp_path, manifest, out="r2")
    pd.testing.assert_frame_equal(first, again)

    bigger = make_manifest(tmp_path, {"a": 60, "b": 60, "c": 60}, name="bigger.csv")
    with_b = reference(tmp_path, bigger, out="r3").set_index("FileName")["start"]
    assert with_b[["a", "c"]].tolist() == first["start"].tolist()

    starts = {
        seed: reference(tmp_path, bigger, out="r4", seed=seed)["start"].tolist()
        for seed in range(4)
    }
    assert len({tuple(s) for s in starts.values()}) > 1  # the seed matters


def test_reference_resamples_to_fps(tmp_path):
    # 50 frames at 50 fps -> 32 frames at 32 fps: qualifies for 32 frames, start 0
    manifest = make_manifest(tmp_path, {"a": 50}, fps=50)
    index = reference(tmp_path, manifest, frames=32)
    assert index["start"].tolist() == [0]
    expected = STEP * np.round(np.arange(32) * 50 / 32)
    np.testing.assert_allclose(frame_values(tmp_path / "ref" / "a"), expected, atol=2)


def test_reference_drops_short_videos_and_caps(tmp_path, caplog):
    manifest = make_manifest(tmp_path, {"a": 4, "b": 20, "c": 20, "d": 20, "e": 3})
    with caplog.at_level(logging.INFO, logger="echogen.data.frames"):
        index = reference(tmp_path, manifest, max_videos=2)
    assert index["FileName"].tolist() == ["b", "c"]
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == ["b", "c"]
    assert "a (4 frames)" in caplog.text and "e (3 frames)" not in caplog.text  # stopped at the cap
    assert "2 videos kept" in caplog.text


def test_reference_zero_qualifying_names_longest(tmp_path):
    manifest = make_manifest(tmp_path, {"a": 6, "b": 9})
    with pytest.raises(
        DataError, match=r"m\.csv: no TRAIN video has 10 frames.*longest has 9"
    ) as err:
        reference(tmp_path, manifest, frames=10)
    assert "lower the number of frames" in str(err.value)
    assert not (tmp_path / "ref").exists() and not (tmp_path / "ref.csv").exists()


def test_reference_corrupt_video_skip(tmp_path):
    manifest = make_manifest(tmp_path, {"a": 20, "bad": 20, "c": 20})
    (tmp_path / "Videos" / "bad.avi").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DataError, match="bad.avi"):
        reference(tmp_path, manifest)
    index = reference(tmp_path, manifest, on_error="skip")
    assert index["FileName"].tolist() == ["a", "c"]
    quarantine = pd.read_csv(quarantine_path(tmp_path / "ref.csv"))
    assert len(quarantine) == 1 and quarantine.loc[0, "file"].endswith("bad.avi")


# --- every frame (CardiacNet classification) ---


def test_extract_frames_counts(tmp_path):
    manifest = make_manifest(tmp_path, {"p1": 5, "p2": 12}, splits={"p2": "TEST"})
    index = extract_frames(manifest, tmp_path / "frames", tmp_path / "frames.csv")
    assert index["n_frames"].tolist() == [5, 12]
    assert index["Split"].tolist() == ["TRAIN", "TEST"]
    assert index["class_name"].tolist() == ["ASD", "Non-ASD"]
    assert index["class_id"].tolist() == [0, 1]
    assert index["dir"].tolist() == [str(tmp_path / "frames" / n) for n in ["p1", "p2"]]
    for row in index.itertuples():
        assert len(list(Path(row.dir).glob("*.jpg"))) == row.n_frames
    np.testing.assert_allclose(
        frame_values(tmp_path / "frames" / "p2"), STEP * np.arange(12), atol=2
    )
    assert pd.read_csv(tmp_path / "frames.csv")["n_frames"].tolist() == [5, 12]
    assert len(pd.read_csv(quarantine_path(tmp_path / "frames.csv"))) == 0
