"""EF prediction with a trained regressor, and the EchoNet-style report.

EchoNet-Dynamic reports two test predictions per video (PAPERS.md §1): "one clip", from a
random start, and the average over all clips (every start, or every ``test_clip_stride``-th),
each with MAE/RMSE/R² and bootstrap intervals. The one clip is the model's
``ClipSpec.clip_start``: a seeded random window (EchoNet) or the one at frame 0
(EchoDiffusion). :func:`predict_ef` writes both for any
rows (a manifest split, or :func:`video_folder_rows` for a folder of generated videos, whose
EF may be unknown); :func:`regressor_report` scores them and adds the baseline of predicting
the training-set mean, so a regressor that learned nothing is plain to see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.ef_clips import EFClipDataset
from echogen.data.errors import DataError
from echogen.data.io import atomic_path, write_json
from echogen.data.video import VIDEO_SUFFIXES, probe_video
from echogen.metrics.scores import ef_metrics, ef_report, interval_label

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["FileName", "Split", "EF", "EF_pred_clip", "EF_pred_all", "n_clips"]
FILELIST = "FileList.csv"


def predict_ef(
    model_dir: str | Path,
    rows: pd.DataFrame,
    out_csv: str | Path,
    device: str = "cpu",
    batch_size: int = 8,
    root: str | Path = ".",
) -> pd.DataFrame:
    """Predict EF for every row: from one clip and averaged over all clips.

    ``EF_pred_clip`` is the window the model's ``ClipSpec.clip_start`` picks (frame 0, or a
    random one seeded by the row's position; :meth:`EFClipDataset.single_clip_index`).

    Args:
        model_dir: export folder of :func:`~echogen.training.regressor.train_regressor`.
        rows: FileName, Path and FPS (FPS needed when the model's clips resample); EF (true,
            may be empty) and Split are copied when present.
        out_csv: predictions csv, written atomically with :data:`PREDICTION_COLUMNS`.
        device: torch device of the forward passes.
        batch_size: clips per forward pass (clips of consecutive videos share a batch).
        root: folder that the ``Path`` column is relative to.

    Returns:
        The predictions table (EF NaN where unknown; n_clips = clips averaged).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from echogen.models.regressor import load_regressor  # diffusers: only to predict

    model, spec = load_regressor(model_dir)
    model = model.to(device).eval()
    true_ef = _true_ef(rows)
    # The dataset insists on a numeric EF (a training target); prediction does not use it.
    placeholder = rows.assign(EF=true_ef.fillna(0.0))
    dataset = EFClipDataset(placeholder, spec, train=False, seed=0, root=root)

    per_video = all_clip_outputs(model, dataset, batch_size, device, desc="predict EF")
    counts = [len(p) for p in per_video]
    single = [p[dataset.single_clip_index(i, len(p))] for i, p in enumerate(per_video)]

    table = pd.DataFrame(
        {
            "FileName": [str(v) for v in rows["FileName"]],
            "Split": rows["Split"].to_numpy() if "Split" in rows else pd.NA,
            "EF": true_ef.to_numpy(),
            "EF_pred_clip": single,
            "EF_pred_all": [p.mean() for p in per_video],
            "n_clips": counts,
        },
        columns=PREDICTION_COLUMNS,
    )
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    log.info("predicted EF of %d videos (%d clips) -> %s", len(table), sum(counts), out_csv)
    return table


@torch.no_grad()
def all_clip_outputs(
    model: torch.nn.Module,
    dataset: EFClipDataset,
    batch_size: int,
    device: str = "cpu",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    desc: str = "predict",
) -> list[np.ndarray]:
    """Outputs of ``model`` on every clip of every video (``dataset.all_clips``).

    Clips of consecutive videos share batches of ``batch_size``; ``transform`` (e.g. a
    softmax) is applied to each batch's float outputs.

    Returns:
        One float64 array per video, ``(n_clips, ...)``, in dataset order.
    """
    counts, outputs = [], []
    queue: list[torch.Tensor] = []

    def run(batch: torch.Tensor) -> None:
        out = model(batch.to(device)).float()
        outputs.append((transform(out) if transform else out).cpu())

    for i in tqdm(range(len(dataset)), desc=desc, leave=False):
        clips, _ = dataset.all_clips(i)
        counts.append(len(clips))
        queue.append(clips)
        pooled = sum(len(q) for q in queue)
        while pooled >= batch_size:
            batch = torch.cat(queue)
            run(batch[:batch_size])
            queue, pooled = [batch[batch_size:]], pooled - batch_size
    if any(len(q) for q in queue):
        run(torch.cat(queue))
    flat = torch.cat(outputs).numpy().astype(np.float64)
    return np.split(flat, np.cumsum(counts)[:-1])


