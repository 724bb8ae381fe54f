"""The cross-system summary table: rows from metric records, labels, missing sources."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from echogen.data.errors import DataError
from echogen.metrics.summary import SUMMARY_COLUMNS, dataset_row, write_summary


def _samples(folder, n=3, timing=None, device="cpu", conditioning=None):
    folder.mkdir(parents=True)
    names = [f"sample_{i:05d}" for i in range(n)]
    pd.DataFrame({"FileName": names, "EF": [30.0] * n}).to_csv(folder / "FileList.csv")
    record = {"device": device, "seed": 1}
    if timing is not None:
        record["timing"] = timing
    if conditioning is not None:
        record["conditioning"] = conditioning
    (folder / "sampling.json").write_text(json.dumps(record))
    return folder


def _generation(path, published=True, **metrics):
    record = {"metrics": metrics, "published": {"i3d": published, "inception": True}}
    path.write_text(json.dumps(record))
    return path


def _fidelity(path, mae, r2, plumbing=False):
    metrics = {"mae": {"value": mae}, "r2": {"value": r2}}
    path.write_text(json.dumps({"metrics": metrics, "plumbing": plumbing}))
    return path


def test_rows_carry_each_source_and_nan_where_not_computed(tmp_path):
    a = _samples(tmp_path / "a", n=4, timing={"seconds": 10.0, "videos": 4}, device="cuda")
    gen = _generation(tmp_path / "a.json", fid50k_full=28.8, fvd2048_16f=103.5, is50k_mean=2.1)
    row = dataset_row("lvdm_a", "lvdm", a, gen, _fidelity(tmp_path / "ef.json", 4.5, 0.61))
    assert list(row) == SUMMARY_COLUMNS
    assert row["n_videos"] == 4 and row["seconds_per_video"] == 2.5 and row["device"] == "cuda"
    assert (row["fid50k_full"], row["fvd2048_16f"], row["is50k_mean"]) == (28.8, 103.5, 2.1)
    assert math.isnan(row["fvd2048_128f"])  # not in that table
    assert (row["ef_mae"], row["ef_r2"], row["plumbing"]) == (4.5, 0.61, False)

    # No metric records and no timing (an older sampler): NaN, not zeros.
    b = dataset_row("other_b", "cascade", _samples(tmp_path / "b"))
    assert math.isnan(b["fid50k_full"]) and math.isnan(b["ef_mae"])
    assert math.isnan(b["seconds_per_video"]) and b["plumbing"] is False


def test_plumbing_label_names_the_rows_and_json_round_trips(tmp_path):
    a = _samples(tmp_path / "a", timing={"seconds": 3.0, "videos": 3})
    real = _generation(tmp_path / "real.json", fid50k_full=1.0)
    tiny = _generation(tmp_path / "tiny.json", published=False, fid50k_full=2.0)
    rows = [
        dataset_row("verified", "lvdm", a, real),
        dataset_row("tiny", "lvdm", a, tiny),
        dataset_row("phantom_ef", "lvdm", a, real, _fidelity(tmp_path / "e.json", 9, -1, True)),
    ]
    table = write_summary(rows, tmp_path / "summary.txt", tmp_path / "summary.json")
    text = (tmp_path / "summary.txt").read_text()
    assert text.startswith("PLUMBING CHECK: the rows of tiny, phantom_ef ")
    assert "verified" in text.splitlines()[3] and " - " in text  # NaN shown as "-"
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["columns"] == SUMMARY_COLUMNS
    assert [r["dataset"] for r in record["rows"]] == ["verified", "tiny", "phantom_ef"]
    assert record["rows"][0]["ef_mae"] is None and record["rows"][1]["fid50k_full"] == 2.0
    assert table["plumbing"].tolist() == [False, True, True]

    clean = write_summary(rows[:1], tmp_path / "clean.txt", tmp_path / "clean.json")
    assert not (tmp_path / "clean.txt").read_text().startswith("PLUMBING") and len(clean) == 1


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(DataError, match="FileList.csv.*no FileList.csv"):
        dataset_row("x", "lvdm", tmp_path / "nowhere")
    a = _samples(tmp_path / "a")
    with pytest.raises(DataError, match="missing.json.*generation-metric record is missing"):
        dataset_row("x", "lvdm", a, tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json.*not valid JSON"):
        dataset_row("x", "lvdm", a, None, tmp_path / "bad.json")


def test_conditioning_column_flags_real_frame_datasets(tmp_path):
    """A dataset animating real TRAIN frames is labelled non-private in its row and above
    the table; LIDM images that passed the filter are private; systems without
    conditioning frames show "-"."""
    real = {"frames": "real", "private": False, "source": "index.csv"}
    kept = {"frames": "synthetic", "private": True, "source": "kept/FileList.csv"}
    raw = {"frames": "synthetic", "private": False, "source": "images/FileList.csv"}
    rows = [
        dataset_row("lvdm_real", "lvdm", _samples(tmp_path / "r", conditioning=real)),
        dataset_row("lvdm_lidm", "lvdm", _samples(tmp_path / "l", conditioning=kept)),
        dataset_row("lvdm_raw", "lvdm", _samples(tmp_path / "u", conditioning=raw)),
        dataset_row("cascade_x", "cascade", _samples(tmp_path / "c")),
    ]
    labels = [row["conditioning"] for row in rows]
    assert labels[:3] == ["non-private", "private", "synthetic, unfiltered"]
    assert math.isnan(labels[3])
    write_summary(rows, tmp_path / "s.txt", tmp_path / "s.json")
    text = (tmp_path / "s.txt").read_text()
    assert text.startswith("NON-PRIVATE: lvdm_real animate real TRAIN frames")
