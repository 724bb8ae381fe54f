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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echogen.data.ef_clips import ClipSpec, EFClipDataset


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

    Items:
        ``video`` ``float32 (C, T, H, W)`` in ``[0, 1]``; ``ef`` ``float32 (1, 1)``, EF/100;
        ``cond`` ``float32 (C, H, W)``, a frame of ``video`` drawn uniformly.
    """

    def __init__(self, rows: pd.DataFrame, spec: ClipSpec, seed: int, root: str | Path = "."):
        if spec.normalisation != "unit" or spec.period != 1 or spec.pad:
            raise ValueError(
                "cascade clips are consecutive frames scaled by 1/255 without crops; build the "
                "spec with cascade_clip_spec"
            )
        self.clips = EFClipDataset(rows, spec, train=True, seed=seed, root=root)
        self.seed = seed
        self.file_names = self.clips.file_names

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` uses."""
        self.clips.set_epoch(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        video, ef = self.clips[i]
        # Its own stream: the window's draws stay those of EFClipDataset.
        rng = np.random.default_rng([self.seed, self.clips.epoch, i, 1])
        cond = video[:, int(rng.integers(video.shape[1]))]
        return video, (ef / 100.0).reshape(1, 1), cond.clone()
