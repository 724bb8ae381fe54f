"""Read StyleGAN-V's video dataset layout: ``root/<video>/<frame>.<jpg|png>``, depth exactly 2.

StyleGAN-V sorts frame names as strings, so unpadded names (``1.jpg, 10.jpg, 2.jpg``, as
ImageMagick writes them) silently scramble frame order. Here frames are ordered by the
integer value of their stem, which gives the intended order for padded and unpadded names
alike; a stem that is not an integer is an error rather than a guess. Hidden entries (such as
Snakemake's ``.snakemake_timestamp``) are skipped everywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from echogen.data.errors import DataError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT_FIX = "lay the set out as <root>/<video>/<frame number>.jpg (or .png), depth exactly 2"


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def list_videos(root: str | Path) -> list[Path]:
    """Video folders directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "the frame-set folder does not exist", LAYOUT_FIX)
    entries = _visible(root)
    loose = [p for p in entries if not p.is_dir()]
    if loose:
        raise DataError(loose[0], "a file lies directly in the frame-set root", LAYOUT_FIX)
    if not entries:
        raise DataError(root, "the frame-set folder holds no video folders", LAYOUT_FIX)
    return entries


def list_frames(video_dir: str | Path) -> list[Path]:
    """Frame images of one video, sorted by the integer value of their stem."""
    video_dir = Path(video_dir)
    indexed: dict[int, Path] = {}
    for path in _visible(video_dir):
        if path.is_dir():
            raise DataError(path, "a folder lies inside a video folder (depth > 2)", LAYOUT_FIX)
        if path.suffix.lower() not in FRAME_SUFFIXES:
            raise DataError(path, f"not a frame image ({', '.join(FRAME_SUFFIXES)})", LAYOUT_FIX)
        if not path.stem.isdigit():
            raise DataError(path, "the frame name is not an integer", "name frames 0000.jpg, ...")
        index = int(path.stem)
        if index in indexed:
            raise DataError(
                path,
                f"frame number {index} also names {indexed[index].name}",
                "keep one file per frame number",
            )
        indexed[index] = path
    if not indexed:
        raise DataError(video_dir, "the video folder holds no frames", LAYOUT_FIX)
    return [indexed[i] for i in sorted(indexed)]


def load_frames(paths: list[Path]) -> np.ndarray:
    """Read frames into a ``uint8`` array ``(T, H, W, 3)``; grey images are repeated to RGB."""
    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(path, f"cannot read the image ({err})", "re-export the frame") from err
        if frames and frame.shape != frames[0].shape:
            raise DataError(
                path,
                f"frame size {frame.shape[:2]} differs from {frames[0].shape[:2]} in the same set",
                "resize every frame of the set to one resolution",
            )
        frames.append(frame)
    if not frames:
        raise ValueError("no frame paths given")
    return np.stack(frames)


def content_hash(paths: list[Path], extra: dict) -> str:
    """SHA-256 over each frame's ``<video>/<frame>`` name and bytes, then ``extra`` as JSON.

    Only the last two path components enter the hash, so a copied or moved set keeps its hash
    while any renamed, added, removed or edited frame changes it.
    """
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        digest.update("/".join(path.parts[-2:]).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()
