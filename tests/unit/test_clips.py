"""D'ARTAGNAN clip windows and chunked clip extraction from a harmonised manifest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echogen.data.clips import (
    METAINFO_COLUMNS,
    dartagnan_window,
    extract_dartagnan_clips,
    gather_dartagnan,
)
from echogen.data.errors import DataError
from echogen.data.manifest import write_manifest
from echogen.data.video import read_video, write_video

SIZE = 32
STEP = 3  # frame i has pixel value 3 * i: MJPG is off by at most 1 level, so frames stay distinct


def encoded_video(n_frames: int) -> np.ndarray:
    values = (STEP * np.arange(n_frames)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None], (n_frames, SIZE, SIZE)).copy()


def make_manifest(tmp_path, videos: list[dict]):
    """Write each video (``n`` frames at ``fps``) and a manifest listing them."""
    rows = []
    for i, spec in enumerate(videos):
        path = tmp_path / "Videos" / f"{spec['name']}.avi"
        write_video(path, encoded_video(spec["n"]), spec["fps"])
        rows.append(
            {
                "FileName": spec["name"],
                "EF": 50.0 + i,
                "ESV": 40.0 + i,
                "EDV": 80.0 + i,
                "FrameHeight": SIZE,
                "FrameWidth": SIZE,
                "FPS": spec["fps"],
                "NumberOfFrames": spec["n"],
                "Split": spec.get("split", "TRAIN"),
                "Dataset": "dynamic",
                "Path": str(path),
                "EDFrame": spec.get("ed"),
                "ESFrame": spec.get("es"),
            }
        )
    manifest = tmp_path / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest


# --- window arithmetic (hand-computed) ---


def test_window_centred_at_32fps():
    # midpoint 110 sits at clip position 32: window 78..141
    window = dartagnan_window(ed=100, es=120, n_frames_native=200, fps_native=32)
    np.testing.assert_array_equal(window, np.arange(78, 142))
    assert window.dtype.kind == "i" and len(window) == 64


def test_window_shifted_inside_video_not_padded():
    # midpoint 20 would start at -12: shifted to 0..63
    np.testing.assert_array_equal(dartagnan_window(10, 30, 200, 32), np.arange(64))
    # midpoint 185 would end at 216: shifted to 136..199
    np.testing.assert_array_equal(dartagnan_window(190, 180, 200, 32), np.arange(136, 200))


def test_window_video_shorter_than_clip_repeats_last_frame():
    window = dartagnan_window(5, 20, n_frames_native=40, fps_native=32)
    np.testing.assert_array_equal(window, np.r_[np.arange(40), np.full(24, 39)])


def test_window_50_to_32_fps():
    # 300 frames at 50 fps -> 192 frames at 32 fps, native index of clip frame j = round(j * 1.5625)
    # midpoint (100 + 140) / 2 = 120 native = 76.8 resampled -> frame 76 at position 32, start 44
    window = dartagnan_window(ed=100, es=140, n_frames_native=300, fps_native=50)
    assert window[0] == 69  # round(44 * 1.5625 = 68.75)
    assert window[1] == 70  # round(70.3125)
    assert window[2] == 72  # round(71.875)
    assert window[12] == 88  # round(87.5): numpy rounds half to even
    assert window[32] == 119  # round(118.75)
    assert window[63] == 167  # round(167.1875)
    np.testing.assert_array_equal(window, np.round(np.arange(44, 108) * 50 / 32).astype(int))


def test_window_50_to_32_fps_short_video():
    # 60 frames at 50 fps -> 38 at 32 fps; last one is native round(37 * 1.5625) = 58
    window = dartagnan_window(10, 30, n_frames_native=60, fps_native=50)
    assert len(window) == 64
    assert window[37] == 58
    np.testing.assert_array_equal(window[38:], np.full(26, 58))


# --- extraction ---


def test_clips_hold_the_right_native_frames(tmp_path):
    manifest = make_manifest(tmp_path, [{"name": "a", "n": 80, "fps": 50, "ed": 30, "es": 50}])
    part = tmp_path / "part_000"
    extract_dartagnan_clips(manifest, 0, 1, part, frames=16, fps=32)

    # 80 frames at 50 fps -> 51 at 32 fps; midpoint 40 native = 25.6 -> start 25 - 8 = 17
    window = np.round(np.arange(17, 33) * 50 / 32).astype(int)
    assert window[0] == 27 and window[-1] == 50
    clip = np.load(part / "a.npy")
    assert clip.dtype == np.float16 and clip.shape == (16, SIZE, SIZE)
    decoded = read_video(tmp_path / "Videos" / "a.avi")
    np.testing.assert_array_equal(clip, (decoded[window] / 255.0).astype(np.float16))
    # the pixel values identify the frames: 3 * index, within MJPG's one-level error
    np.testing.assert_allclose(clip.astype(float).mean(axis=(1, 2)) * 255, STEP * window, atol=1.5)

    meta = pd.read_csv(part / "index.csv")
    assert list(meta.columns) == METAINFO_COLUMNS
    row = meta.iloc[0]
    assert row["Path"] == str(part / "a.npy")
    assert (row["ED"], row["ES"]) == (30, 50)
    assert row["ED_clip"] == 2  # native 30 = round(19 * 1.5625), position 19 - 17
    assert row["ES_clip"] == 15  # native 50 = round(32 * 1.5625), position 32 - 17
    assert (row["FPS"], row["NumberOfFrames"]) == (32, 16)
    assert (row["EF"], row["ESV"], row["EDV"], row["Split"]) == (50.0, 40.0, 80.0, "TRAIN")


def test_traced_frames_outside_clip_are_minus_one(tmp_path):
    manifest = make_manifest(tmp_path, [{"name": "a", "n": 100, "fps": 32, "ed": 2, "es": 90}])
    part = tmp_path / "part"
    extract_dartagnan_clips(manifest, 0, 1, part, frames=16, fps=32)
    meta = pd.read_csv(part / "index.csv")  # midpoint 46 -> window 38..53
    assert (meta.loc[0, "ED_clip"], meta.loc[0, "ES_clip"]) == (-1, -1)


def test_chunks_and_gather(tmp_path):
    specs = [{"name": n, "n": 40, "fps": 32, "ed": 10, "es": 20} for n in ["c", "a", "b"]]
    manifest = make_manifest(tmp_path, specs)
    parts = [tmp_path / f"part_{i:03d}" for i in range(2)]
    for i, part in enumerate(parts):
        extract_dartagnan_clips(manifest, i, 2, part, frames=8, fps=32)
    assert sorted(p.name for p in parts[0].glob("*.npy")) == ["b.npy", "c.npy"]  # rows 0 and 2
    assert sorted(p.name for p in parts[1].glob("*.npy")) == ["a.npy"]
    meta = gather_dartagnan(parts, tmp_path / "metainfo.csv", tmp_path / "quarantine.csv")
    assert meta["FileName"].tolist() == ["a", "b", "c"]
    assert list(pd.read_csv(tmp_path / "metainfo.csv").columns) == METAINFO_COLUMNS
    assert len(pd.read_csv(tmp_path / "quarantine.csv")) == 0


def test_missing_traced_frames_names_manifest_and_row(tmp_path):
    specs = [
        {"name": "good", "n": 40, "fps": 32, "ed": 10, "es": 20},
        {"name": "untraced", "n": 40, "fps": 32},
    ]
    manifest = make_manifest(tmp_path, specs)
    with pytest.raises(
        DataError, match=r"manifest\.csv, row 3: video untraced has no EDFrame"
    ) as err:
        extract_dartagnan_clips(manifest, 0, 1, tmp_path / "part", frames=8)
    assert "VolumeTracings" in str(err.value)


def test_corrupt_video_quarantined_in_skip_mode(tmp_path):
    specs = [
        {"name": "a", "n": 40, "fps": 32, "ed": 10, "es": 20},
        {"name": "broken", "n": 40, "fps": 32, "ed": 10, "es": 20},
        {"name": "c", "n": 40, "fps": 32, "ed": 10, "es": 20},
    ]
    manifest = make_manifest(tmp_path, specs)
    (tmp_path / "Videos" / "broken.avi").write_bytes(b"not a video at all" * 100)
    part = tmp_path / "part"
    with pytest.raises(DataError, match="broken.avi"):
        extract_dartagnan_clips(manifest, 0, 1, part, frames=8)

    extract_dartagnan_clips(manifest, 0, 1, part, frames=8, on_error="skip")
    assert pd.read_csv(part / "index.csv")["FileName"].tolist() == ["a", "c"]
    assert not (part / "broken.npy").exists()
    quarantine = pd.read_csv(part / "quarantine.csv")
    assert len(quarantine) == 1 and quarantine.loc[0, "file"].endswith("broken.avi")
