"""Videos as folders of jpg frames: StyleGAN-V reference sets and CardiacNet frame folders.

StyleGAN-V's FVD/FID tooling reads a dataset as ``<root>/<video>/<frame>.jpg`` (depth
exactly 2) and orders frames by sorting their names, so names are zero-padded to a common
width (:func:`frame_name`).
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_dir, atomic_path
from echogen.data.manifest import read_manifest, row_fps
from echogen.data.video import read_video, resample_frames

log = logging.getLogger(__name__)

MIN_NAME_WIDTH = 4
REFERENCE_POLICIES = ("seeded_windows", "echonet_synthetic")


def frame_name(i: int, n_frames: int) -> str:
    """Zero-padded jpg name of frame ``i`` of ``n_frames``, e.g. ``0007.jpg``.

    The width is ``max(4, len(str(n_frames - 1)))``, so names sort lexicographically in
    frame order.
    """
    if not 0 <= i < n_frames:
        raise ValueError(f"frame {i} out of range for {n_frames} frames")
    width = max(MIN_NAME_WIDTH, len(str(n_frames - 1)))
    return f"{i:0{width}d}.jpg"


def write_frames(frames: np.ndarray, out_dir: str | Path, quality: int = 95) -> None:
    """Write grey ``uint8`` frames ``(T, H, W)`` as ``out_dir/<frame_name>.jpg``, atomically.

    Args:
        frames: the video.
        out_dir: folder to create (replaced if it exists).
        quality: JPEG quality, 0-100.
    """
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise ValueError(f"frames must be uint8 (T, H, W), got {frames.dtype} {frames.shape}")
    with atomic_dir(out_dir) as tmp:
        for i, frame in enumerate(frames):
            path = tmp / frame_name(i, len(frames))
            if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise RuntimeError(f"OpenCV cannot write {path}")


def quarantine_path(index_out: str | Path) -> Path:
    """Where a frame set's quarantine list goes: ``<index stem>_quarantine.csv`` beside it."""
    index_out = Path(index_out)
    return index_out.with_name(f"{index_out.stem}_quarantine.csv")


def reference_count(max_videos: int | dict, frames: int) -> int:
    """Videos of a reference set of ``frames``-frame clips: ``max_videos`` itself, or its entry
    for ``frames`` (EchoNet-Synthetic: ``{16: 3125, 128: 2048}``, about 50k frames and 2048
    clips)."""
    if isinstance(max_videos, dict):
        by_length = {int(k): int(v) for k, v in max_videos.items()}
        if frames not in by_length:
            raise ValueError(
                f"max_videos has no entry for {frames}-frame sets ({sorted(by_length)}); "
                "add one to derived.reference_frames.max_videos"
            )
        return by_length[frames]
    return int(max_videos)


def echonet_synthetic_indices(n_frames: int, fps_native: float, fps: float) -> np.ndarray:
    """Native frame indices of a video resampled to ``fps`` as EchoNet-Synthetic's
    ``create_reference_dataset.py`` resamples: ``floor(fps / fps_native * n)`` indices
    ``linspace(0, n, count, endpoint=False)`` rounded."""
    count = int(np.floor(fps / fps_native * n_frames))
    return np.linspace(0, n_frames, count, endpoint=False).round().astype(int)


def _reference_rows(manifest: pd.DataFrame, split: str, policy: str, shuffle_seed: int):
    """The candidate rows of a reference set, in the order they are tried."""
    if policy == "echonet_synthetic":
        # EchoNet-Synthetic shuffles the whole FileList, then keeps TRAIN rows as it goes.
        shuffled = manifest.sample(frac=1, random_state=shuffle_seed)
        return shuffled[shuffled["Split"] == split]
    rows = manifest[manifest["Split"] == split]
    return rows.sort_values("FileName", kind="stable")


