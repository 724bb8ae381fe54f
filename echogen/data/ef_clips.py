"""Fixed-length clips of manifest videos, with EF targets, for the EF regressors.

Follows EchoNet-Dynamic's ``echonet.datasets.Echo`` (https://github.com/echonet/dynamic):
a clip is ``frames`` frames taken every ``period`` frames from a random start, normalised by
a per-channel mean/std estimated on training videos, zero-padded at the end when the video is
too short (zero *after* normalisation, i.e. mean grey under z-scoring, as EchoNet does), and,
for training, padded spatially by ``pad`` zeros then randomly cropped back to size. EchoNet
draws a random start for training, for VAL and for its "one clip" test number alike.

EchoDiffusion's reference regressor (``ef_regression/dataset.py``) differs point by point,
and each point is a :class:`ClipSpec` switch: videos resampled to 32 fps by linear
interpolation (``fps``, ``resample="linear"``), pixels scaled by 1/255
(``normalisation="unit"``), training on the first 64 frames (``train_start="first"``),
pad-12-and-crop with torchvision's ``RandomCrop`` offsets 0..24 (``crop="torchvision"``; EchoNet
draws 0..23) and its test clip starting at frame 0 (``clip_start="first"``).

Every random draw comes from a NumPy generator seeded by ``(seed, epoch, index)``, so a clip
does not depend on the number of data-loader workers or on where a run was resumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.video import read_video, resample_frames, resample_frames_linear, resize_frames
from echogen.settings import DictFields

log = logging.getLogger(__name__)

NORMALISATIONS = ("zscore", "unit")
RESAMPLINGS = ("nearest", "linear")
STARTS = ("random", "first")
CROPS = ("echonet", "torchvision")
STATISTICS = ("all_frames", "one_clip")
SAMPLINGS = ("window", "uniform")
# EchoNet's get_mean_and_std reads Echo(split="train") at its defaults: one clip of 16 frames,
# every 2nd frame, from a random start, per sampled video.
STATS_CLIP_FRAMES, STATS_CLIP_PERIOD = 16, 2
REQUIRED_COLUMNS = ("FileName", "EF", "FPS", "Path")
# csv line of a manifest row = its index (read_manifest resets it) + header line + 1.
CSV_LINE_OFFSET = 2


@dataclass(frozen=True)
class ClipSpec(DictFields):
    """How a video becomes a regressor input clip.

    Args:
        frames (int, 32): frames per clip.
        period (int, 2): step between the clip's frames (in frames after resampling).
        fps (float | None, None): resample every video from its manifest FPS to this rate
            first; None keeps the native rate (EchoNet).
        size (int, 112): frames are resized to ``size × size``.
        channels (int, 3): 1 = grey, 3 = grey repeated to RGB (torchvision's networks).
        normalisation (str, "zscore"): ``"zscore"`` = ``(x - mean) / std`` on 0..255 pixel
            values (EchoNet); ``"unit"`` = ``x / 255`` (EchoDiffusion, D'ARTAGNAN).
        mean (float | list[float] | None, None): pixel mean for zscore, one value for every
            channel or one per channel, from :func:`estimate_mean_std`.
        std (float | list[float] | None, None): pixel std for zscore, likewise.
        pad (int, 0): training augmentation: zero-pad by ``pad`` pixels on each side, then crop
            a random ``size × size`` window (EchoNet uses 12).
        test_clip_stride (int, 1): step between the starts of the clips of
            :meth:`EFClipDataset.all_clips` (EchoNet averages over every start, i.e. 1).
        resample (str, "nearest"): how ``fps`` resamples time: ``"nearest"`` frame, or
            ``"linear"`` interpolation between the two nearest frames (EchoDiffusion's
            ``scipy.ndimage.zoom(order=1)``).
        train_start (str, "random"): the training clip's first frame: ``"random"`` (EchoNet)
            or ``"first"``, frame 0 (EchoDiffusion trains on each video's first 64 frames).
        crop (str, "echonet"): the random crop's offsets after padding: ``"echonet"`` draws
            ``0 .. 2*pad-1`` (``np.random.randint(0, 2 * pad)``), ``"torchvision"``
            ``0 .. 2*pad`` (``transforms.RandomCrop``, EchoDiffusion).
        clip_start (str, "first"): the single clip of VAL and of the test's "one clip" number
            (``EF_pred_clip``): ``"first"``, frame 0 (EchoDiffusion), or ``"random"``, a seeded
            random one of the :meth:`EFClipDataset.all_clips` windows (EchoNet draws a random
            start; with ``test_clip_stride`` 1, as its preset has, that is every start).
        statistics (str, "all_frames"): how :func:`estimate_mean_std` estimates zscore's
            mean/std on TRAIN: ``"one_clip"`` = EchoNet's ``get_mean_and_std``, per channel
            over one random 16-frame clip (every 2nd frame) of each of 128 videos;
            ``"all_frames"`` = one value over every frame of those videos.
        sampling (str, "window"): ``"window"`` = the clips above (``frames`` consecutive
            frames ``period`` apart); ``"uniform"`` = EchoDream's classifiers' one clip per
            video, the same in training and test: keep every ``period``-th frame, then take
            ``frames`` of them evenly over the whole video (``np.linspace(0, n - 1, frames)``
            truncated; a short video repeats frames). ``pad`` still augments training;
            ``train_start``, ``clip_start`` and ``test_clip_stride`` have no effect.
    """

    dict_label: ClassVar[str] = "ClipSpec keys"

    frames: int = 32
    period: int = 2
    fps: float | None = None
    size: int = 112
    channels: int = 3
    normalisation: str = "zscore"
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    pad: int = 0
    test_clip_stride: int = 1
    resample: str = "nearest"
    train_start: str = "random"
    crop: str = "echonet"
    clip_start: str = "first"
    statistics: str = "all_frames"
    sampling: str = "window"

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        choices = {
            "resample": RESAMPLINGS,
            "train_start": STARTS,
            "crop": CROPS,
            "clip_start": STARTS,
            "statistics": STATISTICS,
            "sampling": SAMPLINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(value) not in (1, self.channels):
                raise ValueError(
                    f"{name} has {len(value)} values; give one or one per channel ({self.channels})"
                )
        if min(self.frames, self.period, self.size, self.test_clip_stride) < 1 or self.pad < 0:
            raise ValueError(
                "frames, period, size and test_clip_stride must be >= 1 and pad >= 0, got "
                f"{self.frames}, {self.period}, {self.size}, {self.test_clip_stride}, {self.pad}"
            )
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive or None, got {self.fps}")
        if self.std is not None and np.min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def span(self) -> int:
        """Frames covered by one clip: ``(frames - 1) * period + 1``."""
        return (self.frames - 1) * self.period + 1


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
        resample = resample_frames_linear if spec.resample == "linear" else resample_frames
        frames = resample(frames, fps_in, spec.fps)
    return resize_frames(frames, spec.size)


def _per_channel(value: float | list[float], channels: int) -> np.ndarray:
    """``(channels,)`` float32 from one value or one per channel."""
    values = np.atleast_1d(np.asarray(value, dtype=np.float32))
    return np.broadcast_to(values, (channels,))


def _normalise(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Grey ``(T, H, W)`` 0..255 frames -> ``float32 (C, T, H, W)`` as the spec says.

    The grey frames are converted once; each channel is then one pass over them (the
    ``unit`` scaling is the same for every channel: a read-only broadcast, copied when a clip
    is cut from it).
    """
    x = frames.astype(np.float32)
    channels = spec.channels
    if spec.normalisation == "unit":
        return np.broadcast_to(x / np.float32(255.0), (channels, *x.shape))
    means, stds = _per_channel(spec.mean, channels), _per_channel(spec.std, channels)
    return np.stack([(x - m) / s for m, s in zip(means, stds, strict=True)])


def estimate_mean_std(
    rows: pd.DataFrame,
    spec: ClipSpec,
    n_videos: int = 128,
    seed: int = 0,
    root: str | Path = ".",
) -> tuple[list[float], list[float]]:
    """Per-channel pixel mean and std (0..255 scale) over a seeded sample of ``n_videos`` videos.

    ``spec.statistics`` says over what (after the spec's resampling and resizing):

    - ``"one_clip"``, EchoNet's ``echonet.utils.get_mean_and_std`` on ``Echo(split="train")``:
      one clip of 16 frames, every 2nd frame, from a random start of each sampled video
      (a video shorter than 32 frames zero-padded first, as ``Echo`` pads), per channel;
    - ``"all_frames"``: every pixel of every frame of each sampled video.

    Sums are accumulated in float64; ``std = sqrt(E[x²] - E[x]²)``. Videos are drawn without
    replacement (all if fewer). echogen reads videos as grey and repeats grey to RGB, so the
    channels' values agree; they are kept per channel as EchoNet keeps them.

    Args:
        rows: manifest rows to sample from (normally the TRAIN split).
        spec: clip settings (``fps``, ``resample``, ``size``, ``channels``, ``statistics``).
        n_videos: number of videos to sample (EchoNet: 128).
        seed: sampling seed (which videos, and each one's clip start).
        root: folder that the ``Path`` column is relative to.

    Returns:
        ``(mean, std)``, each a list of ``spec.channels`` floats.
    """
    _check_rows(rows, spec)
    if len(rows) == 0:
        raise ValueError("estimate_mean_std needs at least one video")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(rows), size=min(n_videos, len(rows)), replace=False))
    total = total_sq = count = 0.0
    for position in tqdm(chosen, desc="mean/std", leave=False):
        row = rows.iloc[position]
        x = _load_frames(Path(root) / str(row["Path"]), float(row["FPS"]), spec)
        if spec.statistics == "one_clip":
            x = _stats_clip(x, rng)
        x = x.astype(np.float64)
        total += x.sum()
        total_sq += np.square(x).sum()
        count += x.size
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean**2, 0.0)))
    log.info(
        "pixel mean %.3f std %.3f from %d videos (%s)", mean, std, len(chosen), spec.statistics
    )
    return [float(mean)] * spec.channels, [std] * spec.channels


