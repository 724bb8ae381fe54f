"""Grey and optical-flow clips of the same frames, for the RV-failure streams.

rohanshad/postop_rv_failure_echo (``/work/shared/PAPERS.md`` §7) feeds its two streams the
same 32-frame window of a video's grey frames (divided by the clip maximum, then z-scored
with the dataset's mean and std) and of its Farneback flow (z-scored likewise), from a random
start; training clips are augmented with vidaug (each with probability 0.5: rotation up to
30°, translation up to 10 px, a resize by up to ±20 % then a crop back to 112 px), one
transform for the grey and both flow channels; prediction averages 5 random clips.

A row has ``FileName``, the target column, ``Path`` (grey: the ``.npy`` clip of the DICOM
conversion, ``(T, H, W)`` already divided by its maximum, or a video file divided by its
maximum here) and ``FlowPath`` (``.npy`` ``(T-1, H, W, 2)``). Grey frame ``t`` is paired
with the flow from ``t`` to ``t+1``; the last grey frame has none, so it gets the last flow
frame again, as the reference's ``video2OF`` appends it (a window may start at any of the
``T - frames + 1`` grey positions, as the reference draws). A flow file whose length is not
the grey clip's minus one is an error naming it. Differences from the reference,
deliberately: augmentation is one affine warp on the raw values (before z-scoring), zero
outside the frame; a shrink is centred instead of failing.

Every random draw comes from a NumPy generator seeded by ``(seed, epoch, index)`` (training)
or ``(seed, crc32 of the FileName)`` (evaluation: the VAL clip of training, the prediction
clips and the explained clip are the same draws whichever csvs the rows came from), so a clip
does not depend on the workers or on where a run was resumed.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.manifest import SPLITS
from echogen.data.video import read_video
from echogen.settings import DictFields

log = logging.getLogger(__name__)

STREAMS = ("grey", "flow")
PATH_COLUMNS = {"grey": "Path", "flow": "FlowPath"}
CSV_LINE_OFFSET = 2  # csv line of a row = its index + header + 1


@dataclass(frozen=True)
class StreamClipSpec(DictFields):
    """How a video becomes the streams' input clips.

    Args:
        frames (int, 32): frames per clip (the reference's NFRAMES).
        size (int, 112): frame side in pixels (clips of another size are resized).
        scale_flow (bool, True): scale flow vectors with the frame when resizing, so they are
            in pixels of the clip; False keeps them in the stored flow's pixels (the
            reference resizes flow fields without rescaling their vectors).
        test_clips (int, 5): random clips averaged per video at prediction.
        augment (bool, True): augment training clips.
        p (float, 0.5): probability of each augmentation.
        rotate (float, 30.0): largest rotation in degrees.
        translate (float, 10.0): largest shift in pixels (at 112 px; scaled with ``size``).
        resize (float, 0.2): largest relative resize before the crop back to ``size``.
        grey_mean, grey_std, flow_mean, flow_std (float | None, None): z-score statistics;
            None = estimated on the rows of ``stat_splits`` (:func:`with_stream_statistics`).
        stat_videos (int, 64): videos sampled to estimate them.
        stat_splits (list[str], ["TRAIN"]): the splits whose videos the statistics come
            from; the reference pools every split (``["TRAIN", "VAL", "TEST"]``), which lets
            the held-out videos shape the inputs' scaling.
    """

    frames: int = 32
    size: int = 112
    scale_flow: bool = True
    test_clips: int = 5
    augment: bool = True
    p: float = 0.5
    rotate: float = 30.0
    translate: float = 10.0
    resize: float = 0.2
    grey_mean: float | None = None
    grey_std: float | None = None
    flow_mean: float | None = None
    flow_std: float | None = None
    stat_videos: int = 64
    stat_splits: list[str] = field(default_factory=lambda: ["TRAIN"])

    dict_label: ClassVar[str] = "clip settings"

    def __post_init__(self):
        for name in ("frames", "size", "test_clips", "stat_videos"):
            if getattr(self, name) < 1:
                raise ValueError(f"clips.{name} must be >= 1, got {getattr(self, name)}")
        splits = self.stat_splits
        if (
            not isinstance(splits, list | tuple)
            or not splits
            or len(set(splits)) != len(splits)
            or not set(splits) <= set(SPLITS)
        ):
            raise ValueError(
                f"clips.stat_splits must be distinct splits of {list(SPLITS)}, got {splits!r}"
            )
        if not isinstance(self.scale_flow, bool):
            raise ValueError(f"clips.scale_flow must be true or false, got {self.scale_flow!r}")
        if not 0 <= self.p <= 1 or not 0 <= self.resize < 1:
            raise ValueError(f"clips.p must be in [0, 1] and clips.resize in [0, 1); got "
                             f"{self.p}, {self.resize}")  # fmt: skip
        for stream in STREAMS:
            std = getattr(self, f"{stream}_std")
            if std is not None and not std > 0:
                raise ValueError(f"clips.{stream}_std must be > 0, got {std}")

    def statistics(self, stream: str) -> tuple[float, float]:
        mean, std = getattr(self, f"{stream}_mean"), getattr(self, f"{stream}_std")
        if mean is None or std is None:
            raise ValueError(f"the {stream} stream's mean/std are not set; estimate them first")
        return mean, std


# ---------------------------------------------------------------- reading


def read_grey(path: str | Path) -> np.ndarray:
    """Grey frames ``float32 (T, H, W)`` in [0, 1], divided by the clip's maximum."""
    path = Path(path)
    if path.suffix == ".npy":
        return _load_npy(path).astype(np.float32)
    frames = read_video(path)
    peak = max(int(frames.max()), 1)
    return frames.astype(np.float32) / np.float32(peak)


