"""EF fidelity of generated videos: join, scores against scikit-learn, errors, table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from echogen.data.ef_clips import ClipSpec
from echogen.data.errors import DataError
from echogen.data.video import write_video
from echogen.models.regressor import MODEL_PRESETS, EFRegressor
from echogen.pipelines.ef_fidelity import (
    PER_VIDEO_COLUMNS,
    TITLE,
    ef_fidelity,
    write_ef_fidelity_table,
)
from echogen.pipelines.ef_prediction import PREDICTION_COLUMNS, predict_ef, video_folder_rows

torch.set_num_threads(1)
N_BOOT = 200
SKLEARN = {"mae": mean_absolute_error, "rmse": root_mean_squared_error, "r2": r2_score}


def _write_run(tmp_path, requested, predicted, clip=None, shuffle=True, copy_ef=True):
    """A FileList (requested EF) and a predictions csv (rows shuffled, as a join must cope)."""
    names = [f"sample_{i:05d}" for i in range(len(requested))]
    filelist = tmp_path / "FileList.csv"
    pd.DataFrame(
        {"FileName": names, "EF": requested, "FPS": 32.0, "Split": "TEST", "seed": 7}
    ).to_csv(filelist, index=False)
    clip = predicted if clip is None else clip
    table = pd.DataFrame(
        {
            "FileName": names,
            "Split": "TEST",
            "EF": requested if copy_ef else np.nan,
            "EF_pred_clip": clip,
            "EF_pred_all": predicted,
            "n_clips": np.arange(len(names)) + 1,
        },
        columns=PREDICTION_COLUMNS,
    )
    if shuffle:
        table = table.sample(frac=1.0, random_state=3)
    predictions = tmp_path / "pred.csv"
    table.to_csv(predictions, index=False)
    return filelist, predictions


def _reference_ci(fn, y, p, n_boot, seed):
    """Percentile bootstrap written out here: per resample, the sklearn statistic."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        index = rng.integers(0, len(y), size=len(y))
        stats.append(fn(y[index], p[index]))
    stats = np.sort(stats)
    return stats[round(0.025 * n_boot)], stats[min(round(0.975 * n_boot), n_boot - 1)]


@pytest.fixture
def values():
    rng = np.random.default_rng(0)
    requested = rng.uniform(20, 75, size=23)
    predicted = requested + rng.normal(0, 5, size=23)
    clip = requested + rng.normal(2, 8, size=23)
    return requested, predicted, clip


def test_scores_match_sklearn(tmp_path, values):
    requested, predicted, clip = values
    filelist, predictions = _write_run(tmp_path, requested, predicted, clip)
    per_video = tmp_path / "tables" / "per_video.csv"
    record = ef_fidelity(
        filelist,
        predictions,
        n_bootstrap=N_BOOT,
        seed=4,
        regressor="results/models/regressor",
        model="results/models/lvdm_ef",
        per_video_csv=per_video,
    )
    assert record["n"] == 23
    assert record["prediction"] == "EF_pred_all"
    assert record["regressor"] == "results/models/regressor"
    assert record["model"] == "results/models/lvdm_ef"
    assert record["plumbing"] is False
    for name, fn in SKLEARN.items():
        entry = record["metrics"][name]
        assert entry["value"] == pytest.approx(fn(requested, predicted), rel=1e-12)
        low, high = _reference_ci(fn, requested, predicted, N_BOOT, 4)
        assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high), rel=1e-12)
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
        single = record["single_clip"][name]["value"]
        assert single == pytest.approx(fn(requested, clip), rel=1e-12)
    assert record["requested_ef"]["mean"] == pytest.approx(requested.mean())
    assert record["predicted_ef"]["max"] == pytest.approx(predicted.max())

    # The per-video table is in FileList order, whatever the order of the predictions.
    table = pd.read_csv(per_video, dtype={"FileName": str})
    assert list(table.columns) == PER_VIDEO_COLUMNS
    assert table["FileName"].tolist() == [f"sample_{i:05d}" for i in range(23)]
    np.testing.assert_allclose(table["EF_requested"], requested)
    np.testing.assert_allclose(table["EF_predicted"], predicted)
    np.testing.assert_allclose(table["error"], predicted - requested)
    assert table["n_clips"].tolist() == list(range(1, 24))


def test_video_extensions_and_missing_copied_ef(tmp_path, values):
    requested, predicted, _ = values
    filelist, predictions = _write_run(tmp_path, requested, predicted, copy_ef=False)
    table = pd.read_csv(filelist)
    table["FileName"] = table["FileName"] + ".mp4"
    table.to_csv(filelist, index=False)
    record = ef_fidelity(filelist, predictions, n_bootstrap=10)
    assert record["metrics"]["mae"]["value"] == pytest.approx(
        mean_absolute_error(requested, predicted)
    )


