"""EchoNet-Synthetic's privacy filter: drop generated videos too close to a real TRAIN video.

The filter (Reynaud et al., MICCAI 2024; ``/work/shared/PAPERS.md`` §4) embeds first frames
(VAE latents) with the trained re-identification network
(:class:`~echogen.models.privacy.PrivacyEmbedder`) and compares embeddings by Pearson
correlation. Its threshold ``tau`` is set on real data alone, as EchoNet-Synthetic's
``apply.py`` does: for every real TRAIN video, the highest correlation with any held-out
(VAL or TEST) real video, i.e. how close two *different* patients' videos typically come;
``tau`` is the 95th percentile of these. A generated video whose first frame correlates
``>= tau`` with some TRAIN video's first frame is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, link_or_copy, write_json
from echogen.models.privacy import PrivacyEmbedder, load_privacy_model
from echogen.pipelines.latents import latent_header, read_latents

log = logging.getLogger(__name__)

FILELIST = "FileList.csv"
SAMPLE_LATENTS = "latents"
HELDOUT_SPLITS = ("VAL", "TEST")
# Correlation entries per block of max_correlation: 4M float64 = 32 MB.
BLOCK_ENTRIES = 1 << 22


@torch.no_grad()
def embed(
    model: PrivacyEmbedder, latents: np.ndarray | torch.Tensor, batch_size: int, device: str
) -> np.ndarray:
    """Embed latent frames with the model in eval mode.

    Args:
        model: the embedder (moved to ``device`` and set to eval mode here).
        latents: ``(N, C, h, w)`` scaled, unpadded latent frames (any float dtype).
        batch_size: frames per forward pass.
        device: torch device of the forward passes.

    Returns:
        float64 array ``(N, embedding_dim)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = model.to(device).eval()
    if not torch.is_tensor(latents):
        latents = torch.from_numpy(np.asarray(latents))
    out = []
    for start in tqdm(range(0, len(latents), batch_size), desc="embed", leave=False):
        batch = latents[start : start + batch_size].to(device=device, dtype=torch.float32)
        out.append(model(batch).double().cpu().numpy())
    if not out:
        return np.zeros((0, model.config.embedding_dim))
    return np.concatenate(out)