def _true_ef(rows: pd.DataFrame) -> pd.Series:
    """EF as float (NaN when absent or empty); a non-numeric value is a DataError."""
    if "EF" not in rows:
        return pd.Series(np.nan, index=rows.index, dtype=float)
    ef = pd.to_numeric(rows["EF"], errors="coerce").astype(float)
    bad = ef.isna() & rows["EF"].notna()
    if bad.any():
        name = rows.loc[bad, "FileName"].iloc[0]
        raise DataError(
            rows.attrs.get("source", "rows"),
            f"video {name} has a non-numeric EF {rows.loc[bad, 'EF'].iloc[0]!r}",
            "correct the EF or leave it empty (unknown)",
            item=str(name),
        )
    return ef


def video_folder_rows(folder: str | Path, fps: float | None = None) -> pd.DataFrame:
    """Rows for :func:`predict_ef` from a folder of ``*.avi`` / ``*.mp4`` videos.

    A ``FileList.csv`` in the folder, or beside it when the folder is named ``Videos`` (the
    EchoNet layout; ``FileName`` with or without the extension) supplies EF, FPS and Split
    for the videos it lists; other videos get EF and Split empty and the FPS of their header.

    Args:
        folder: the video folder; ``Path`` is ``folder/<file>`` as given.
        fps: frame rate of every video, overriding the FileList and the headers (for
            generated videos whose container rate is not their true rate).

    Returns:
        Columns FileName (no extension), Path, FPS, EF, Split; sorted by file name.
    """
    folder = Path(folder)
    videos = sorted(p for p in folder.glob("*") if p.suffix in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise DataError(folder, "no .avi or .mp4 videos in the folder", "check the folder path")
    stems = [p.stem for p in videos]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise DataError(folder, f"videos {twice} exist as both .avi and .mp4", "keep one of each")
    filelist = folder / FILELIST
    if not filelist.is_file() and folder.name == "Videos":  # EchoNet layout: beside Videos/
        filelist = folder.parent / FILELIST
    listed = _read_folder_filelist(filelist, set(stems))

    records = []
    for path in videos:
        known = listed.get(path.stem, {})
        rate = fps if fps is not None else known.get("FPS", np.nan)
        if pd.isna(rate):
            rate = probe_video(path).fps
        records.append(
            {
                "FileName": path.stem,
                "Path": str(path),
                "FPS": float(rate),
                "EF": float(known.get("EF", np.nan)),
                "Split": known.get("Split", pd.NA),
            }
        )
    rows = pd.DataFrame(records)
    rows.attrs["source"] = str(filelist) if listed else str(folder)
    return rows


def _read_folder_filelist(filelist: Path, on_disk: set[str]) -> dict[str, dict]:
    """FileName (no extension) -> its EF/FPS/Split values; {} when there is no FileList."""
    if not filelist.is_file():
        return {}
    table = pd.read_csv(filelist, dtype={"FileName": str, "Split": str})
    if "FileName" not in table:
        raise DataError(filelist, "column 'FileName' is missing", "add it (video names)", row=1)
    listed = {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2
        name = str(row["FileName"])
        name = Path(name).stem if Path(name).suffix in VIDEO_SUFFIXES else name
        if name in listed:
            raise DataError(filelist, f"duplicate FileName {name!r}", "remove one", row=line)
        if name not in on_disk:
            raise DataError(
                filelist,
                f"video {name!r} is listed but not in the folder",
                "remove the row or add the video",
                row=line,
            )
        values = {}
        for column in ("EF", "FPS"):
            if column in row and not pd.isna(row[column]):
                value = pd.to_numeric(pd.Series([row[column]]), errors="coerce").iloc[0]
                if pd.isna(value):
                    raise DataError(
                        filelist,
                        f"{column} of {name!r} is {row[column]!r}, not a number",
                        f"correct the {column} value or leave it empty",
                        row=line,
                    )
                values[column] = float(value)
        if "Split" in row and not pd.isna(row["Split"]):
            values["Split"] = str(row["Split"]).strip().upper()
        listed[name] = values
    return listed


def regressor_report(
    predictions: pd.DataFrame,
    train_mean_ef: float,
    split: str | None = "TEST",
    n_boot: int = 10000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> dict:
    """EchoNet's report of one split: single-clip and all-clip metrics with bootstrap CIs.

    Args:
        predictions: output of :func:`predict_ef`; rows with unknown EF are left out.
        train_mean_ef: mean EF of the training set (``train.json``), the trivial predictor.
        split: rows of this Split only; None = every row.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
        ci_level: coverage of the percentile intervals (0.90 = EchoNet's 5th-95th).

    Returns:
        ``{"split", "n", "n_boot", "seed", "ci_level", "interval", "train_mean_ef",
        "clip": ef_report(...), "all_clips": ef_report(...), "train_mean": ef_metrics(...)}``.
    """
    rows = predictions if split is None else predictions[predictions["Split"] == split]
    rows = rows[rows["EF"].notna()]
    if rows.empty:
        raise ValueError(f"no predictions with a known EF in split {split!r}")
    y = rows["EF"].to_numpy(dtype=np.float64)
    alpha = round(1 - ci_level, 10)
    return {
        "split": split,
        "n": len(rows),
        "n_boot": n_boot,
        "seed": seed,
        "ci_level": ci_level,
        "interval": interval_label(n_boot, seed, alpha),
        "train_mean_ef": float(train_mean_ef),
        "clip": ef_report(y, rows["EF_pred_clip"].to_numpy(np.float64), n_boot, seed, alpha),
        "all_clips": ef_report(y, rows["EF_pred_all"].to_numpy(np.float64), n_boot, seed, alpha),
        "train_mean": ef_metrics(y, np.full_like(y, float(train_mean_ef))),
    }


def regressor_record(
    predictions: pd.DataFrame,
    train_mean_ef: float,
    splits: Sequence[str] = ("VAL", "TEST"),
    clip_start: str = "first",
    **report_kwargs,
) -> dict:
    """:func:`regressor_report` of every split (EchoNet reports VAL and TEST, EchoDiffusion
    VAL), with the model's single-clip policy, for :func:`write_regressor_table`.

    Returns:
        ``{"splits": [...], "clip_start": str, "reports": {split: regressor_report(...)}}``.
    """
    if not splits:
        raise ValueError("splits must name at least one split, e.g. ['VAL', 'TEST']")
    reports = {
        split: regressor_report(predictions, train_mean_ef, split, **report_kwargs)
        for split in splits
    }
    return {"splits": list(splits), "clip_start": clip_start, "reports": reports}


def write_regressor_table(record: dict, txt_path: str | Path, json_path: str | Path) -> None:
    """Write a :func:`regressor_record` as JSON and as a short text table: per split, one line
    per prediction kind and the train-mean baseline."""
    write_json(json_path, record)
    where = "frame 0" if record["clip_start"] == "first" else "a random start"
    lines = []
    if record.get("trained_on") and record["trained_on"] != record.get("tested_on"):
        lines.append(
            f"trained on {record['trained_on']}, tested on {record['tested_on']} (real videos)"
        )
    for split in record["splits"]:
        report = record["reports"][split]
        lines += [
            f"EF regression, split {split}: {report['n']} videos; {report['interval']}",
            f"{'single clip':<14} " + _metric_cells(report["clip"]) + f"  (clip at {where})",
            f"{'all-clip mean':<14} " + _metric_cells(report["all_clips"]),
        ]
        baseline = report["train_mean"]
        lines.append(
            f"{'train mean':<14} MAE {baseline['mae']:.2f}  RMSE {baseline['rmse']:.2f}  "
            f"R2 {baseline['r2']:.3f}  (predicting {report['train_mean_ef']:.2f} for every video)"
        )
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def write_regressor_comparison(
    records: dict[str, dict], txt_path: str | Path, plumbing: Sequence[str] = ()
) -> pd.DataFrame:
    """Every regressor's all-clip numbers on the real splits, one row per run and split:
    EchoNet-Synthetic's synthetic-to-real experiment beside the real-trained regressor.

    Args:
        records: run name -> :func:`regressor_record` (with ``trained_on`` / ``tested_on``).
        txt_path: the text table (written atomically).
        plumbing: runs of tiny presets; the table then starts with a PLUMBING CHECK line
            naming them.

    Returns:
        The table (run, trained_on, tested_on, split, n, mae, rmse, r2 and their CIs).
    """
    rows = []
    for name, record in records.items():
        for split in record["splits"]:
            report = record["reports"][split]
            row = {
                "run": name,
                "trained_on": record.get("trained_on", "?"),
                "tested_on": record.get("tested_on", "?"),
                "split": split,
                "n": report["n"],
            }
            for key in ("mae", "rmse", "r2"):
                m = report["all_clips"][key]
                row[key] = m["value"]
                row[f"{key}_ci"] = f"[{m['ci_low']:.3g}, {m['ci_high']:.3g}]"
            rows.append(row)
    table = pd.DataFrame(rows)
    lines = []
    if plumbing:
        lines.append(
            f"PLUMBING CHECK: {', '.join(plumbing)} use tiny presets on tiny data; these "
            "numbers are not comparable to papers"
        )
    lines += [
        "EF regressors side by side: all-clip mean on the real splits; trained_on names the "
        "training videos: a real dataset, a synthetic one (<system>_<name>), both pooled "
        "(+), balanced per 1-% EF bin, or a random subset",
        table.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
    ]
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return table


def _metric_cells(report: dict) -> str:
    """``MAE 4.10 [3.90, 4.30]  RMSE ...  R2 ...`` from an ``ef_report`` dict."""
    cells = []
    for key, label, digits in (("mae", "MAE", 2), ("rmse", "RMSE", 2), ("r2", "R2", 3)):
        m = report[key]
        cells.append(
            f"{label} {m['value']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"
        )
    return "  ".join(cells)