def test_end_to_end_with_predict_ef(tmp_path):
    """Sample folder -> predict_ef with a real (tiny, random) regressor -> ef_fidelity."""
    torch.manual_seed(0)
    model_dir = tmp_path / "regressor"
    EFRegressor(**MODEL_PRESETS["tiny"]).save_pretrained(model_dir)
    spec = ClipSpec(frames=4, period=1, size=16, channels=1, normalisation="unit")
    (model_dir / "clips.json").write_text(json.dumps(spec.to_dict()))

    run = tmp_path / "samples" / "run"
    rng = np.random.default_rng(1)
    requested = [35.0, 50.5, 62.25, 70.0]
    for i in range(len(requested)):
        frames = rng.integers(0, 256, size=(6, 16, 16), dtype=np.uint8)
        write_video(run / "Videos" / f"sample_{i:05d}.avi", frames, fps=32)
    pd.DataFrame(
        {"FileName": [f"sample_{i:05d}" for i in range(4)], "EF": requested, "Split": "TEST"}
    ).to_csv(run / "FileList.csv", index=False)

    rows = video_folder_rows(run / "Videos")
    predictions = predict_ef(model_dir, rows, tmp_path / "pred.csv", batch_size=2)
    record = ef_fidelity(run / "FileList.csv", tmp_path / "pred.csv", n_bootstrap=20)
    y, p = np.array(requested), predictions["EF_pred_all"].to_numpy()
    assert record["n"] == 4
    assert record["metrics"]["rmse"]["value"] == pytest.approx(root_mean_squared_error(y, p))
    assert record["metrics"]["r2"]["value"] == pytest.approx(r2_score(y, p))


def test_missing_prediction_is_an_error(tmp_path, values):
    requested, predicted, _ = values
    filelist, predictions = _write_run(tmp_path, requested, predicted, shuffle=False)
    table = pd.read_csv(predictions)
    table[table["FileName"] != "sample_00005"].to_csv(predictions, index=False)
    with pytest.raises(DataError, match="sample_00005.*no prediction") as err:
        ef_fidelity(filelist, predictions, n_bootstrap=10)
    assert err.value.file == str(filelist)
    assert err.value.row == 7  # header is line 1, sample_00005 is the 6th video


def test_prediction_not_in_filelist_is_an_error(tmp_path, values):
    requested, predicted, _ = values
    filelist, predictions = _write_run(tmp_path, requested, predicted, shuffle=False)
    table = pd.read_csv(filelist)
    table[table["FileName"] != "sample_00002"].to_csv(filelist, index=False)
    with pytest.raises(DataError, match="sample_00002.*not in") as err:
        ef_fidelity(filelist, predictions, n_bootstrap=10)
    assert err.value.file == str(predictions)
    assert err.value.row == 4


def test_predictions_of_another_run_are_an_error(tmp_path, values):
    requested, predicted, _ = values
    filelist, predictions = _write_run(tmp_path, requested, predicted)
    table = pd.read_csv(filelist)
    table.loc[3, "EF"] += 1.0
    table.to_csv(filelist, index=False)
    with pytest.raises(DataError, match="sample_00003.*requested"):
        ef_fidelity(filelist, predictions, n_bootstrap=10)


def test_rows_without_requested_ef(tmp_path, values):
    requested, predicted, _ = values
    some = requested.copy()
    some[[4, 9]] = np.nan
    filelist, predictions = _write_run(tmp_path, some, predicted, copy_ef=False)
    with pytest.raises(DataError, match="sample_00004.*no requested EF") as err:
        ef_fidelity(filelist, predictions, n_bootstrap=10)
    assert err.value.row == 6
    assert err.value.file == str(filelist)

    filelist, predictions = _write_run(tmp_path, np.full(23, np.nan), predicted, copy_ef=False)
    with pytest.raises(DataError, match="not EF-conditioned"):
        ef_fidelity(filelist, predictions, n_bootstrap=10)
    pd.read_csv(filelist).drop(columns="EF").to_csv(filelist, index=False)
    with pytest.raises(DataError, match="not EF-conditioned"):
        ef_fidelity(filelist, predictions, n_bootstrap=10)


def test_malformed_predictions(tmp_path, values):
    requested, predicted, _ = values
    filelist, predictions = _write_run(tmp_path, requested, predicted, shuffle=False)
    table = pd.read_csv(predictions)
    table.loc[2, "EF_pred_all"] = np.nan
    table.to_csv(predictions, index=False)
    with pytest.raises(DataError, match="EF_pred_all of 'sample_00002'") as err:
        ef_fidelity(filelist, predictions, n_bootstrap=10)
    assert err.value.row == 4
    table.drop(columns="n_clips").to_csv(predictions, index=False)
    with pytest.raises(DataError, match="n_clips"):
        ef_fidelity(filelist, predictions, n_bootstrap=10)


@pytest.mark.parametrize("plumbing", [True, False])
def test_table(tmp_path, values, plumbing):
    requested, predicted, _ = values
    filelist, predictions = _write_run(tmp_path, requested, predicted)
    record = ef_fidelity(
        filelist, predictions, n_bootstrap=50, regressor="reg/dir", plumbing=plumbing
    )
    write_ef_fidelity_table(record, tmp_path / "ef.txt", tmp_path / "ef.json")
    assert json.loads((tmp_path / "ef.json").read_text()) == record
    lines = (tmp_path / "ef.txt").read_text().splitlines()
    assert lines[0].startswith("PLUMBING CHECK") is plumbing
    assert "PLUMBING CHECK" not in "\n".join(lines[1:])
    text = "\n".join(lines)
    assert TITLE in text and "23 videos" in text
    mae = record["metrics"]["mae"]
    assert f"MAE {mae['value']:.2f} [{mae['ci_low']:.2f}, {mae['ci_high']:.2f}]" in text
    assert "reg/dir" in text and "model:       not recorded" in text
