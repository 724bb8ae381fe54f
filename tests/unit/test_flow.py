"""Farneback flow: recovers known shifts, scales vectors on resize, chunked part output."""

import cv2
import numpy as np
import pandas as pd
import pytest

from echogen.data.errors import DataError
from echogen.data.flow import FARNEBACK_PAPER, compute_flow, farneback_flow
from echogen.data.manifest import write_manifest
from echogen.data.video import write_video


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture in 0..255 (float), so every region has trackable gradients."""
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigmaX=3)
    return (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255


def shifted_clip(n_frames: int, height: int, width: int, dx: int, dy: int) -> np.ndarray:
    """Clip whose content moves by (dx, dy) pixels per frame (wrapping at the edges)."""
    base = texture(height, width)
    frames = [np.roll(base, (t * dy, t * dx), axis=(0, 1)) for t in range(n_frames)]
    return np.stack(frames).round().astype(np.uint8)


def centre(flow: np.ndarray, margin: int) -> np.ndarray:
    """Mean (x, y) flow away from the wrapped borders."""
    return flow[:, margin:-margin, margin:-margin].astype(np.float64).mean(axis=(0, 1, 2))


def test_full_resolution_flow_recovers_shift():
    frames = shifted_clip(4, 64, 96, dx=2, dy=0)
    flow = farneback_flow(frames)
    assert flow.shape == (3, 64, 96, 2)
    assert flow.dtype == np.float16
    np.testing.assert_allclose(centre(flow, 16), [2.0, 0.0], atol=0.15)


def test_resized_flow_is_in_output_pixels_per_axis():
    # 64 x 96 -> 48 x 48: x scales by 1/2, y by 3/4.
    frames = shifted_clip(4, 64, 96, dx=2, dy=2)
    full = farneback_flow(frames)
    np.testing.assert_allclose(centre(full, 16), [2.0, 2.0], atol=0.15)
    small = farneback_flow(frames, FARNEBACK_PAPER, size=48)
    assert small.shape == (3, 48, 48, 2)
    assert small.dtype == np.float16
    np.testing.assert_allclose(centre(small, 10), [1.0, 1.5], atol=0.12)


def test_flow_rejects_bad_frames():
    with pytest.raises(ValueError, match="T >= 2"):
        farneback_flow(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        farneback_flow(np.zeros((3, 8, 8), np.float32))


def write_videos(tmp_path, clips: dict[str, np.ndarray]) -> str:
    """Write AVIs and a manifest listing them; returns the manifest path."""
    rows = []
    for name, frames in clips.items():
        path = tmp_path / "videos" / f"{name}.avi"
        write_video(path, frames, fps=30)
        rows.append(
            {"FileName": name, "Split": "TRAIN", "NumberOfFrames": len(frames), "Path": str(path)}
        )
    manifest = tmp_path / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest


def test_compute_flow_writes_part(tmp_path):
    clip = shifted_clip(5, 64, 64, dx=2, dy=0)
    manifest = write_videos(tmp_path, {"a": clip, "b": clip[:4], "c": clip[:3]})
    part = tmp_path / "flow" / "part_001"
    compute_flow(manifest, 1, 2, part, size=32)
    index = pd.read_csv(part / "index.csv")
    assert index["FileName"].tolist() == ["b"]  # chunk 1 of 2 takes the second row
    assert index["Path"].tolist() == [str(part / "b_flow.npy")]
    assert index["NumberOfFrames"].tolist() == [4]
    flow = np.load(part / "b_flow.npy")
    assert flow.shape == (3, 32, 32, 2) and flow.dtype == np.float16
    # MJPG noise aside, the +2 px shift at 64 px is +1 px at 32 px.
    np.testing.assert_allclose(centre(flow, 8), [1.0, 0.0], atol=0.25)
    assert pd.read_csv(part / "quarantine.csv").empty


def test_compute_flow_quarantines_single_frame_video(tmp_path):
    clip = shifted_clip(3, 32, 32, dx=1, dy=0)
    manifest = write_videos(tmp_path, {"one": clip[:1], "ok": clip})
    with pytest.raises(DataError, match=r"one\.avi: video has a single frame"):
        compute_flow(manifest, 0, 1, tmp_path / "raise_part")
    assert not (tmp_path / "raise_part").exists()  # nothing half-written
    part = tmp_path / "skip_part"
    compute_flow(manifest, 0, 1, part, on_error="skip")
    assert pd.read_csv(part / "index.csv")["FileName"].tolist() == ["ok"]
    assert np.load(part / "ok_flow.npy").shape == (2, 32, 32, 2)
    quarantine = pd.read_csv(part / "quarantine.csv")
    assert quarantine["item"].tolist() == ["one"]
    assert quarantine["file"].str.endswith("one.avi").all()
