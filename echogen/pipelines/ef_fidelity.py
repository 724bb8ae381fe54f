"""EF fidelity of EF-conditioned generated videos: the regressor's EF vs the requested EF.

EchoNet-Synthetic and EchoDream judge EF conditioning by running an EF regressor trained on
real videos over the generated ones and scoring its estimate against the EF each video was
asked for (PAPERS.md §4, §5). :func:`ef_fidelity` joins a sample run's ``FileList.csv``
(requested EF) with the predictions of :func:`echogen.pipelines.ef_prediction.predict_ef` on
its videos and reports MAE, RMSE and R² with bootstrap intervals; the all-clip mean
(``EF_pred_all``) is the headline estimate, the single clip (``EF_pred_clip``) is reported
beside it. A regressor trained for a plumbing check (tiny model, phantom data) gives numbers
that only show the pipeline runs; the record's ``plumbing`` flag labels them so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from echogen.data.errors import DataError
from echogen.data.io import atomic_path, write_json
from echogen.data.video import VIDEO_SUFFIXES
from echogen.metrics.scores import ef_report, interval_label
from echogen.pipelines.ef_prediction import PREDICTION_COLUMNS

log = logging.getLogger(__name__)

TITLE = "EF fidelity of generated videos: regressor EF vs requested EF"
PER_VIDEO_COLUMNS = [
    "FileName",
    "EF_requested",
    "EF_predicted",
    "EF_pred_clip",
    "error",
    "n_clips",
]
# A prediction file's own EF column (copied from the FileList by video_folder_rows) may
# differ from the FileList's by csv rounding only; more means the two files do not belong
# together.
EF_AGREEMENT_TOL = 1e-6


def _stem(name: str) -> str:
    """A video name without its .avi / .mp4 extension."""
    path = Path(name)
    return path.stem if path.suffix in VIDEO_SUFFIXES else name


def _read_requested(filelist: Path) -> pd.DataFrame:
    """FileName (no extension) and requested EF of every FileList row, with its csv line."""
    if not filelist.is_file():
        raise DataError(filelist, "the samples FileList does not exist", "run the sampling rule")
    table = pd.read_csv(filelist, dtype={"FileName": str})
    if "FileName" not in table:
        raise DataError(filelist, "column 'FileName' is missing", "add it (video names)", row=1)
    if table.empty:
        raise DataError(filelist, "the FileList lists no videos", "generate some videos first")
    not_conditioned = DataError(
        filelist,
        "no video has a requested EF, so this run is not EF-conditioned",
        "compute EF fidelity only for runs of an EF-conditioned model",
    )
    if "EF" not in table:
        raise not_conditioned
    ef = pd.to_numeric(table["EF"], errors="coerce").astype(float)
    lines = np.arange(len(table)) + 2  # header is line 1
    for i in np.flatnonzero(ef.isna().to_numpy() & table["EF"].notna().to_numpy()):
        raise DataError(
            filelist,
            f"EF of {table['FileName'].iloc[i]!r} is {table['EF'].iloc[i]!r}, not a number",
            "correct the requested EF",
            row=int(lines[i]),
            item=str(table["FileName"].iloc[i]),
        )
    if ef.isna().all():
        raise not_conditioned
    for i in np.flatnonzero(ef.isna().to_numpy()):
        raise DataError(
            filelist,
            f"video {table['FileName'].iloc[i]!r} has no requested EF while others have one",
            "give every video of an EF-conditioned run its requested EF, or drop the row",
            row=int(lines[i]),
            item=str(table["FileName"].iloc[i]),
        )
    names = [_stem(str(n)) for n in table["FileName"]]
    requested = pd.DataFrame({"FileName": names, "EF_requested": ef.to_numpy(), "line": lines})
    twice = requested["FileName"].duplicated()
    if twice.any():
        i = int(np.flatnonzero(twice.to_numpy())[0])
        raise DataError(
            filelist, f"duplicate FileName {names[i]!r}", "remove one", row=int(lines[i])
        )
    return requested


def _read_predictions(predictions_csv: Path) -> pd.DataFrame:
    """The predictions table with its csv line numbers; missing columns are a DataError."""
    if not predictions_csv.is_file():
        raise DataError(
            predictions_csv, "the predictions file does not exist", "run the EF prediction rule"
        )
    table = pd.read_csv(predictions_csv, dtype={"FileName": str, "Split": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in table]
    if missing:
        raise DataError(
            predictions_csv,
            f"columns {missing} are missing (expected {PREDICTION_COLUMNS})",
            "re-run echogen.pipelines.ef_prediction.predict_ef",
            row=1,
        )
    table = table.assign(FileName=[_stem(str(n)) for n in table["FileName"]])
    table["line"] = np.arange(len(table)) + 2
    for column in ("EF_pred_clip", "EF_pred_all"):
        values = pd.to_numeric(table[column], errors="coerce").astype(float)
        bad = np.flatnonzero(~np.isfinite(values.to_numpy()))
        if len(bad):
            i = int(bad[0])
            raise DataError(
                predictions_csv,
                f"{column} of {table['FileName'].iloc[i]!r} is {table[column].iloc[i]!r}, "
                "not a finite number",
                "re-run the EF prediction",
                row=int(table["line"].iloc[i]),
                item=str(table["FileName"].iloc[i]),
            )
        table[column] = values
    twice = table["FileName"].duplicated()
    if twice.any():
        i = int(np.flatnonzero(twice.to_numpy())[0])
        raise DataError(
            predictions_csv,
            f"duplicate FileName {table['FileName'].iloc[i]!r}",
            "predict each video once",
            row=int(table["line"].iloc[i]),
        )
    return table


def _join(
    requested: pd.DataFrame, predictions: pd.DataFrame, filelist: Path, predictions_csv: Path
) -> pd.DataFrame:
    """One row per video with both a requested EF and a prediction; any unmatched row is an
    error, since the two files must describe the same sample run."""
    joined = requested.merge(
        predictions, on="FileName", how="outer", suffixes=("", "_pred"), indicator=True
    )
    only_requested = joined[joined["_merge"] == "left_only"]
    if len(only_requested):
        first = only_requested.iloc[0]
        raise DataError(
            filelist,
            f"video {first['FileName']!r} has no prediction in {predictions_csv} "
            f"({len(only_requested)} videos lack one)",
            "re-run the EF prediction on this sample folder",
            row=int(first["line"]),
            item=str(first["FileName"]),
        )
    only_predicted = joined[joined["_merge"] == "right_only"]
    if len(only_predicted):
        first = only_predicted.iloc[0]
        raise DataError(
            predictions_csv,
            f"video {first['FileName']!r} is not in {filelist} "
            f"({len(only_predicted)} predicted videos are not listed)",
            "predict the videos of this sample run only (stale predictions?)",
            row=int(first["line_pred"]),
            item=str(first["FileName"]),
        )
    copied = pd.to_numeric(joined["EF"], errors="coerce").astype(float).to_numpy()
    known = np.isfinite(copied)
    disagree = known & ~np.isclose(copied, joined["EF_requested"], rtol=0, atol=EF_AGREEMENT_TOL)
    if disagree.any():
        row = joined[disagree].iloc[0]
        raise DataError(
            predictions_csv,
            f"EF of {row['FileName']!r} is {row['EF']} but the FileList requested "
            f"{row['EF_requested']}",
            "the predictions belong to another sample run; re-run the EF prediction",
            row=int(row["line_pred"]),
            item=str(row["FileName"]),
        )
    joined = joined.sort_values("line").reset_index(drop=True)  # FileList order
    return pd.DataFrame(
        {
            "FileName": joined["FileName"],
            "EF_requested": joined["EF_requested"].astype(float),
            "EF_predicted": joined["EF_pred_all"].astype(float),
            "EF_pred_clip": joined["EF_pred_clip"].astype(float),
            "error": (joined["EF_pred_all"] - joined["EF_requested"]).astype(float),
            "n_clips": joined["n_clips"].astype(int),
        },
        columns=PER_VIDEO_COLUMNS,
    )


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def ef_fidelity(
    samples_filelist_csv: str | Path,
    predictions_csv: str | Path,
    n_bootstrap: int = 1000,
    seed: int = 0,
    regressor: str | Path | None = None,
    model: str | Path | None = None,
    plumbing: bool = False,
    per_video_csv: str | Path | None = None,
) -> dict:
    """Score the regressor's EF of generated videos against the EF they were generated for.

    Args:
        samples_filelist_csv: ``results/samples/<run>/FileList.csv``; ``FileName`` (with or
            without .avi/.mp4) and ``EF``, the requested EF in %.
        predictions_csv: :func:`~echogen.pipelines.ef_prediction.predict_ef` output for the
            run's videos (:data:`~echogen.pipelines.ef_prediction.PREDICTION_COLUMNS`).
        n_bootstrap: bootstrap resamples of the 95 % intervals.
        seed: bootstrap seed.
        regressor: the EF regressor's model folder, recorded for provenance.
        model: the generative model folder, recorded for provenance.
        plumbing: the numbers only check the pipeline (tiny regressor or model, phantom
            data); the table is headed "PLUMBING CHECK".
        per_video_csv: if given, the joined table (:data:`PER_VIDEO_COLUMNS`, FileList
            order) is written there atomically.

    Returns:
        ``{"title", "n", "prediction": "EF_pred_all", "metrics": ef_report(requested,
        EF_pred_all), "single_clip": ef_report(requested, EF_pred_clip), "requested_ef" and
        "predicted_ef": {mean, std, min, max}, "n_bootstrap", "seed", "plumbing",
        "samples_filelist", "predictions", "regressor", "model"}``.

    Raises:
        DataError: a file is missing or malformed, no video has a requested EF (not an
            EF-conditioned run), some but not all lack one, or the two files do not list the
            same videos.
    """
    filelist, predictions_path = Path(samples_filelist_csv), Path(predictions_csv)
    requested = _read_requested(filelist)
    predictions = _read_predictions(predictions_path)
    table = _join(requested, predictions, filelist, predictions_path)

    y_true = table["EF_requested"].to_numpy(np.float64)
    record = {
        "title": TITLE,
        "n": len(table),
        "prediction": "EF_pred_all",
        "metrics": ef_report(y_true, table["EF_predicted"].to_numpy(np.float64), n_bootstrap, seed),
        "single_clip": ef_report(
            y_true, table["EF_pred_clip"].to_numpy(np.float64), n_bootstrap, seed
        ),
        "requested_ef": _summary(y_true),
        "predicted_ef": _summary(table["EF_predicted"].to_numpy(np.float64)),
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "plumbing": bool(plumbing),
        "samples_filelist": str(filelist),
        "predictions": str(predictions_path),
        "regressor": None if regressor is None else str(regressor),
        "model": None if model is None else str(model),
    }
    if per_video_csv is not None:
        with atomic_path(per_video_csv) as tmp:
            table.to_csv(tmp, index=False)
    log.info(
        "EF fidelity of %d videos: MAE %.3f, R2 %.3f",
        record["n"],
        record["metrics"]["mae"]["value"],
        record["metrics"]["r2"]["value"],
    )
    return record


def _cells(report: dict) -> str:
    """``MAE 4.10 [3.90, 4.30]  RMSE ...  R2 ...`` from an ``ef_report`` dict."""
    cells = []
    for key, label, digits in (("mae", "MAE", 2), ("rmse", "RMSE", 2), ("r2", "R2", 3)):
        m = report[key]
        cells.append(
            f"{label} {m['value']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"
        )
    return "  ".join(cells)


def write_ef_fidelity_table(record: dict, txt_path: str | Path, json_path: str | Path) -> None:
    """Write an :func:`ef_fidelity` record as JSON and as a short text table (atomically)."""
    lines = []
    if record["plumbing"]:
        lines.append(
            "PLUMBING CHECK: the regressor and/or the generative model are tiny or trained on "
            "phantom data; these numbers only show that the pipeline runs and are not "
            "comparable to papers"
        )
    lines += [
        f"{TITLE}: {record['n']} videos; {interval_label(record['n_bootstrap'], record['seed'])}",
        f"{'all-clip mean':<14} " + _cells(record["metrics"]),
        f"{'single clip':<14} " + _cells(record["single_clip"]),
    ]
    for key, label in (("requested_ef", "requested EF"), ("predicted_ef", "regressor EF")):
        s = record[key]
        lines.append(
            f"{label:<14} mean {s['mean']:.2f}  std {s['std']:.2f}  "
            f"range [{s['min']:.2f}, {s['max']:.2f}]"
        )
    lines += [
        f"samples:     {record['samples_filelist']}",
        f"predictions: {record['predictions']}",
        f"regressor:   {record['regressor'] or 'not recorded'}",
        f"model:       {record['model'] or 'not recorded'}",
    ]
    write_json(json_path, record)
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