def read_flow(path: str | Path) -> np.ndarray:
    """Flow ``(T-1, H, W, 2)`` as stored (memory-mapped: only a window is read)."""
    flow = _load_npy(Path(path), mmap=True)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise DataError(path, f"flow has shape {flow.shape}, not (T-1, H, W, 2)",
                        "recompute it with the compute_flow or convert_dicoms rule")  # fmt: skip
    return flow


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as err:
        raise DataError(path, f"cannot read the clip ({err})",
                        "re-run the rule that wrote it") from err  # fmt: skip


def _resize(frames: np.ndarray, size: int, scale_flow: bool = True) -> np.ndarray:
    """``(T, H, W[, C])`` float frames to ``size²`` (flow vectors scaled with the frame
    unless ``scale_flow`` is False)."""
    height, width = frames.shape[1:3]
    if (height, width) == (size, size):
        return np.asarray(frames, dtype=np.float32)
    interp = cv2.INTER_AREA if height > size or width > size else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.asarray(f, np.float32), (size, size), interpolation=interp)
                    for f in frames])  # fmt: skip
    if out.ndim == 4 and scale_flow:
        out *= _flow_scale(height, width, size)
    return out


def _flow_scale(height: int, width: int, size: int) -> np.ndarray:
    """The factors of a flow field's (x, y) vectors resized from ``height × width`` to
    ``size²``: x scales with the width, y with the height."""
    return np.array([size / width, size / height], dtype=np.float32)


# ---------------------------------------------------------------- augmentation


def augmentation(rng: np.random.Generator, spec: StreamClipSpec) -> np.ndarray | None:
    """One training clip's affine warp ``(2, 3)`` (output pixel → input pixel), or None.

    Each part is drawn with probability ``p``, always in this order so the draws do not
    depend on the outcomes: rotation ``U(-rotate, rotate)`` degrees, shift ``U(-t, t)`` px per
    axis, resize by ``U(1 - resize, 1 + resize)`` with a random crop offset.
    """
    size = spec.size
    use = rng.random(3) < spec.p
    angle = rng.uniform(-spec.rotate, spec.rotate)
    reach = spec.translate * size / 112
    shift = rng.uniform(-reach, reach, size=2)
    scale = rng.uniform(1 - spec.resize, 1 + spec.resize)
    crop = rng.uniform(-0.5, 0.5, size=2) * max(scale - 1, 0) * size
    if not use.any():
        return None
    scale = scale if use[2] else 1.0
    centre = ((size - 1) / 2, (size - 1) / 2)
    forward = cv2.getRotationMatrix2D(centre, angle if use[0] else 0.0, scale)
    forward[:, 2] += (shift if use[1] else 0.0) + (crop if use[2] else 0.0)
    return cv2.invertAffineTransform(forward)