def with_statistics(
    spec: ClipSpec, rows: pd.DataFrame, seed: int, root: str | Path = "."
) -> ClipSpec:
    """``spec`` with zscore's mean/std estimated on ``rows`` (TRAIN) when they are not set.

    A spec that already has them, or scales by 1/255, is returned as it is.
    """
    if spec.normalisation != "zscore" or (spec.mean is not None and spec.std is not None):
        return spec
    mean, std = estimate_mean_std(rows, spec, seed=seed, root=root)  # logs the values
    return ClipSpec.from_dict({**spec.to_dict(), "mean": mean, "std": std})


def _stats_clip(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """EchoNet's statistics clip: 16 frames every 2nd from a random start (zero-padded to 32)."""
    length, period = STATS_CLIP_FRAMES, STATS_CLIP_PERIOD
    short = length * period - len(frames)
    if short > 0:
        frames = np.concatenate([frames, np.zeros((short, *frames.shape[1:]), frames.dtype)])
    start = int(rng.integers(len(frames) - (length - 1) * period))
    return frames[start + period * np.arange(length)]


class EFClipDataset(torch.utils.data.Dataset):
    """Clips and EF targets of manifest rows (EchoNet's ``Echo`` dataset, EF target only).

    Args:
        rows: manifest rows with at least FileName, EF, FPS and Path; checked up front (a
            missing column, a non-numeric EF, or a missing FPS when resampling raises
            :class:`DataError`). ``rows.attrs["source"]``, if set, names the file in errors.
        spec: clip settings; zscore needs ``mean`` and ``std``.
        train: the training clip (``spec.train_start``) and pad-and-crop (if ``spec.pad``);
            else the single clip of ``spec.clip_start``, no augmentation.
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
        """Normalised ``float32`` ``(C, T, size, size)``, zero-padded at the end to one span
        (``"window"`` sampling; ``"uniform"`` repeats frames instead)."""
        video = _normalise(_load_frames(self.paths[i], float(self.fps[i]), self.spec), self.spec)
        if self.spec.sampling == "uniform":
            return video
        short = self.spec.span - video.shape[1]
        if short > 0:
            padding = np.zeros((video.shape[0], short, *video.shape[2:]), np.float32)
            video = np.concatenate([video, padding], axis=1)
        return video

    def clip_indices(self, start: int) -> np.ndarray:
        """Frame indices of the clip starting at ``start``."""
        return start + self.spec.period * np.arange(self.spec.frames)

    def uniform_indices(self, n_frames: int) -> np.ndarray:
        """``"uniform"`` sampling's frame indices in a video of ``n_frames`` frames: of the
        ``ceil(n_frames / period)`` frames ``0, period, ...``, ``frames`` spread evenly
        (EchoDream's ``files[::r]`` then ``np.linspace(0, n - 1, F, dtype=int)``)."""
        kept = -(-n_frames // self.spec.period)
        return self.spec.period * np.linspace(0, kept - 1, self.spec.frames).astype(np.int64)

    def clip_starts(self, n_frames: int) -> range:
        """Starts of :meth:`all_clips` in a (padded) video of ``n_frames`` frames."""
        return range(0, n_frames - self.spec.span + 1, self.spec.test_clip_stride)

    def single_clip_index(self, i: int, n_clips: int) -> int:
        """Which of video ``i``'s :meth:`all_clips` windows is its single clip (VAL, and the
        test's ``EF_pred_clip``): the first, or a seeded random one (``spec.clip_start``)."""
        if self.spec.clip_start == "first":
            return 0
        return int(np.random.default_rng([self.seed, i]).integers(n_clips))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One clip ``float32 (C, T, H, W)`` and its EF (scalar ``float32`` tensor).

        Training draws from ``(seed, epoch, i)``: the start (``spec.train_start``) and the
        pad-and-crop offsets. Otherwise the clip is :meth:`single_clip_index`'s window.
        Under ``"uniform"`` sampling the clip is :meth:`uniform_indices`' frames, in training
        (still padded and cropped) as at test.
        """
        video = self._video(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.spec.sampling == "uniform":
            indices = self.uniform_indices(video.shape[1])
        elif self.train:
            start = 0
            if self.spec.train_start == "random":
                start = int(rng.integers(video.shape[1] - self.spec.span + 1))
            indices = self.clip_indices(start)
        else:
            starts = self.clip_starts(video.shape[1])
            indices = self.clip_indices(starts[self.single_clip_index(i, len(starts))])
        clip = video[:, indices]
        if self.train and self.spec.pad > 0:
            pad, size = self.spec.pad, self.spec.size
            padded = np.pad(clip, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            # EchoNet draws np.random.randint(0, 2 * pad, 2): offsets 0..2*pad-1; torchvision's
            # RandomCrop draws 0..2*pad.
            high = 2 * pad + (self.spec.crop == "torchvision")
            top, left = rng.integers(0, high, size=2)
            clip = padded[:, :, top : top + size, left : left + size]
        return torch.from_numpy(np.ascontiguousarray(clip)), torch.tensor(self.ef[i])

    def all_clips(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip of video ``i`` at starts ``0, stride, 2*stride, ...`` (no augmentation);
        under ``"uniform"`` sampling its one clip.

        Returns:
            ``float32 (K, C, T, H, W)`` clips (``K >= 1``) and the EF (scalar tensor).
        """
        video = self._video(i)
        if self.spec.sampling == "uniform":
            clips = video[None][:, :, self.uniform_indices(video.shape[1])]
            return torch.from_numpy(np.ascontiguousarray(clips)), torch.tensor(self.ef[i])
        starts = self.clip_starts(video.shape[1])
        clips = np.stack([video[:, self.clip_indices(s)] for s in starts])
        return torch.from_numpy(clips), torch.tensor(self.ef[i])


class ClassClipDataset(EFClipDataset):
    """Clips and class labels of labelled rows (:func:`training_rows`, :func:`heldout_rows`).

    The clips are exactly :class:`~echogen.data.ef_clips.EFClipDataset`'s (same loading,
    resampling, normalisation, random start and pad-and-crop from ``(seed, epoch, index)``);
    only the target differs.

    Args:
        rows: FileName, Path, FPS and label (``int`` in ``[0, K)``).
        spec: clip settings; zscore needs ``mean`` and ``std``.
        train: the training clip and pad-and-crop; else the single clip, no augmentation.
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
            raise ValueError("rows need a 'label' column (use training_rows / heldout_rows)")
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
