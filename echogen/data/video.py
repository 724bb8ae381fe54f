"""Reading, probing and writing grey echocardiogram videos with OpenCV.

Videos are handled as ``uint8`` arrays of shape ``(T, H, W)`` (grey). Colour files are
converted to grey on read (EchoNet's AVIs carry three identical channels). Every failure
raises :class:`~echogen.data.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.ndimage

from echogen.data.errors import DataError
from echogen.data.io import atomic_path

# Container suffix -> FourCC written by :func:`write_video`. MJPG in AVI is what the
# phantom writes for EchoNet layouts; mp4v in MP4 is EchoDream's CardiacNet format.
FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}
# Suffixes of the video files a folder of videos (a synthetic dataset's, a user's) holds.
VIDEO_SUFFIXES = (".avi", ".mp4")
# A decoded frame count may differ from the container header by this much before the
# file counts as truncated (some muxers round the header).
FRAME_COUNT_SLACK = 1


@dataclass(frozen=True)
class VideoInfo:
    """Header facts of a video file."""

    frames: int
    height: int
    width: int
    fps: float


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise DataError(path, "video file does not exist", "check the dataset root and FileName")
    if path.stat().st_size == 0:
        raise DataError(path, "video file is empty (0 bytes)", "re-download or re-export it")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(
            path,
            "OpenCV cannot open the video",
            "re-download or re-encode it (e.g. ffmpeg -c:v mjpeg)",
        )
    return cap


def probe_video(path: str | Path) -> VideoInfo:
    """Read frame count, size and frame rate from the container header (no decoding)."""
    path = Path(path)
    cap = _open(path)
    try:
        info = VideoInfo(
            frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            fps=float(cap.get(cv2.CAP_PROP_FPS)),
        )
    finally:
        cap.release()
    if info.frames <= 0 or info.height <= 0 or info.width <= 0:
        raise DataError(
            path, f"video header is unusable ({info})", "re-download or re-encode the file"
        )
    return info


def read_video(path: str | Path, check_length: bool = True) -> np.ndarray:
    """Decode every frame as grey ``uint8`` of shape ``(T, H, W)``.

    Args:
        path: video file.
        check_length: raise if fewer frames decode than the header announces (truncated file).
    """
    path = Path(path)
    cap = _open(path)
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise DataError(path, "no frame could be decoded", "re-download or re-encode the file")
    if check_length and expected > 0 and len(frames) < expected - FRAME_COUNT_SLACK:
        raise DataError(
            path,
            f"video is truncated: header says {expected} frames, {len(frames)} decode",
            "re-download the file, or set on_error: skip to quarantine it",
        )
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write grey ``uint8`` frames ``(T, H, W)`` atomically; the codec follows the suffix.

    Frames are stored as three identical channels, as EchoNet's AVIs are.
    """
    path = Path(path)
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise ValueError(f"frames must be uint8 (T, H, W), got {frames.dtype} {frames.shape}")
    if path.suffix not in FOURCC:
        raise ValueError(f"unsupported video suffix {path.suffix!r}; use one of {list(FOURCC)}")
    height, width = frames.shape[1:]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(
            str(tmp), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), float(fps), (width, height)
        )
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {FOURCC[path.suffix]} video to {path}")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()


def resample_frames(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample a clip in time to ``fps_out`` by nearest-frame selection.

    Returns ``floor(T * fps_out / fps_in)`` frames (at least one).
    """
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"frame rates must be positive, got {fps_in} -> {fps_out}")
    n_out = max(1, int(len(frames) * fps_out / fps_in))
    index = np.minimum(np.round(np.arange(n_out) * fps_in / fps_out).astype(int), len(frames) - 1)
    return frames[index]


def resample_frames_linear(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample a clip in time to ``fps_out`` by linear interpolation between frames.

    EchoDiffusion's regressor data (``scipy.ndimage.zoom(video, (1, fps_out / fps_in, 1, 1),
    order=1)``): ``round(T * fps_out / fps_in)`` frames whose first and last are the input's
    first and last, each a linear blend of its two nearest input frames (rounded back to the
    input's integer type).
    """
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"frame rates must be positive, got {fps_in} -> {fps_out}")
    if fps_in == fps_out:
        return frames
    zoom = (fps_out / fps_in,) + (1,) * (frames.ndim - 1)
    return scipy.ndimage.zoom(frames, zoom, order=1)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(T, H, W)`` frames to ``size × size`` (area interpolation when shrinking)."""
    if frames.shape[1:] == (size, size):
        return frames
    shrink = frames.shape[1] > size or frames.shape[2] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
