"""D'ARTAGNAN clips: fixed-length grey clips centred between the traced ES and ED frames.

D'ARTAGNAN (Reynaud et al., MICCAI 2022) trains on 64-frame clips at 32 fps (2 s) centred
between ES and ED, stored as grey ``/255`` float16 ``.npy`` files with a ``metainfo.csv``
giving the positions of ED and ES inside each clip. Its ``build_echo_dataset.py`` prompts
interactively and drops videos; here the window is shifted to stay inside the video, and
only a video shorter than the window is padded (by repeating its last frame).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_path
from echogen.data.manifest import chunk_rows, read_manifest, row_fps
from echogen.data.parts import gather_parts, write_part_index
from echogen.data.video import read_video, resample_frames

log = logging.getLogger(__name__)

METAINFO_COLUMNS = [
    "FileName", "Path", "EF", "ESV", "EDV", "Split", "ED", "ES", "ED_clip", "ES_clip", "FPS",
    "NumberOfFrames",
]  # fmt: skip


def dartagnan_window(
    ed: int,
    es: int,
    n_frames_native: int,
    fps_native: float,
    frames: int = 64,
    fps: float = 32.0,
) -> np.ndarray:
    """Native frame indices of a ``frames``-long clip at ``fps`` centred between ES and ED.

    The video's time line is resampled to ``fps`` by nearest-frame selection (exactly as
    :func:`~echogen.data.video.resample_frames` does). The resampled frame holding the
    midpoint ``(ed + es) / 2`` is put at clip position ``frames // 2``; a window that would
    run off either end is shifted back inside the video. Only when the resampled video has
    fewer than ``frames`` frames is the clip padded, by repeating its last frame.

    Args:
        ed: end-diastolic frame index in the native video.
        es: end-systolic frame index in the native video.
        n_frames_native: number of frames of the native video.
        fps_native: frame rate of the native video.
        frames: clip length.
        fps: clip frame rate.

    Returns:
        ``int`` array of length ``frames``: indices into the native video.
    """
    if n_frames_native < 1 or frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames_native} native, {frames} clip")
    timeline = resample_frames(np.arange(n_frames_native), fps_native, fps)
    mid = (ed + es) / 2 * fps / fps_native  # midpoint on the resampled time line
    if len(timeline) < frames:
        pad = np.full(frames - len(timeline), timeline[-1])
        return np.concatenate([timeline, pad]).astype(int)
    start = int(np.floor(mid)) - frames // 2
    start = min(max(start, 0), len(timeline) - frames)
    return timeline[start : start + frames].astype(int)


def clip_position(frame: int, window: np.ndarray) -> int:
    """Position in ``window`` of the clip frame nearest to native ``frame``; -1 if outside."""
    if frame < window[0] or frame > window[-1]:
        return -1
    return int(np.argmin(np.abs(window - frame)))


def _traced_frames(row: pd.Series, manifest_csv: Path, line: int) -> tuple[int, int, float]:
    """ED, ES and FPS of a manifest row, or a DataError naming the row."""
    name = str(row["FileName"])
    if pd.isna(row["EDFrame"]) or pd.isna(row["ESFrame"]):
        raise DataError(
            manifest_csv,
            f"video {name} has no EDFrame/ESFrame",
            "D'ARTAGNAN clips need traced frames: ingest the dataset with its VolumeTracings.csv",
            row=line,
            item=name,
        )
    return int(row["EDFrame"]), int(row["ESFrame"]), row_fps(row, manifest_csv, line)


def extract_dartagnan_clips(
    manifest_csv: str | Path,
    chunk: int,
    n_chunks: int,
    part_dir: str | Path,
    frames: int = 64,
    fps: float = 32.0,
    on_error: str = "raise",
) -> None:
    """Write one chunk's D'ARTAGNAN clips and metainfo rows into a part folder.

    Each clip is saved as ``part_dir/<FileName>.npy``: grey ``/255`` float16 of shape
    ``(frames, H, W)``. The part's ``index.csv`` holds D'ARTAGNAN's ``metainfo.csv`` rows
    (:data:`METAINFO_COLUMNS`): ``ED``/``ES`` are native frame indices, ``ED_clip``/``ES_clip``
    their nearest positions in the clip (-1 if outside it), ``FPS``/``NumberOfFrames`` the
    clip's.

    Args:
        manifest_csv: harmonised manifest with ``EDFrame``/``ESFrame`` filled.
        chunk: this job's chunk number, ``0 <= chunk < n_chunks``.
        n_chunks: number of chunk jobs.
        part_dir: output part folder.
        frames: clip length.
        fps: clip frame rate.
        on_error: ``"raise"`` stops at the first bad row; ``"skip"`` quarantines it.
    """
    manifest_csv = Path(manifest_csv)
    part_dir = Path(part_dir)
    part_dir.mkdir(parents=True, exist_ok=True)
    rows = chunk_rows(read_manifest(manifest_csv), chunk, n_chunks)
    quarantine = Quarantine(on_error)
    records = []
    for index, row in tqdm(rows.iterrows(), total=len(rows), desc=f"dartagnan chunk {chunk}"):
        with quarantine.guard():
            ed, es, fps_native = _traced_frames(row, manifest_csv, line=index + 2)
            video = read_video(row["Path"])
            window = dartagnan_window(ed, es, len(video), fps_native, frames, fps)
            clip = (video[window] / 255.0).astype(np.float16)  # (frames, H, W)
            out = part_dir / f"{row['FileName']}.npy"
            with atomic_path(out) as tmp:
                np.save(tmp, clip)
            records.append(
                {
                    "FileName": row["FileName"],
                    "Path": str(out),
                    "EF": row["EF"],
                    "ESV": row["ESV"],
                    "EDV": row["EDV"],
                    "Split": row["Split"],
                    "ED": ed,
                    "ES": es,
                    "ED_clip": clip_position(ed, window),
                    "ES_clip": clip_position(es, window),
                    "FPS": fps,
                    "NumberOfFrames": frames,
                }
            )
    write_part_index(part_dir, records, quarantine)
    log.info(
        "chunk %d/%d: %d clips written, %d quarantined",
        chunk,
        n_chunks,
        len(records),
        len(quarantine),
    )


def gather_dartagnan(
    part_dirs: Sequence[str | Path], metainfo_out: str | Path, quarantine_out: str | Path
) -> pd.DataFrame:
    """Concatenate the parts' metainfo rows into ``metainfo_out`` (see :func:`gather_parts`)."""
    return gather_parts(part_dirs, metainfo_out, quarantine_out)