def warp(frames: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply an output→input affine to every frame of ``(T, H, W, C)`` (zero outside)."""
    size = (frames.shape[2], frames.shape[1])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = [cv2.warpAffine(f, matrix, size, flags=flags, borderValue=0) for f in frames]
    return np.stack(out).reshape(frames.shape)


# ---------------------------------------------------------------- statistics


def stream_statistics(rows: pd.DataFrame, streams, spec: StreamClipSpec, seed: int,
                      root: str | Path = ".") -> dict[str, float]:  # fmt: skip
    """Each stream's z-score statistics as the reference's ``normalize_pkl``: the mean of the
    videos' means and the square root of the mean of their variances, over a seeded sample of
    ``spec.stat_videos`` of ``rows`` (the reference takes every video of every split; the
    caller picks the rows, :func:`with_stream_statistics` those of ``spec.stat_splits``), as
    ``{"grey_mean": ..., "grey_std": ..., ...}``."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(rows), size=min(spec.stat_videos, len(rows)), replace=False))
    moments = {s: [] for s in streams}
    for position in tqdm(chosen, desc="stream mean/std", leave=False):
        row = rows.iloc[position]
        for stream in streams:
            path = Path(root) / str(row[PATH_COLUMNS[stream]])
            x = read_grey(path) if stream == "grey" else read_flow(path)
            x = np.asarray(x, dtype=np.float64)
            if stream == "flow" and spec.scale_flow:  # in the clips' units
                x = x * _flow_scale(x.shape[1], x.shape[2], spec.size)
            moments[stream].append((x.mean(), x.var()))
    stats = {}
    for stream, values in moments.items():
        means, variances = np.array(values).T
        stats[f"{stream}_mean"] = float(means.mean())
        stats[f"{stream}_std"] = float(np.sqrt(max(variances.mean(), 1e-12)))
    log.info("stream statistics from %d videos: %s", len(chosen), stats)
    return stats


def with_stream_statistics(spec: StreamClipSpec, rows: pd.DataFrame, streams, seed: int,
                           root: str | Path = ".") -> StreamClipSpec:  # fmt: skip
    """``spec`` with the unset statistics of ``streams`` estimated on the rows of
    ``spec.stat_splits`` (``rows``' ``Split`` column).

    Raises:
        DataError: a split of ``stat_splits`` has no row (naming it and the fix).
    """
    missing = [s for s in streams if None in (getattr(spec, f"{s}_{k}") for k in ("mean", "std"))]
    if not missing:
        return spec
    for split in spec.stat_splits:
        if not (rows["Split"] == split).any():
            raise DataError(rows.attrs.get("source", "rows"),
                            f"clips.stat_splits names {split} but no {split} video is given",
                            f"give the {split} split or leave it out of stat_splits")  # fmt: skip
    chosen = rows[rows["Split"].isin(spec.stat_splits)].reset_index(drop=True)
    return StreamClipSpec.from_dict(
        {**spec.to_dict(), **stream_statistics(chosen, missing, spec, seed, root)}
    )


# ---------------------------------------------------------------- the dataset


def check_rows(rows: pd.DataFrame, streams, target: str) -> None:
    """DataError naming the column, or the video and csv line, of the first bad row."""
    source = str(rows.attrs.get("source", "rows"))
    needed = ["FileName", target, *(PATH_COLUMNS[s] for s in streams)]
    for column in needed:
        if column not in rows.columns:
            raise DataError(source, f"column {column!r} is missing (need {needed})",
                            "use the split csv or manifest written by the workflow")  # fmt: skip
    values = pd.to_numeric(rows[target], errors="coerce")
    for position, (index, row) in enumerate(rows.iterrows()):
        line = index + CSV_LINE_OFFSET if isinstance(index, (int, np.integer)) else index
        if "SourceCsv" in row.index:  # rows of several csvs (read_split_rows)
            source, line = row["SourceCsv"], int(row["SourceLine"])
        if pd.isna(values.iloc[position]):
            raise DataError(source, f"video {row['FileName']} has no numeric {target} "
                            f"({row[target]!r})", f"fill in {target} or leave the video out",
                            row=line, item=str(row["FileName"]))  # fmt: skip


class StreamClipSet(torch.utils.data.Dataset):
    """``((clip per stream), target)`` of rows: grey ``(1, F, S, S)``, flow ``(2, F, S, S)``
    float32 z-scored, target float32.

    Args:
        rows: FileName, ``target``, Path (grey) and/or FlowPath (flow); checked up front.
        spec: clip settings with the streams' statistics set.
        streams: the streams to return, in order.
        target: the target column (``label`` for RV failure, ``EF`` for pretraining).
        train: draw augmented training clips from ``(seed, epoch, index)``; else the first
            evaluation clip of ``(seed, index)``.
        seed: seed of the draws.
        root: folder the paths are relative to.
    """

    def __init__(self, rows: pd.DataFrame, spec: StreamClipSpec, streams, target: str,
                 train: bool = False, seed: int = 0, root: str | Path = "."):  # fmt: skip
        check_rows(rows, streams, target)
        for stream in streams:
            spec.statistics(stream)  # raises when unset
        self.rows = rows.reset_index(drop=True)
        self.spec, self.streams, self.train, self.seed = spec, tuple(streams), train, seed
        self.root = Path(root)
        self.targets = pd.to_numeric(rows[target]).to_numpy(np.float32)
        self.labels = self.targets.astype(np.int64)  # class counts, for a binary target
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        row = self.rows.iloc[index]
        data, paths = {}, {}
        for stream in self.streams:
            paths[stream] = self.root / str(row[PATH_COLUMNS[stream]])
            data[stream] = (read_grey if stream == "grey" else read_flow)(paths[stream])
        grey_frames = len(data["grey"]) if "grey" in data else len(data["flow"]) + 1
        if "grey" in data and "flow" in data and len(data["flow"]) != grey_frames - 1:
            raise DataError(
                paths["flow"],
                f"video {row['FileName']}: {len(data['flow'])} flow frames for "
                f"{grey_frames} grey frames (expected {grey_frames - 1})",
                "recompute its flow (compute_flow or convert_dicoms rule)",
                item=str(row["FileName"]),
            )
        if grey_frames < self.spec.frames:
            raise DataError(
                paths[self.streams[0]],
                f"video {row['FileName']} has {grey_frames} frames, fewer than a clip's "
                f"{self.spec.frames}",
                "lower clips.frames or leave the video out",
                item=str(row["FileName"]),
            )
        data["_frames"] = grey_frames
        return data

    def _clip(self, data: dict, start: int, matrix: np.ndarray | None) -> tuple:
        frames, size = self.spec.frames, self.spec.size
        parts = {}
        for stream in self.streams:
            window = np.asarray(data[stream][start : start + frames], dtype=np.float32)
            if stream == "flow" and len(window) < frames:  # the last grey frame: the last
                last = np.asarray(data[stream][-1:], dtype=np.float32)  # flow frame again
                window = np.concatenate([window, np.repeat(last, frames - len(window), 0)])
            window = _resize(window, size, self.spec.scale_flow)
            parts[stream] = window if window.ndim == 4 else window[..., None]
        if matrix is not None:
            stacked = warp(np.concatenate([parts[s] for s in self.streams], axis=-1), matrix)
            offsets = np.cumsum([0] + [parts[s].shape[-1] for s in self.streams])
            parts = {
                s: stacked[..., offsets[i] : offsets[i + 1]] for i, s in enumerate(self.streams)
            }
        out = []
        for stream in self.streams:
            mean, std = self.spec.statistics(stream)
            x = (parts[stream] - np.float32(mean)) / np.float32(std)
            out.append(torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2))))
        return tuple(out)

    def evaluation_clips(self, index: int, count: int | None = None) -> list[tuple]:
        """``count`` (default ``spec.test_clips``) clips of random starts drawn from
        ``(seed, crc32(FileName))``, unaugmented; the first is the VAL clip of training."""
        data = self._read(index)
        name = str(self.rows.iloc[index]["FileName"]).encode()
        rng = np.random.default_rng([self.seed, zlib.crc32(name)])
        starts = rng.integers(0, data["_frames"] - self.spec.frames + 1,
                              size=count or self.spec.test_clips)  # fmt: skip
        return [self._clip(data, int(s), None) for s in starts]

    def __getitem__(self, index: int):
        if not self.train:
            return self.evaluation_clips(index, 1)[0], self.targets[index]
        data = self._read(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, data["_frames"] - self.spec.frames + 1))
        matrix = augmentation(rng, self.spec) if self.spec.augment else None
        return self._clip(data, start, matrix), self.targets[index]