def _standardise(rows: np.ndarray, what: str) -> np.ndarray:
    """Rows centred and scaled to unit norm (float64), so a dot product is Pearson's r."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, features), got shape {rows.shape}")
    centred = rows - rows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    constant = np.flatnonzero(norm[:, 0] == 0)
    if constant.size:
        raise ValueError(
            f"{what} row {constant[0]} is constant, so its Pearson correlation is undefined "
            f"({constant.size} such rows)"
        )
    return centred / norm


def max_correlation(
    queries: np.ndarray, references: np.ndarray, exclude_same: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Highest Pearson correlation of each query row with any reference row.

    Computed in blocks of queries so that memory stays bounded (about 32 MB of correlations
    at a time) for any number of rows.

    Args:
        queries: ``(N, D)``.
        references: ``(M, D)``.
        exclude_same: queries and references are the same set (``N == M``); skip each
            query's correlation with itself.

    Returns:
        ``values`` float64 ``(N,)`` and ``argmax`` int64 ``(N,)`` (index of the best reference).
    """
    q = _standardise(queries, "queries")
    r = _standardise(references, "references")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, references {r.shape[1]}")
    if len(r) == 0 or (exclude_same and len(r) < 2):
        raise ValueError(f"need at least {2 if exclude_same else 1} reference row(s)")
    if exclude_same and len(q) != len(r):
        raise ValueError(
            f"exclude_same needs as many queries as references, got {len(q)}, {len(r)}"
        )
    values = np.empty(len(q))
    argmax = np.empty(len(q), dtype=np.int64)
    block = max(1, BLOCK_ENTRIES // len(r))
    for start in range(0, len(q), block):
        corr = q[start : start + block] @ r.T  # [block, M]
        if exclude_same:
            rows = np.arange(len(corr))
            corr[rows, start + rows] = -np.inf
        best = corr.argmax(axis=1)
        argmax[start : start + len(corr)] = best
        values[start : start + len(corr)] = corr[np.arange(len(corr)), best]
    return np.clip(values, -1.0, 1.0), argmax


def privacy_threshold(
    train_emb: np.ndarray, heldout_emb: np.ndarray, percentile: float = 95.0
) -> float:
    """EchoNet-Synthetic's privacy threshold tau, from real embeddings only.

    For every TRAIN video, the maximum Pearson correlation with any held-out (VAL + TEST)
    video; tau is the ``percentile``-th percentile of these (numpy's linear interpolation),
    as in EchoNet-Synthetic's ``apply.py``.

    Args:
        train_emb: ``(N_train, D)`` embeddings of real TRAIN first frames.
        heldout_emb: ``(N_heldout, D)`` embeddings of real VAL/TEST first frames.
        percentile: in [0, 100].

    Returns:
        tau.
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    closest, _ = max_correlation(train_emb, heldout_emb)
    return float(np.percentile(closest, percentile))


def _first_frames(
    rows: pd.DataFrame, csv: Path, root: Path, in_channels: int, desc: str
) -> np.ndarray:
    """Frame 0 of every row's latent video, float32 ``(N, C, h, w)``."""
    frames = []
    for line, row in tqdm(
        list(zip(rows.index, rows.itertuples(index=False), strict=True)), desc=desc, leave=False
    ):
        path = root / str(row.latent_path)
        shape = latent_header(path, csv, int(line) + 2, row.FileName)
        if len(shape) != 4 or shape[0] < 1 or shape[1] != in_channels:
            raise DataError(
                csv,
                f"latent file {path} has shape {shape}, expected (T, {in_channels}, h, w)",
                "re-encode it with the VAE the privacy model was trained on",
                row=int(line) + 2,
                item=row.FileName,
            )
        frames.append(np.load(path, mmap_mode="r")[0].astype(np.float32))
    return np.stack(frames)


def _sample_frames(filelist: pd.DataFrame, samples_dir: Path, in_channels: int) -> np.ndarray:
    """Each sample's first-frame latent ``latents/<FileName>.npy`` (C, h, w), stacked."""
    csv = samples_dir / FILELIST
    frames = []
    for i, name in enumerate(
        tqdm(filelist["FileName"].tolist(), desc="sample latents", leave=False)
    ):
        path = samples_dir / SAMPLE_LATENTS / f"{name}.npy"
        if not path.is_file():
            raise DataError(
                csv,
                f"first-frame latent {path} does not exist",
                "re-run sampling (it writes latents/<FileName>.npy next to FileList.csv)",
                row=i + 2,
                item=str(name),
            )
        latent = np.load(path)
        if latent.ndim != 3 or latent.shape[0] != in_channels:
            raise DataError(
                csv,
                f"first-frame latent {path} has shape {latent.shape}, "
                f"expected ({in_channels}, h, w)",
                "re-run sampling; latents/<FileName>.npy must hold the unpadded first frame",
                row=i + 2,
                item=str(name),
            )
        frames.append(latent.astype(np.float32))
    return np.stack(frames)


def filter_samples(
    model_dir: str | Path,
    real_latent_index_csv: str | Path,
    samples_dir: str | Path,
    out_dir: str | Path,
    percentile: float = 95.0,
    device: str = "cpu",
    batch_size: int = 256,
    root: str | Path = ".",
    heldout: tuple[str, ...] = HELDOUT_SPLITS,
    link_frames: bool = False,
) -> dict:
    """Drop generated samples whose first frame is too close to a real TRAIN video's.

    Args:
        model_dir: the trained embedder (export folder of
            :func:`~echogen.training.privacy.train_privacy`).
        real_latent_index_csv: the real dataset's latent index (FileName, Split, latent_path);
            TRAIN rows are the videos to protect, VAL and TEST rows set tau.
        samples_dir: a sample folder: ``FileList.csv`` (FileName, ...) and
            ``latents/<FileName>.npy`` (float ``(C, h, w)``, the scaled, unpadded latent of
            each sample's first frame).
        out_dir: written atomically as a whole: ``FileList.csv`` (the kept rows, same
            columns and order), ``dropped.csv`` (dropped rows plus ``max_corr`` and
            ``nearest_real``, the FileName of the closest TRAIN video), ``scores.csv``
            (FileName, max_corr, nearest_real, kept for every sample) and ``summary.json``.
        percentile: tau's percentile.
        device: torch device of the embedder.
        batch_size: frames per forward pass.
        root: folder the index's ``latent_path`` column is relative to.
        heldout: the real splits tau is set against: VAL and TEST (echogen), or TEST alone
            (EchoNet-Synthetic's ``apply.py``, its ``phase="testing"`` set).
        link_frames: also write ``frames/<FileName>/`` of the kept samples (hard links to
            ``samples_dir/frames/``, copies where links fail): a frame folder the metrics
            read, for tables after filtering.

    Returns:
        The summary: tau, percentile, heldout, n_train, n_heldout, n_samples, n_dropped, n_kept,
        model_dir.
    """
    real_csv, samples_dir, out_dir = Path(real_latent_index_csv), Path(samples_dir), Path(out_dir)
    root = Path(root)
    model = load_privacy_model(model_dir)
    in_channels = model.config.in_channels

    real = read_latents(real_csv, required=("FileName", "Split", "latent_path"))
    train_rows = real[real["Split"] == "TRAIN"]
    unknown = sorted(set(heldout) - {"VAL", "TEST"})
    if unknown or not heldout:
        raise ValueError(f"heldout must be some of VAL, TEST; got {list(heldout)}")
    heldout_rows = real[real["Split"].isin(heldout)]
    for rows, what in ((train_rows, "TRAIN"), (heldout_rows, "/".join(heldout))):
        if rows.empty:
            raise DataError(
                real_csv,
                f"no {what} rows",
                "use the latent index of the whole dataset (TRAIN and VAL/TEST rows)",
            )

    filelist_csv = samples_dir / FILELIST
    if not filelist_csv.is_file():
        raise DataError(filelist_csv, "sample list does not exist", "run the sampling step first")
    filelist = pd.read_csv(filelist_csv, dtype={"FileName": str})
    if "FileName" not in filelist.columns:
        raise DataError(
            filelist_csv,
            "sample list lacks the FileName column",
            "use the FileList.csv written by the sampling step",
        )
    if filelist.empty:
        raise DataError(filelist_csv, "sample list is empty", "sample some videos first")

    train_frames = _first_frames(train_rows, real_csv, root, in_channels, "TRAIN latents")
    heldout_frames = _first_frames(heldout_rows, real_csv, root, in_channels, "held-out latents")
    sample_frames = _sample_frames(filelist, samples_dir, in_channels)
    if sample_frames.shape[1:] != train_frames.shape[1:]:
        raise DataError(
            filelist_csv,
            f"sample latents are {sample_frames.shape[1:]}, real ones {train_frames.shape[1:]}",
            "filter samples against the latents of the dataset (and VAE) they were generated from",
        )

    train_emb = embed(model, train_frames, batch_size, device)
    heldout_emb = embed(model, heldout_frames, batch_size, device)
    sample_emb = embed(model, sample_frames, batch_size, device)
    tau = privacy_threshold(train_emb, heldout_emb, percentile)
    max_corr, nearest = max_correlation(sample_emb, train_emb)
    dropped = max_corr >= tau
    nearest_real = train_rows["FileName"].to_numpy()[nearest]

    summary = {
        "tau": tau,
        "percentile": float(percentile),
        "heldout": list(heldout),
        "n_train": len(train_rows),
        "n_heldout": len(heldout_rows),
        "n_samples": len(filelist),
        "n_dropped": int(dropped.sum()),
        "n_kept": int((~dropped).sum()),
        "model_dir": str(model_dir),
    }
    scores = pd.DataFrame(
        {
            "FileName": filelist["FileName"],
            "max_corr": max_corr,
            "nearest_real": nearest_real,
            "kept": ~dropped,
        }
    )
    with atomic_dir(out_dir) as tmp:
        filelist[~dropped].to_csv(tmp / FILELIST, index=False)
        dropped_rows = filelist[dropped].assign(
            max_corr=max_corr[dropped], nearest_real=nearest_real[dropped]
        )
        dropped_rows.to_csv(tmp / "dropped.csv", index=False)
        scores.to_csv(tmp / "scores.csv", index=False)
        write_json(tmp / "summary.json", summary)
        if link_frames:
            _link_kept_frames(samples_dir / "frames", tmp / "frames", filelist[~dropped])
    log.info(
        "privacy filter: tau %.4f (p%g), dropped %d of %d samples",
        tau,
        percentile,
        summary["n_dropped"],
        summary["n_samples"],
    )
    return summary


def _link_kept_frames(frames_dir: Path, out: Path, kept: pd.DataFrame) -> None:
    """``out/<FileName>/`` for every kept sample, linked from ``frames_dir/<FileName>/``."""
    out.mkdir()
    for name in kept["FileName"]:
        source = frames_dir / str(name)
        if not source.is_dir():
            raise DataError(
                frames_dir,
                f"no frame folder for kept sample {name}",
                "re-run sampling (it writes frames/<FileName>/ beside FileList.csv)",
                item=str(name),
            )
        (out / str(name)).mkdir()
        for frame in sorted(source.iterdir()):
            link_or_copy(frame, out / str(name) / frame.name)