def extract_reference_frames(
    manifest_csv: str | Path,
    out_dir: str | Path,
    index_out: str | Path,
    frames: int,
    fps: float = 32.0,
    max_videos: int | dict = 2048,
    split: str = "TRAIN",
    seed: int = 0,
    quality: int = 95,
    on_error: str = "raise",
    policy: str = "seeded_windows",
    shuffle_seed: int = 42,
) -> pd.DataFrame:
    """Build a StyleGAN-V reference set: ``frames`` consecutive frames at ``fps`` per video.

    Two policies choose the videos and their windows (``policy``, recorded in every row of
    the index and, through it, in every metric table computed against the set):

    - ``"echonet_synthetic"``, as EchoNet-Synthetic's ``scripts/create_reference_dataset.py``
      builds its references: the manifest's rows shuffled as
      ``DataFrame.sample(frac=1, random_state=shuffle_seed)`` (42 there), rows of ``split``
      tried in that order, videos shorter than ``frames / fps`` seconds skipped, each
      resampled by :func:`echonet_synthetic_indices` and cut to its first ``frames`` frames.
      The papers write JPEG quality 100 and keep 3125 16-frame or 2048 128-frame videos.
    - ``"seeded_windows"``: rows of ``split`` in ``FileName`` order, resampled to ``fps`` by
      nearest frame; each window starts at a random frame drawn from
      ``np.random.default_rng([seed, crc32(FileName)])``, so a video's window does not depend
      on the rest of the set (more of each video's cycle is seen across sets).

    Videos too short for a window are dropped (logged, not errors) until the set's count is
    kept. Frames go to ``out_dir/<FileName>/<frame_name>.jpg``; the whole ``out_dir`` is
    written atomically. Bad videos go to :func:`quarantine_path` (``"skip"``).

    Args:
        manifest_csv: harmonised manifest (rows in FileList order).
        out_dir: reference set folder (replaced if it exists).
        index_out: csv with one row per kept video: ``FileName``, ``start`` (first frame,
            counted at ``fps``), ``frames``, ``fps``, ``Path`` (the source video), ``policy``.
        frames: frames per video.
        fps: frame rate of the reference set.
        max_videos: stop after this many videos are kept; a mapping gives the count per
            number of frames (:func:`reference_count`).
        split: manifest split to draw from.
        seed: seed of the ``seeded_windows`` starts.
        quality: JPEG quality.
        on_error: ``"raise"`` stops at the first bad video; ``"skip"`` quarantines it.
        policy: ``"echonet_synthetic"`` or ``"seeded_windows"``.
        shuffle_seed: ``random_state`` of the ``echonet_synthetic`` shuffle.

    Returns:
        The index table.
    """
    if policy not in REFERENCE_POLICIES:
        raise ValueError(f"policy must be one of {REFERENCE_POLICIES}, got {policy!r}")
    manifest_csv = Path(manifest_csv)
    target = reference_count(max_videos, frames)
    rows = _reference_rows(read_manifest(manifest_csv), split, policy, shuffle_seed)
    quarantine = Quarantine(on_error)
    records, dropped = [], []
    longest = 0
    with atomic_dir(out_dir) as tmp:
        for index, row in tqdm(rows.iterrows(), total=len(rows), desc="reference frames"):
            if len(records) == target:
                break
            with quarantine.guard():
                name = str(row["FileName"])
                fps_native = row_fps(row, manifest_csv, line=index + 2)
                native = read_video(row["Path"])
                if policy == "echonet_synthetic":
                    if len(native) / fps_native < frames / fps:
                        dropped.append(f"{name} ({len(native) / fps_native:.2f} s)")
                        continue
                    picked = echonet_synthetic_indices(len(native), fps_native, fps)
                    longest = max(longest, len(picked))
                    if len(picked) < frames:
                        dropped.append(f"{name} ({len(picked)} frames)")
                        continue
                    start, clip = 0, native[picked[:frames]]
                else:
                    video = resample_frames(native, fps_native, fps)
                    longest = max(longest, len(video))
                    if len(video) < frames:
                        dropped.append(f"{name} ({len(video)} frames)")
                        continue
                    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                    start = int(rng.integers(0, len(video) - frames + 1))
                    clip = video[start : start + frames]
                write_frames(clip, tmp / name, quality)
                records.append(
                    {
                        "FileName": name,
                        "start": start,
                        "frames": frames,
                        "fps": fps,
                        "Path": row["Path"],
                        "policy": policy,
                    }
                )
        if not records:
            raise DataError(
                manifest_csv,
                f"no {split} video has {frames} frames at {fps} fps "
                f"(the longest has {longest}, {len(quarantine)} quarantined)",
                "lower the number of frames of the reference set or use longer videos",
            )
    index = pd.DataFrame(records)
    with atomic_path(index_out) as tmp_index:
        index.to_csv(tmp_index, index=False)
    quarantine.write(quarantine_path(index_out))
    if dropped:
        log.info("dropped %d videos too short: %s", len(dropped), ", ".join(dropped))
    log.info(
        "reference set %s (%s): %d videos kept (of %d), %d too short, %d quarantined",
        out_dir,
        policy,
        len(records),
        target,
        len(dropped),
        len(quarantine),
    )
    if len(records) < target:
        log.warning(
            "reference set %s has %d videos, fewer than the %d asked for",
            out_dir,
            len(records),
            target,
        )
    return index


def extract_frames(
    manifest_csv: str | Path,
    out_dir: str | Path,
    index_out: str | Path,
    quality: int = 95,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Write every frame of every manifest video as ``out_dir/<FileName>/<frame_name>.jpg``.

    Used for CardiacNet classification. The whole ``out_dir`` is written atomically; bad
    videos go to :func:`quarantine_path` when ``on_error == "skip"``.

    Args:
        manifest_csv: harmonised manifest.
        out_dir: frames folder (replaced if it exists).
        index_out: csv with one row per video: ``FileName``, ``Split``, ``class_id``,
            ``class_name``, ``n_frames``, ``dir`` (the video's frame folder).
        quality: JPEG quality.
        on_error: ``"raise"`` stops at the first bad video; ``"skip"`` quarantines it.

    Returns:
        The index table.
    """
    out_dir = Path(out_dir)
    rows = read_manifest(manifest_csv)
    quarantine = Quarantine(on_error)
    records = []
    with atomic_dir(out_dir) as tmp:
        for _, row in tqdm(rows.iterrows(), total=len(rows), desc="frames"):
            with quarantine.guard():
                name = str(row["FileName"])
                video = read_video(row["Path"])
                write_frames(video, tmp / name, quality)
                records.append(
                    {
                        "FileName": name,
                        "Split": row["Split"],
                        "class_id": row["class_id"],
                        "class_name": row["class_name"],
                        "n_frames": len(video),
                        "dir": str(out_dir / name),
                    }
                )
    index = pd.DataFrame(
        records, columns=["FileName", "Split", "class_id", "class_name", "n_frames", "dir"]
    )
    with atomic_path(index_out) as tmp_index:
        index.to_csv(tmp_index, index=False)
    quarantine.write(quarantine_path(index_out))
    log.info("%s: %d videos written, %d quarantined", out_dir, len(records), len(quarantine))
    return index
