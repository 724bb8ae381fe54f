"""EchoDiffusion's table of a cascade (echogen.pipelines.cascade_scoring): the aggregates
against independent computations (scikit-learn, the reference's compute_metrics.py logic),
and every sample of a real sampled dataset scored against its real clip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from echogen.pipelines.cascade_scoring import (
    cascade_report,
    ef_errors,
    write_cascade_table,
)


def scores_table(seed=0, videos=5, draws=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(videos):
        requested, source = rng.uniform(15, 85), rng.uniform(20, 70)
        for r in range(draws):
            rows.append(
                {
                    "FileName": f"sample_{v * draws + r:05d}",
                    "Source": f"video_{v}",
                    "Resample": r,
                    "EF": requested,
                    "SourceEF": source,
                    "EF_gen": requested + rng.normal(0, 8),
                    "EF_ref": source + 1.0,
                    "ssim": rng.uniform(0.3, 0.7),
                    "lpips": rng.uniform(0.1, 0.4),
                }
            )
    return pd.DataFrame(rows)


def test_ef_errors_are_scikit_learns():
    requested, regressed = np.array([20.0, 35, 50, 65, 80]), np.array([25.0, 30, 58, 60, 71])
    errors = ef_errors(requested, regressed)
    assert errors["mae"] == pytest.approx(mean_absolute_error(requested, regressed))
    assert errors["rmse"] == pytest.approx(np.sqrt(mean_squared_error(requested, regressed)))
    assert errors["r2"] == pytest.approx(r2_score(requested, regressed))
    assert np.isnan(ef_errors(np.array([40.0, 40]), np.array([41.0, 39]))["r2"])


def test_report_mean_best_by_ef_and_the_references_per_metric_best():
    scores = scores_table()
    report = cascade_report(scores)
    assert (report["videos"], report["draws"]) == (5, 3)
    mean = report["mean"]
    assert mean["n"] == 15 and mean["r2"] == pytest.approx(r2_score(scores.EF, scores.EF_gen))
    assert mean["ssim"] == pytest.approx(scores.ssim.mean())
    # The reference's compute_metrics.py: rows sorted by FileName, reshaped (videos, draws).
    gt, gen = scores.EF.to_numpy().reshape(5, 3), scores.EF_gen.to_numpy().reshape(5, 3)
    pick = np.abs(gt - gen).argmin(axis=1)
    best_gen, unique_gt = gen[np.arange(5), pick], gt.max(axis=1)
    for aggregate in ("best_ef", "best_per_metric"):
        row = report[aggregate]
        assert row["n"] == 5
        assert row["mae"] == pytest.approx(np.abs(unique_gt - best_gen).mean())
        assert row["r2"] == pytest.approx(r2_score(unique_gt, best_gen))
    ssim, lpips = scores.ssim.to_numpy().reshape(5, 3), scores.lpips.to_numpy().reshape(5, 3)
    assert report["best_per_metric"]["ssim"] == pytest.approx(ssim.max(axis=1).mean())
    assert report["best_per_metric"]["lpips"] == pytest.approx(lpips.min(axis=1).mean())
    # Best by EF keeps the SSIM and LPIPS of the EF-closest draw.
    assert report["best_ef"]["ssim"] == pytest.approx(ssim[np.arange(5), pick].mean())
    assert report["best_ef"]["lpips"] == pytest.approx(lpips[np.arange(5), pick].mean())
    assert report["real"]["mae"] == pytest.approx(
        np.abs(scores.groupby("Source").EF.first() - scores.groupby("Source").EF_ref.first()).mean()
    )
    with pytest.raises(ValueError, match="same number of draws"):
        cascade_report(scores.drop(index=0))


def test_table_rows_are_labelled(tmp_path):
    report = cascade_report(scores_table())
    padded = {"fid50k_full": {"pad_to": 128}, "fvd2048_16f": {"pad_to": 128}}
    generation = {"metrics": {"fid50k_full": 12.3, "fvd2048_16f": 60.5}, "warnings": ["few"],
                  "details": padded}  # fmt: skip
    native = {"metrics": {"fid50k_full": 14.25, "fvd2048_16f": 71.5}}
    sampling = {"timing": {"seconds": 12.0, "videos": 4}}
    task = {"report": report, "generation": generation, "native": native, "sampling": sampling}
    record = write_cascade_table("1SCM", {"counterfactual": task}, tmp_path / "t.txt",
                                 tmp_path / "t.json", plumbing=True, regressor="tiny")  # fmt: skip
    text = (tmp_path / "t.txt").read_text()
    assert text.startswith("PLUMBING CHECK")
    for label in ("mean over 3", "best of 3 (EF)", "best of 3 (per metric)", "real videos"):
        assert label in text
    assert "12.30" in text and "60.5" in text and "3.00" in text  # FID, FVD16, s/video
    assert "14.25" in text and "71.5" in text and "FID_112" in text  # unpadded
    assert "centred on a black square" in text
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["tasks"]["counterfactual"]["seconds_per_video"] == 3.0
    task_record = saved["tasks"]["counterfactual"]
    assert (task_record["fid"], task_record["fvd16"], task_record["pad_to"]) == (12.3, 60.5, 128)
    assert (task_record["fid_112"], task_record["fvd16_112"]) == (14.25, 71.5)
    assert saved["deviations"] == [] and "NOT AS PUBLISHED" not in text
    # Settings other than EchoDiffusion's are named in the table, once for all tasks.
    sampling = {**sampling, "video": {"cond_frame": "end_diastole"}, "config": {"cond_scale": 10}}
    tasks = {mode: {**task, "sampling": sampling} for mode in ("factual", "counterfactual")}
    record = write_cascade_table("1SCM", tasks, tmp_path / "d.txt", tmp_path / "d.json",
                                 plumbing=True, regressor="tiny")  # fmt: skip
    lines = (tmp_path / "d.txt").read_text().splitlines()
    assert lines[2] == (
        "NOT AS PUBLISHED: conditioned on the end_diastole frame (cond_frame: end_diastole; "
        "EchoDiffusion: a random frame of the clip); guidance scale 10 (cond_scale; "
        "EchoDiffusion: 5)"
    )
    assert len(record["deviations"]) == 2
