"""The cross-system summary: one row per synthetic dataset, side by side.

Every system's synthetic datasets are judged against the same real references, with the
same detectors and the same EF regressor; ``results/metrics/summary.{txt,json}`` puts their
numbers in one table so they can be compared: the StyleGAN-V generation metrics where
computed (``fid50k_full``, ``is50k``, ``fvd2048_16f``, ``fvd2048_128f``), EF fidelity (MAE and R²
of the regressor's EF against the requested EF, all-clip mean), and what sampling cost
(seconds per video, the device it ran on), and where the videos' conditioning frames came
from (``conditioning``: ``private`` synthetic frames that passed the privacy filter,
``synthetic, unfiltered``, or ``non-private`` real TRAIN frames, flagged above the table;
``-`` for systems without conditioning frames). A table any of whose sources is a plumbing check
(tiny or unverified networks) is labelled so, and says which rows are.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from echogen.data.errors import DataError
from echogen.data.io import atomic_path, write_json
from echogen.metrics.generation import conditioning_label, unverified_networks

GENERATION_COLUMNS = ["fid50k_full", "is50k_mean", "fvd2048_16f", "fvd2048_128f"]
SUMMARY_COLUMNS = [
    "dataset",
    "system",
    "n_videos",
    "conditioning",
    *GENERATION_COLUMNS,
    "ef_mae",
    "ef_r2",
    "seconds_per_video",
    "device",
    "plumbing",
]
PROVENANCE = "sampling.json"
FILELIST = "FileList.csv"


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise DataError(path, f"the {what} is missing", "re-run the rule that writes it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(
            path, f"the {what} is not valid JSON ({error})", "re-run its rule"
        ) from None


def dataset_row(
    dataset: str,
    system: str,
    samples_dir: str | Path,
    generation: str | Path | None = None,
    ef_fidelity: str | Path | None = None,
) -> dict:
    """The summary row of one synthetic dataset.

    Args:
        dataset: the dataset id (``results/samples/<dataset>/``).
        system: the system that made it (``lvdm``, ``cascade``, ...).
        samples_dir: the dataset folder (``FileList.csv``, and ``sampling.json`` with the
            sampling device and timing when the sampler recorded them).
        generation: its generation-metric json (``results/metrics/<run>.json``), or None.
        ef_fidelity: its EF-fidelity json, or None.

    Returns:
        A dict with :data:`SUMMARY_COLUMNS`; metrics not computed are NaN, and ``plumbing``
        is True when a source's networks are not verified as the published ones.

    Raises:
        DataError: a named source is missing or unreadable (naming the file).
    """
    samples_dir = Path(samples_dir)
    filelist = samples_dir / FILELIST
    if not filelist.is_file():
        raise DataError(filelist, "the synthetic dataset has no FileList.csv", "re-run sampling")
    row = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
    row.update(dataset=dataset, system=system, device=None, plumbing=False)
    row["n_videos"] = len(pd.read_csv(filelist, usecols=["FileName"]))
    if (samples_dir / PROVENANCE).is_file():
        record = _read_json(samples_dir / PROVENANCE, "sampling record")
        row["device"] = record.get("device")
        row["conditioning"] = conditioning_label(record.get("conditioning")) or math.nan
        timing = record.get("timing") or {}
        if timing.get("videos"):
            row["seconds_per_video"] = timing["seconds"] / timing["videos"]
    if generation is not None:
        record = _read_json(Path(generation), "generation-metric record")
        for key in GENERATION_COLUMNS:
            row[key] = record["metrics"].get(key, math.nan)
        row["plumbing"] |= bool(unverified_networks({"detectors": {}, **record}))
    if ef_fidelity is not None:
        record = _read_json(Path(ef_fidelity), "EF-fidelity record")
        row["ef_mae"] = record["metrics"]["mae"]["value"]
        row["ef_r2"] = record["metrics"]["r2"]["value"]
        row["plumbing"] |= bool(record.get("plumbing"))
    return row


def write_summary(rows: list[dict], txt: str | Path, json_path: str | Path) -> pd.DataFrame:
    """Write the summary table (text for people, json for machines), atomically.

    Returns:
        The table, one row per dataset in the order given.
    """
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    write_json(json_path, {"columns": SUMMARY_COLUMNS, "rows": _jsonable(table)})
    lines = []
    plumbing = table.loc[table["plumbing"].astype(bool), "dataset"].tolist()
    if plumbing:
        lines.append(
            "PLUMBING CHECK: the rows of "
            + ", ".join(plumbing)
            + " come from tiny or unverified networks; they are not comparable to papers"
        )
    exposed = table.loc[table["conditioning"] == "non-private", "dataset"].tolist()
    if exposed:
        lines.append(
            "NON-PRIVATE: "
            + ", ".join(exposed)
            + " animate real TRAIN frames (conditioning: non-private)"
        )
    lines.append("Synthetic datasets side by side (same real references, detectors, regressor)")
    shown = table.drop(columns="plumbing").astype(object)
    shown = shown.map(lambda v: "-" if _missing(v) else (f"{v:.4g}" if isinstance(v, float) else v))
    lines.append(shown.to_string(index=False))
    lines.append("-: not computed for that dataset (see its metric tables)")
    with atomic_path(txt) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _jsonable(table: pd.DataFrame) -> list[dict]:
    records = table.astype(object).to_dict("records")
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in records]
