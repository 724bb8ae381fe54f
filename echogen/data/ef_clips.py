"""Fixed-length clips of manifest videos, with EF targets, for the EF regressors.

Follows EchoNet-Dynamic's ``echonet.datasets.Echo`` (https://github.com/echonet/dynamic):
a clip is ``frames`` frames taken every ``period`` frames from a random start (training) or
from frame 0 (evaluation), normalised by a mean/std estimated on training videos, zero-padded
at the end when the video is too short (zero *after* normalisation, i.e. mean grey under
z-scoring, as EchoNet does), and, for training, padded spatially by ``pad`` zeros then
randomly cropped back to size. EchoDiffusion's and D'ARTAGNAN's regressors instead resample
videos to a fixed frame rate and scale pixels by 1/255 (``fps`` and ``normalisation="unit"``).

Every random draw comes from a NumPy generator seeded by ``(seed, epoch, index)``, so a clip
does not depend on the number of data-loader workers or on where a run was resumed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.video import read_video, resample_frames, resize_frames

log = logging.getLogger(__name__)

NORMALISATIONS = ("zscore", "unit")
REQUIRED_COLUMNS = ("FileName", "EF", "FPS", "Path")
# csv line of a manifest row = its index (read_manifest resets it) + header line + 1.
CSV_LINE_OFFSET = 2


@dataclass(frozen=True)
class ClipSpec:
    """How a video becomes a regressor input clip.

    Args:
        frames (int, 32): frames per clip.
        period (int, 2): step between the clip's frames (in frames after resampling).
        fps (float | None, None): resample every video from its manifest FPS to this rate
            first (nearest frame); None keeps the native rate (EchoNet).
        size (int, 112): frames are resized to ``size × size``.
        channels (int, 3): 1 = grey, 3 = grey repeated to RGB (torchvision's networks).
        normalisation (str, "zscore"): ``"zscore"`` = ``(x - mean) / std`` on 0..255 pixel
            values (EchoNet); ``"unit"`` = ``x / 255`` (EchoDiffusion, D'ARTAGNAN).
        mean (float | None, None): pixel mean for zscore, from :func:`estimate_mean_std`.
        std (float | None, None): pixel std for zscore.
        pad (int, 0): training augmentation: zero-pad by ``pad`` pixels on each side, then crop
            a random ``size × size`` window (EchoNet uses 12).
        test_clip_stride (int, 1): step between the starts of the clips of
            :meth:`EFClipDataset.all_clips` (EchoNet averages over every start, i.e. 1).
    """

    frames: int = 32
    period: int = 2
    fps: float | None = None
    size: int = 112
    channels: int = 3
    normalisation: str = "zscore"
    mean: float | None = None
    std: float | None = None
    pad: int = 0
    test_clip_stride: int = 1

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if min(self.frames, self.period, self.size, self.test_clip_stride) < 1 or self.pad < 0:
            raise ValueError(
                "frames, period, size and test_clip_stride must be >= 1 and pad >= 0, got "
                f"{self.frames}, {self.period}, {self.size}, {self.test_clip_stride}, {self.pad}"
            )
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive or None, got {self.fps}")
        if self.std is not None and self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def span(self) -> int:
        """Frames covered by one clip: ``(frames - 1) * period + 1``."""
        return (self.frames - 1) * self.period + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClipSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ClipSpec keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


def _source(rows: pd.DataFrame) -> str:
    # Callers may record the manifest path in rows.attrs["source"] so errors name the file.
    return str(rows.attrs.get("source", "manifest"))


def _check_rows(rows: pd.DataFrame, spec: ClipSpec) -> None:
    """DataError naming the column, or the video and csv line, of the first bad row."""
    source = _source(rows)
    for column in REQUIRED_COLUMNS:
        if column not in rows.columns:
            raise DataError(
                source,
                f"column {column!r} is missing (need {list(REQUIRED_COLUMNS)})",
                "use a manifest written by the dataset's ingestion rule",
            )
    ef = pd.to_numeric(rows["EF"], errors="coerce")
    fps = pd.to_numeric(rows["FPS"], errors="coerce")
    for position, (index, row) in enumerate(rows.iterrows()):
        line = index + CSV_LINE_OFFSET if isinstance(index, (int, np.integer)) else index
        name = str(row["FileName"])
        if pd.isna(ef.iloc[position]):
            raise DataError(
                source,
                f"video {name} has no numeric EF ({row['EF']!r})",
                "fill in EF or leave the video out of the regressor's rows",
                row=line,
                item=name,
            )
        if pd.isna(row["Path"]):
            raise DataError(
                source,
                f"video {name} has no Path",
                "re-run the ingestion rule",
                row=line,
                item=name,
            )
        if spec.fps is not None and not fps.iloc[position] > 0:
            raise DataError(
                source,
                f"video {name} has no positive FPS ({row['FPS']!r}) to resample from",
                "re-run the dataset's ingestion rule so FPS is filled from the video header",
                row=line,
                item=name,
            )


def _load_frames(path: Path, fps_in: float, spec: ClipSpec) -> np.ndarray:
    """Grey ``uint8`` ``(T, size, size)`` frames at the spec's frame rate."""
    frames = read_video(path)
    if spec.fps is not None:
        frames = resample_frames(frames, fps_in, spec.fps)
    return resize_frames(frames, spec.size)


def _normalise(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """``uint8`` frames -> ``float32`` as the spec says."""
    x = frames.astype(np.float32)
    if spec.normalisation == "unit":
        return x / 255.0
    return (x - np.float32(spec.mean)) / np.float32(spec.std)


def estimate_mean_std(
    rows: pd.DataFrame,
    spec: ClipSpec,
    n_videos: int = 128,
    seed: int = 0,
    root: str | Path = ".",
) -> tuple[float, float]:
    """Pixel mean and std (0..255 scale) over a seeded sample of ``n_videos`` videos.

    EchoNet's ``echonet.utils.get_mean_and_std`` per grey scalar: every pixel of every frame of
    each sampled video (after the spec's resampling and resizing), accumulated in float64;
    ``std = sqrt(E[x²] - E[x]²)``. Videos are drawn without replacement (all if fewer).

    Args:
        rows: manifest rows to sample from (normally the TRAIN split).
        spec: clip settings (only ``fps`` and ``size`` matter here).
        n_videos: number of videos to sample.
        seed: sampling seed.
        root: folder that the ``Path`` column is relative to.
    """
    _check_rows(rows, spec)
    if len(rows) == 0:
        raise ValueError("estimate_mean_std needs at least one video")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(rows), size=min(n_videos, len(rows)), replace=False))
    total = total_sq = count = 0.0
    for position in tqdm(chosen, desc="mean/std", leave=False):
        row = rows.iloc[position]
        frames = _load_frames(Path(root) / str(row["Path"]), float(row["FPS"]), spec)
        x = frames.astype(np.float64)
        total += x.sum()
        total_sq += np.square(x).sum()
        count += x.size
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean**2, 0.0)))
    log.info("pixel mean %.3f std %.3f from %d videos", mean, std, len(chosen))
    return float(mean), std