def read_metainfo(metainfo_csv: str | Path, split: str) -> pd.DataFrame:
    """The ``split`` rows of a D'ARTAGNAN ``metainfo.csv``, by FileName, checked: every
    column of :data:`METAINFO_COLUMNS` present and every EF a number in 0..100.

    Raises:
        DataError: a missing column, a bad EF (the row is named) or no row of the split.
    """
    metainfo_csv = Path(metainfo_csv)
    rows = pd.read_csv(metainfo_csv)
    missing = [c for c in METAINFO_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(metainfo_csv, f"missing columns {missing}",
                        "re-run rule gather_dartagnan_clips")  # fmt: skip
    ef = pd.to_numeric(rows["EF"], errors="coerce")
    bad = rows.index[ef.isna() | (ef < 0) | (ef > 100)]
    if len(bad):
        first = bad[0]
        raise DataError(metainfo_csv, f"EF {rows.loc[first, 'EF']} is not a number in 0..100",
                        "fix the video's EF in the manifest or drop the video", row=first + 2,
                        item=str(rows.loc[first, "FileName"]))  # fmt: skip
    rows = rows[rows["Split"] == split].sort_values("FileName", kind="stable")
    if rows.empty:
        raise DataError(metainfo_csv, f"no {split} clips",
                        "ingest a dataset with TRAIN/VAL/TEST splits")  # fmt: skip
    return rows.reset_index(drop=True)


def load_clip(path: str | Path, frames: int, size: int, item: str = "") -> np.ndarray:
    """One D'ARTAGNAN clip as float32 ``(1, frames, size, size)`` in [0, 1] (bilinear,
    antialiased resize when its frames are another size).

    Raises:
        DataError: the file cannot be read or is not a ``(frames, H, W)`` clip.
    """
    import torch
    import torch.nn.functional as F

    try:
        clip = np.load(path)
    except (OSError, ValueError) as error:
        raise DataError(path, f"unreadable clip ({error})", "re-run rule extract_dartagnan_clips",
                        item=item or None) from error  # fmt: skip
    if clip.ndim != 3 or len(clip) != frames:
        raise DataError(path, f"clip of shape {clip.shape}, expected ({frames}, H, W)",
                        "extract the clips with derived.dartagnan_clips.frames equal to the "
                        "model's frames", item=item or None)  # fmt: skip
    x = torch.from_numpy(clip.astype(np.float32))[:, None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)  # fmt: skip
    return x[:, 0][None].clamp(0, 1).numpy()


class DartagnanClipSet:
    """The clips of metainfo rows as ``(clip (1, T, S, S) float32, EF)`` items."""

    def __init__(self, rows: pd.DataFrame, frames: int, size: int, root: str | Path = "."):
        self.rows, self.frames, self.size, self.root = rows, frames, size, Path(root)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.float32]:
        row = self.rows.iloc[int(index)]
        clip = load_clip(self.root / row["Path"], self.frames, self.size, row["FileName"])
        return clip, np.float32(row["EF"])
