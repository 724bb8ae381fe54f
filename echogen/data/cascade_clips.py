"""EchoDiffusion's training clips: a video window, its EF as a one-token embedding, a frame.

EchoDiffusion (Reynaud et al., MICCAI 2023; ``diffusion/dataset.py`` of
HReynaud/EchoDiffusion, ``/work/shared/PAPERS.md`` §3) trains every stage of its cascade on
Dynamic videos resampled in time from their FPS to the stage's frame rate by linear
interpolation, scaled by 1/255, cut to a random window of ``duration`` seconds (zero-padded
at the end when the video is shorter), conditioned on EF/100 passed as a ``(1, 1)`` "text
embedding" and on a conditioning image: a random frame of the same window.

The window is :class:`~echogen.data.ef_clips.EFClipDataset`'s training clip with
``ClipSpec(frames=fps * duration, period=1, fps=fps, resample="linear",
normalisation="unit")`` (:func:`cascade_clip_spec`), so loading, resampling, padding and
bad-row errors are the regressors'. Every draw (the window start, the conditioning frame)
comes from ``(seed, epoch, index)``, so an item does not depend on workers or resumes.
EchoDiffusion draws the start with ``np.random.randint(0, T - L)``, which never picks the
last window; echogen draws every start ``0 .. T - L``.

``cond_frame="end_diastole"`` is a deviation, off by default: the conditioning image is then
the video's traced end-diastolic frame (the manifest's ``EDFrame``), whatever the window. A
frame of the clip shows the LV somewhere between its end-systolic and end-diastolic size and
so gives part of the EF away; at end-diastole it shows the LV's size alone, and the EF must
come from the EF embedding (docs/benchmarks.md, EchoDiffusion's effect on the phantom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echogen.data.ef_clips import CSV_LINE_OFFSET, ClipSpec, EFClipDataset
from echogen.data.errors import DataError
from echogen.data.video import read_video, resize_frames

# Which frame conditions each item: a random frame of the clip's window (EchoDiffusion), or
# the video's traced end-diastolic frame.
COND_FRAMES = ("window", "end_diastole")


def cascade_clip_spec(
    fps: float, duration: float = 2.0, size: int = 112, channels: int = 3
) -> ClipSpec:
    """The clip settings of one cascade stage's training data.

    Args:
        fps: the stage's frame rate (EchoDiffusion: 8, 16 or 32).
        duration: window length in seconds (2.0 in every published stage).
        size: frames are resized to ``size × size`` (the cascade's largest image size; the
            trainer downsamples for lower stages, as imagen does).
        channels: 3 = grey repeated to RGB (EchoDiffusion's ``grayscale: False`` reads RGB
            AVIs whose channels agree), 1 = grey.

    Raises:
        ValueError: a window shorter than 2 frames.
    """
    frames = round(fps * duration)
    if frames < 2:
        raise ValueError(f"fps * duration must give at least 2 frames, got {fps} * {duration}")
    return ClipSpec(
        frames=frames,
        period=1,
        fps=float(fps),
        size=size,
        channels=channels,
        normalisation="unit",
        pad=0,
        resample="linear",
        train_start="random",
        clip_start="first",
    )


class CascadeClipDataset(torch.utils.data.Dataset):
    """``(video, ef_embedding, cond_image)`` items of manifest rows for cascade training.

    Args:
        rows: manifest rows with FileName, EF, FPS and Path (checked up front; a bad row is a
            :class:`~echogen.data.errors.DataError` naming the file and line).
        spec: from :func:`cascade_clip_spec`.
        seed: seed of the per-item draws.
        root: folder that the ``Path`` column is relative to.
        cond_frame: one of :data:`COND_FRAMES`; ``"end_diastole"`` needs an ``EDFrame`` in
            every row.

    Items:
        ``video`` ``float32 (C, T, H, W)`` in ``[0, 1]``; ``ef`` ``float32 (1, 1)``, EF/100;
        ``cond`` ``float32 (C, H, W)``: a frame of ``video`` drawn uniformly, or the video's
        end-diastolic frame at the clip's size.

    Raises:
        DataError: a bad row, or under ``"end_diastole"`` a row without ``EDFrame``.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        spec: ClipSpec,
        seed: int,
        root: str | Path = ".",
        cond_frame: str = "window",
    ):
        if spec.normalisation != "unit" or spec.period != 1 or spec.pad:
            raise ValueError(
                "cascade clips are consecutive frames scaled by 1/255 without crops; build the "
                "spec with cascade_clip_spec"
            )
        if cond_frame not in COND_FRAMES:
            raise ValueError(f"cond_frame must be one of {COND_FRAMES}, got {cond_frame!r}")
        self.clips = EFClipDataset(rows, spec, train=True, seed=seed, root=root)
        self.seed = seed
        self.file_names = self.clips.file_names
        self.cond_frame = cond_frame
        self.ed_frames = _ed_frames(rows) if cond_frame == "end_diastole" else None
        self._ed_cache: dict[int, torch.Tensor] = {}  # grey uint8 (size, size) per video

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` uses."""
        self.clips.set_epoch(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        video, ef = self.clips[i]
        if self.ed_frames is not None:
            return video, (ef / 100.0).reshape(1, 1), self.end_diastole(i)
        # Its own stream: the window's draws stay those of EFClipDataset.
        rng = np.random.default_rng([self.seed, self.clips.epoch, i, 1])
        cond = video[:, int(rng.integers(video.shape[1]))]
        return video, (ef / 100.0).reshape(1, 1), cond.clone()

    def end_diastole(self, i: int) -> torch.Tensor:
        """Video ``i``'s traced end-diastolic frame, ``float32 (C, size, size)`` in ``[0, 1]``
        (decoded once per dataset, then kept as one grey ``uint8`` frame per video: 12 kB at
        112 px)."""
        if i not in self._ed_cache:
            spec, path = self.clips.spec, self.clips.paths[i]
            frames = read_video(path)
            ed = int(self.ed_frames[i])
            if not 0 <= ed < len(frames):
                raise DataError(
                    str(path),
                    f"EDFrame {ed} is outside the video's {len(frames)} frames",
                    "re-run the dataset's ingestion rule (its tracings give EDFrame), or set "
                    "the cascade's cond_frame to window",
                    item=self.file_names[i],
                )
            grey = resize_frames(frames[ed : ed + 1], spec.size)[0]
            self._ed_cache[i] = torch.from_numpy(np.ascontiguousarray(grey))
        grey = self._ed_cache[i].to(torch.float32) / 255.0
        return grey.expand(self.clips.spec.channels, *grey.shape).clone()


def _ed_frames(rows: pd.DataFrame) -> np.ndarray:
    """Every row's ``EDFrame`` as integers; a DataError names the first row without one."""
    source = str(rows.attrs.get("source", "manifest"))
    fix = (
        "cond_frame end_diastole needs traced end-diastolic frames (EchoNet-Dynamic's "
        "VolumeTracings.csv); use a dataset with tracings or set the cascade's cond_frame to "
        "window"
    )
    if "EDFrame" not in rows.columns:
        raise DataError(source, "column 'EDFrame' is missing", fix)
    ed = pd.to_numeric(rows["EDFrame"], errors="coerce")
    for position, (index, value) in enumerate(ed.items()):
        if pd.isna(value):
            line = index + CSV_LINE_OFFSET if isinstance(index, (int, np.integer)) else index
            name = str(rows["FileName"].iloc[position])
            raise DataError(source, f"video {name} has no EDFrame", fix, row=line, item=name)
    return ed.to_numpy(dtype=np.int64)