class EFClipDataset(torch.utils.data.Dataset):
    """Clips and EF targets of manifest rows (EchoNet's ``Echo`` dataset, EF target only).

    Args:
        rows: manifest rows with at least FileName, EF, FPS and Path; checked up front (a
            missing column, a non-numeric EF, or a missing FPS when resampling raises
            :class:`DataError`). ``rows.attrs["source"]``, if set, names the file in errors.
        spec: clip settings; zscore needs ``mean`` and ``std``.
        train: random start and spatial pad-and-crop (if ``spec.pad``); else start 0, no
            augmentation.
        seed: seed of the per-item random draws.
        root: folder that the ``Path`` column is relative to.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        spec: ClipSpec,
        train: bool,
        seed: int,
        root: str | Path = ".",
    ):
        _check_rows(rows, spec)
        if spec.normalisation == "zscore" and (spec.mean is None or spec.std is None):
            raise ValueError(
                "zscore normalisation needs ClipSpec.mean and .std (estimate_mean_std)"
            )
        self.spec = spec
        self.train = train
        self.seed = seed
        self.root = Path(root)
        self.epoch = 0
        self.file_names = [str(v) for v in rows["FileName"]]
        self.paths = [self.root / str(v) for v in rows["Path"]]
        self.ef = pd.to_numeric(rows["EF"]).to_numpy(dtype=np.float32)
        self.fps = pd.to_numeric(rows["FPS"], errors="coerce").to_numpy(dtype=np.float64)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` uses."""
        self.epoch = epoch

    def _video(self, i: int) -> np.ndarray:
        """Normalised ``float32`` ``(T, size, size)``, zero-padded at the end to one clip span."""
        video = _normalise(_load_frames(self.paths[i], float(self.fps[i]), self.spec), self.spec)
        short = self.spec.span - len(video)
        if short > 0:
            video = np.concatenate([video, np.zeros((short, *video.shape[1:]), np.float32)])
        return video

    def _to_tensor(self, clip: np.ndarray) -> torch.Tensor:
        """``(T, H, W)`` -> ``(C, T, H, W)`` with grey repeated to ``channels``."""
        return (
            torch.from_numpy(np.ascontiguousarray(clip))
            .unsqueeze(0)
            .repeat(self.spec.channels, 1, 1, 1)
        )

    def clip_indices(self, start: int) -> np.ndarray:
        """Frame indices of the clip starting at ``start``."""
        return start + self.spec.period * np.arange(self.spec.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One clip ``float32 (C, T, H, W)`` and its EF (scalar ``float32`` tensor)."""
        video = self._video(i)
        start = 0
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            start = int(rng.integers(len(video) - self.spec.span + 1))
        clip = video[self.clip_indices(start)]
        if self.train and self.spec.pad > 0:
            pad, size = self.spec.pad, self.spec.size
            padded = np.pad(clip, ((0, 0), (pad, pad), (pad, pad)))
            # EchoNet draws np.random.randint(0, 2 * pad, 2): offsets 0..2*pad-1.
            top, left = rng.integers(0, 2 * pad, size=2)
            clip = padded[:, top : top + size, left : left + size]
        return self._to_tensor(clip), torch.tensor(self.ef[i])

    def all_clips(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip of video ``i`` at starts ``0, stride, 2*stride, ...`` (no augmentation).

        Returns:
            ``float32 (K, C, T, H, W)`` clips (``K >= 1``) and the EF (scalar tensor).
        """
        video = self._video(i)
        starts = range(0, len(video) - self.spec.span + 1, self.spec.test_clip_stride)
        clips = torch.stack([self._to_tensor(video[self.clip_indices(s)]) for s in starts])
        return clips, torch.tensor(self.ef[i])


class ClassClipDataset(EFClipDataset):
    """Clips and class labels of labelled rows (:func:`training_rows`, :func:`real_test_rows`).

    The clips are exactly :class:`~echogen.data.ef_clips.EFClipDataset`'s (same loading,
    resampling, normalisation, random start and pad-and-crop from ``(seed, epoch, index)``);
    only the target differs.

    Args:
        rows: FileName, Path, FPS and label (``int`` in ``[0, K)``).
        spec: clip settings; zscore needs ``mean`` and ``std``.
        train: random start and spatial pad-and-crop; else start 0, no augmentation.
        seed: seed of the per-item random draws.
        root: folder that the ``Path`` column is relative to.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        spec: ClipSpec,
        train: bool,
        seed: int,
        root: str | Path = ".",
    ):
        if "label" not in rows.columns:
            raise ValueError("rows need a 'label' column (use training_rows / real_test_rows)")
        # EFClipDataset insists on a numeric EF target; the classifier never reads it.
        super().__init__(rows.assign(EF=0.0), spec, train=train, seed=seed, root=root)
        self.labels = rows["label"].to_numpy(dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One clip ``float32 (C, T, H, W)`` and its label (scalar ``int64`` tensor)."""
        clip, _ = super().__getitem__(i)
        return clip, torch.tensor(self.labels[i])

    def all_clips(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip ``(K, C, T, H, W)`` of video ``i`` (starts ``0, stride, ..``), its label."""
        clips, _ = super().all_clips(i)
        return clips, torch.tensor(self.labels[i])
