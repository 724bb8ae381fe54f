"""Dense optical flow (OpenCV Farneback) for grey clips, as the RV-failure paper computes it.

Flow is computed between consecutive frames at the clip's full resolution and only then
resized, so small motions are not lost to downsampling first. When resizing, the flow vectors
are scaled by ``size / W`` (x) and ``size / H`` (y) so they stay in output pixels per frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_dir, atomic_path
from echogen.data.manifest import chunk_rows, read_manifest
from echogen.data.parts import write_part_index
from echogen.data.video import read_video

# Farneback settings of the RV-failure paper (rohanshad/postop_rv_failure_echo):
# cv2.calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0).
FARNEBACK_PAPER = dict(
    pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0
)


def farneback_flow(
    frames: np.ndarray, params: dict = FARNEBACK_PAPER, size: int | None = None
) -> np.ndarray:
    """Farneback flow between consecutive frames.

    Args:
        frames: grey ``uint8`` clip of shape ``(T, H, W)``, ``T >= 2``.
        params: keyword arguments of ``cv2.calcOpticalFlowFarneback`` (``pyr_scale``,
            ``levels``, ``winsize``, ``iterations``, ``poly_n``, ``poly_sigma``, ``flags``).
        size: output side in pixels; ``None`` keeps ``H × W``.

    Returns:
        ``float16`` array ``(T-1, size, size, 2)`` (or ``(T-1, H, W, 2)``): channel 0 is the x
        (column) displacement, channel 1 the y (row) displacement, in output pixels.
    """
    if frames.dtype != np.uint8 or frames.ndim != 3 or len(frames) < 2:
        raise ValueError(
            f"frames must be uint8 (T, H, W) with T >= 2, got {frames.dtype} {frames.shape}"
        )
    n_frames, height, width = frames.shape
    out_h, out_w = (height, width) if size is None else (size, size)
    # Vectors measured in input pixels become output pixels: x scales with the width ratio,
    # y with the height ratio.
    scale = np.array([out_w / width, out_h / height], dtype=np.float32)
    shrink = out_h < height or out_w < width
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    flow = np.empty((n_frames - 1, out_h, out_w, 2), dtype=np.float16)
    for t in range(n_frames - 1):
        pair_flow = cv2.calcOpticalFlowFarneback(frames[t], frames[t + 1], None, **params)
        if (out_h, out_w) != (height, width):
            pair_flow = cv2.resize(pair_flow, (out_w, out_h), interpolation=interp) * scale
        flow[t] = pair_flow
    return flow


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def compute_flow(
    manifest_csv: str | Path,
    chunk: int,
    n_chunks: int,
    part_dir: str | Path,
    params: dict = FARNEBACK_PAPER,
    size: int | None = None,
    on_error: str = "raise",
) -> None:
    """Compute Farneback flow for one chunk of a manifest's videos into a part folder.

    Writes ``part_dir/<FileName>_flow.npy`` (``float16 (T-1, size, size, 2)``) per video and
    the part's ``index.csv`` (FileName, Path of the ``.npy``, VideoPath, Split,
    NumberOfFrames of the decoded video, FrameHeight, FrameWidth of the flow) and
    ``quarantine.csv``. The folder appears only once complete.

    Args:
        manifest_csv: harmonised manifest (its ``Path`` column locates the videos).
        chunk: this job's chunk, ``0 <= chunk < n_chunks``.
        n_chunks: number of chunk jobs (rows are strided across them).
        part_dir: output part folder.
        params: Farneback parameters (see :func:`farneback_flow`).
        size: output side in pixels; ``None`` keeps each video's size.
        on_error: ``"raise"`` or ``"skip"`` (quarantine unreadable or one-frame videos).
    """
    rows = chunk_rows(read_manifest(manifest_csv), chunk, n_chunks)
    quarantine = Quarantine(on_error)
    records = []
    with atomic_dir(part_dir) as tmp:
        for row in tqdm(rows.to_dict("records"), desc=f"flow chunk {chunk}/{n_chunks}"):
            with quarantine.guard():
                frames = read_video(row["Path"])
                if len(frames) < 2:
                    raise DataError(
                        row["Path"],
                        "video has a single frame, so it has no optical flow",
                        "remove it from the manifest, or set on_error: skip",
                        item=row["FileName"],
                    )
                flow = farneback_flow(frames, params, size)
                name = f"{row['FileName']}_flow.npy"
                save_npy(tmp / name, flow)
                records.append(
                    {
                        "FileName": row["FileName"],
                        "Path": str(Path(part_dir) / name),
                        "VideoPath": row["Path"],
                        "Split": row["Split"],
                        "NumberOfFrames": len(frames),
                        "FrameHeight": flow.shape[1],
                        "FrameWidth": flow.shape[2],
                    }
                )
        write_part_index(tmp, records, quarantine)
