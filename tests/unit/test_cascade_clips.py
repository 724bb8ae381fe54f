"""EchoDiffusion's training clips (diffusion/dataset.py): window, EF embedding, cond frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage
import torch

from echogen.data.cascade_clips import CascadeClipDataset, cascade_clip_spec
from echogen.data.errors import DataError
from echogen.data.video import read_video, write_video

SIZE = 16
STEP = 4  # native frame k is the flat grey STEP * k + 8 (MJPG keeps it within a level or two)


def _write(path, n_frames: int, fps: float) -> None:
    levels = (STEP * np.arange(n_frames) + 8).astype(np.uint8)
    write_video(path, np.broadcast_to(levels[:, None, None], (n_frames, SIZE, SIZE)).copy(), fps)


@pytest.fixture
def rows(tmp_path):
    records = []
    for name, n, fps, ef in [("long", 50, 25.0, 40.0), ("short", 12, 25.0, 62.5)]:
        _write(tmp_path / f"{name}.avi", n, fps)
        records.append(
            {"FileName": name, "EF": ef, "FPS": fps, "Path": str(tmp_path / f"{name}.avi")}
        )
    return pd.DataFrame(records)


def test_spec_is_a_stage_window():
    spec = cascade_clip_spec(fps=8, duration=2.0)
    assert (spec.frames, spec.period, spec.fps, spec.resample) == (16, 1, 8.0, "linear")
    assert (spec.normalisation, spec.pad, spec.channels) == ("unit", 0, 3)
    assert cascade_clip_spec(32).frames == 64
    with pytest.raises(ValueError, match="at least 2 frames"):
        cascade_clip_spec(fps=0.5, duration=2.0)


def test_window_is_a_linear_resampled_slice_and_cond_a_frame_of_it(rows):
    spec = cascade_clip_spec(fps=10, duration=1.0, size=SIZE)  # 10 frames
    dataset = CascadeClipDataset(rows, spec, seed=3)
    native = read_video(rows["Path"][0]).astype(np.float64)  # 50 frames at 25 fps
    resampled = scipy.ndimage.zoom(native.astype(np.uint8), (10 / 25, 1, 1), order=1)  # 20 frames
    starts, conds = set(), set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        video, ef, cond = dataset[0]
        assert video.shape == (3, 10, SIZE, SIZE) and video.dtype == torch.float32
        assert torch.equal(video[0], video[2])
        levels = video[0].mean(dim=(1, 2)).numpy() * 255
        start = int(np.argmin([abs(resampled[s].mean() - levels[0]) for s in range(11)]))
        np.testing.assert_allclose(
            levels, resampled[start : start + 10].mean(axis=(1, 2)), atol=1e-3
        )
        starts.add(start)
        matches = [k for k in range(10) if torch.equal(cond, video[:, k])]
        assert matches
        conds.add(matches[0])
        assert ef.shape == (1, 1) and ef.item() == pytest.approx(0.40)
    assert len(starts) > 3 and len(conds) > 3  # both drawn, per epoch
    dataset.set_epoch(5)
    again = CascadeClipDataset(rows, spec, seed=3)
    again.set_epoch(5)
    for a, b in zip(dataset[0], again[0], strict=True):
        assert torch.equal(a, b)


def test_short_video_is_zero_padded(rows):
    spec = cascade_clip_spec(fps=25, duration=1.0, size=SIZE)  # 25 frames, the video has 12
    video, ef, _ = CascadeClipDataset(rows, spec, seed=0)[1]
    assert video.shape[1] == 25
    assert video[:, 12:].abs().max() == 0 and video[:, :12].min() > 0
    assert ef.item() == pytest.approx(0.625)


def test_bad_rows_name_the_file_and_line(rows):
    bad = rows.copy()
    bad.loc[1, "EF"] = np.nan
    bad.attrs["source"] = "manifest.csv"
    with pytest.raises(DataError, match="short"):
        CascadeClipDataset(bad, cascade_clip_spec(8), seed=0)
    with pytest.raises(ValueError, match="cascade_clip_spec"):
        from echogen.data.ef_clips import ClipSpec

        CascadeClipDataset(rows, ClipSpec(normalisation="unit", pad=4), seed=0)


def test_end_diastole_conditions_on_the_traced_frame_whatever_the_window(rows):
    """cond_frame="end_diastole" (a deviation): the manifest's EDFrame, at the clip's size."""
    traced = rows.assign(EDFrame=[7, 3])
    spec = cascade_clip_spec(fps=10, duration=1.0, size=SIZE)
    dataset = CascadeClipDataset(traced, spec, seed=3, cond_frame="end_diastole")
    window = CascadeClipDataset(traced, spec, seed=3)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        window.set_epoch(epoch)
        video, ef, cond = dataset[0]
        reference_video, reference_ef, _ = window[0]
        assert torch.equal(video, reference_video) and torch.equal(ef, reference_ef)
        assert cond.shape == (3, SIZE, SIZE) and torch.equal(cond[0], cond[2])
        assert cond.mean().item() * 255 == pytest.approx(STEP * 7 + 8, abs=2)
    assert dataset[1][2].mean().item() * 255 == pytest.approx(STEP * 3 + 8, abs=2)
    cond = dataset[0][2]
    cond += 1  # items are copies: the kept frame is not changed through them
    assert dataset[0][2].max() <= 1


def test_end_diastole_needs_a_traced_frame_in_every_row(rows):
    spec = cascade_clip_spec(fps=10, duration=1.0, size=SIZE)
    with pytest.raises(DataError, match="column 'EDFrame' is missing.*cond_frame to window"):
        CascadeClipDataset(rows, spec, seed=0, cond_frame="end_diastole")
    untraced = rows.assign(EDFrame=[7, np.nan])
    untraced.attrs["source"] = "manifest.csv"
    with pytest.raises(DataError, match=r"manifest.csv, row 3: video short has no EDFrame"):
        CascadeClipDataset(untraced, spec, seed=0, cond_frame="end_diastole")
    outside = CascadeClipDataset(
        rows.assign(EDFrame=[7, 40]), spec, seed=0, cond_frame="end_diastole"
    )
    with pytest.raises(DataError, match="EDFrame 40 is outside the video's 12 frames"):
        outside[1]
    with pytest.raises(ValueError, match="cond_frame must be one of"):
        CascadeClipDataset(rows, spec, seed=0, cond_frame="ED")
