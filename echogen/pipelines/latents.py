"""VAE latents of every video: the training data of the latent video diffusion models.

EchoNet-Synthetic (PAPERS.md §4) encodes each video once with its image VAE: frames
resampled to 32 fps, resized to 112², grey ``x / 128 - 1``, and stored as the posterior mean
times the VAE's ``scaling_factor`` (4×14×14 per frame, not padded). :func:`encode_chunk`
writes one chunk of a manifest into a part folder::

    part_<chunk>/<FileName>.npy   float16 (T, C, h, w)
    part_<chunk>/index.csv        the manifest row + latent_path, latent_frames, latent_fps,
                                  scaling_factor
    part_<chunk>/quarantine.csv   videos skipped for bad input (on_error="skip")

and :func:`echogen.data.parts.gather_parts` joins the parts' indexes into one. The LVDM
trainers read that index with :func:`read_latents` and each video with :func:`load_latent`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.errors import DataError, Quarantine
from echogen.data.io import atomic_dir
from echogen.data.manifest import chunk_rows, read_manifest, row_fps
from echogen.data.parts import write_part_index
from echogen.data.video import read_video, resample_frames, resize_frames
from echogen.models.vae import encode_frames, load_vae

log = logging.getLogger(__name__)

LATENT_COLUMNS = ["latent_path", "latent_frames", "latent_fps", "scaling_factor"]
LATENT_DTYPE = np.float16


def _relative_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` if inside it (symlinks kept as named), else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(os.path.abspath(root)))
    except ValueError:
        return str(absolute)


def encode_chunk(
    manifest_csv: str | Path,
    vae_dir: str | Path,
    part_dir: str | Path,
    chunk: int,
    n_chunks: int,
    fps: float = 32.0,
    size: int = 112,
    device: str = "cpu",
    batch_size: int = 64,
    on_error: str = "raise",
    root: str | Path = ".",
) -> pd.DataFrame:
    """Encode one chunk of a manifest's videos into a part folder (written atomically).

    Args:
        manifest_csv: harmonised manifest; its ``Path`` column (relative to ``root``) locates
            the videos and its ``FPS`` column gives their frame rate.
        vae_dir: VAE folder (:func:`~echogen.models.vae.load_vae`).
        part_dir: output part folder; it appears only once complete, replacing any old one.
        chunk: this job's chunk, ``0 <= chunk < n_chunks``.
        n_chunks: number of chunk jobs (rows are strided across them).
        fps: frame rate the videos are resampled to before encoding (nearest frame).
        size: frames are resized to ``size × size``.
        device: torch device of the VAE.
        batch_size: frames per VAE forward pass.
        on_error: "raise" stops at the first bad video (a DataError naming it); "skip"
            quarantines it.
        root: the workflow folder: the manifest's ``Path`` is relative to it, and so is the
            ``latent_path`` written when ``part_dir`` lies inside it.

    Returns:
        The part's index: every manifest column of the encoded rows plus ``latent_path``,
        ``latent_frames`` (T), ``latent_fps`` and ``scaling_factor``.
    """
    if fps <= 0 or size < 1:
        raise ValueError(f"fps must be > 0 and size >= 1, got {fps} and {size}")
    manifest_csv, part_dir, root = Path(manifest_csv), Path(part_dir), Path(root)
    quarantine = Quarantine(on_error)
    rows = chunk_rows(read_manifest(manifest_csv), chunk, n_chunks)
    vae = load_vae(vae_dir, device)
    scaling_factor = float(vae.config.scaling_factor)
    records = []
    with atomic_dir(part_dir) as tmp:
        for index, row in tqdm(
            rows.iterrows(), total=len(rows), desc=f"latents chunk {chunk}/{n_chunks}"
        ):
            with quarantine.guard():
                native_fps = row_fps(row, manifest_csv, line=index + 2)
                try:
                    frames = read_video(root / str(row["Path"]))
                except DataError as err:
                    err.item = err.item or str(row["FileName"])  # the quarantine names it
                    raise
                frames = resize_frames(resample_frames(frames, native_fps, fps), size)
                latents = encode_frames(vae, frames, batch_size).astype(LATENT_DTYPE)
                if not np.isfinite(latents).all():
                    raise DataError(
                        vae_dir,
                        f"latents of {row['FileName']} are not finite in float16",
                        "check the VAE (a diverged training run?) and its scaling_factor",
                        item=str(row["FileName"]),
                    )
                name = f"{row['FileName']}.npy"
                with open(tmp / name, "wb") as handle:
                    np.save(handle, latents)
                records.append(
                    {
                        **row.to_dict(),
                        "latent_path": _relative_to(part_dir / name, root),
                        "latent_frames": len(latents),
                        "latent_fps": float(fps),
                        "scaling_factor": scaling_factor,
                    }
                )
        write_part_index(tmp, records, quarantine)
    log.info(
        "latents chunk %d/%d: %d videos encoded, %d quarantined",
        chunk,
        n_chunks,
        len(records),
        len(quarantine),
    )
    return pd.DataFrame(records)


def read_latents(
    index_csv: str | Path, required: Sequence[str] = ("FileName", *LATENT_COLUMNS)
) -> pd.DataFrame:
    """Read a latents index (a part's or the gathered one); every reader of one goes through here.

    Args:
        index_csv: the csv.
        required: columns that must be present (the trainers and the sampler name theirs).

    Returns:
        The table with FileName and patient_id as strings (only empty cells are missing).

    Raises:
        DataError: the file is missing or lacks the latent columns.
    """
    index_csv = Path(index_csv)
    fix = "re-run the latents rules (encode_chunk, then gather_parts)"
    if not index_csv.is_file():
        raise DataError(index_csv, "latents index does not exist", fix)
    try:
        table = pd.read_csv(
            index_csv,
            dtype={"FileName": str, "patient_id": str},
            keep_default_na=False,
            na_values=[""],
        )
    except pd.errors.EmptyDataError:
        # gather_parts writes an empty table when every video was quarantined.
        return pd.DataFrame(columns=list(dict.fromkeys(["FileName", "Split", *required])))
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(index_csv, f"not a latents index (missing {missing})", fix)
    return table


def load_latent(row: pd.Series | dict, root: str | Path = ".") -> np.ndarray:
    """The latents of one index row as float32 ``(T, C, h, w)`` (scaled, not padded).

    Args:
        row: a row of :func:`read_latents` (``latent_path``, ``latent_frames``).
        root: folder ``latent_path`` is relative to.

    Raises:
        DataError: the file is missing, unreadable or not ``latent_frames`` 4-d frames.
    """
    path = Path(root) / str(row["latent_path"])
    fix = "re-run the latents rule for this dataset"
    if not path.is_file():
        raise DataError(path, "latents file does not exist", fix, item=str(row["FileName"]))
    try:
        latents = np.load(path)
    except (ValueError, OSError) as err:
        raise DataError(
            path, f"unreadable latents ({err})", fix, item=str(row["FileName"])
        ) from err
    if latents.ndim != 4 or len(latents) != int(row["latent_frames"]):
        raise DataError(
            path,
            f"latents have shape {latents.shape}, expected ({row['latent_frames']}, C, h, w)",
            fix,
            item=str(row["FileName"]),
        )
    return latents.astype(np.float32)


def latent_header(path: Path, csv: str | Path, row: int, name: str) -> tuple[int, ...]:
    """Shape of a latent ``.npy`` (read from its header), or a DataError naming the index row."""
    if not path.is_file():
        raise DataError(
            csv,
            f"latent file {path} does not exist",
            "re-run the latent encoding step, or fix latent_path / the root folder",
            row=row,
            item=name,
        )
    try:
        return tuple(np.load(path, mmap_mode="r").shape)
    except (ValueError, OSError) as err:
        raise DataError(
            csv,
            f"cannot read latent file {path} ({err})",
            "re-run the latent encoding step for this video",
            row=row,
            item=name,
        ) from err
