"""D'ARTAGNAN's counterfactual dataset (sharded through the shared driver), its scores and
table, and inference on (video, EF) pairs with its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, r2_score
from trainer_cases import dartagnan_data

from echogen.data.errors import DataError
from echogen.data.video import read_video, write_video
from echogen.metrics.paired import LPIPS
from echogen.pipelines.dartagnan import (
    DARTAGNAN_SCHEMA,
    CounterfactualConfig,
    dartagnan_report,
    infer_counterfactuals,
    plan_counterfactuals,
    sample_dartagnan_shard,
    score_counterfactuals,
    source_clips,
    write_dartagnan_table,
)
from echogen.pipelines.synthetic import gather_samples, read_filelist
from echogen.training.dartagnan import train_dartagnan

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEED = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread) -> dict:
    base = tmp_path_factory.mktemp("dartagnan")
    data = dartagnan_data(base / "data")
    model = base / "model"
    train_dartagnan(
        data["metainfo"], data["expert"], model, base / "state",
        generator={"preset": "tiny"}, discriminator={"preset": "tiny"},
        train={"epochs": 1, "size": 16, "frames": 8}, seed=SEED, root=data["root"],
    )  # fmt: skip
    return {**data, "model": str(model), "base": base}


def test_plan_draws_one_target_per_clip_far_from_its_ef(trained):
    config = CounterfactualConfig(margin=15.0)
    sources = source_clips(trained["metainfo"], config)
    assert list(sources["Split"]) == ["VAL", "VAL", "TEST", "TEST"]
    plan = plan_counterfactuals(sources, config, SEED)
    assert (np.abs(plan["EF"] - plan["SourceEF"]) >= 15).all()
    assert plan["seed"].nunique() == len(plan)
    pd.testing.assert_frame_equal(plan, plan_counterfactuals(sources, config, SEED))
    assert not plan["EF"].equals(plan_counterfactuals(sources, config, SEED + 1)["EF"])


def test_sharded_dataset_equals_one_job_and_scores_against_factual_clips(trained, tmp_path):
    args = (trained["model"], trained["metainfo"])
    kwargs = {"config": {"splits": ["VAL", "TEST"]}, "run_seed": SEED, "root": trained["root"]}
    sample_dartagnan_shard(*args, tmp_path / "one" / "1-of-1", shard=1, n_shards=1, **kwargs)
    for shard in (1, 2):
        sample_dartagnan_shard(*args, tmp_path / "two" / f"{shard}-of-2", shard=shard,
                               n_shards=2, **kwargs)  # fmt: skip
    one = gather_samples([tmp_path / "one" / "1-of-1"], tmp_path / "ds_one")
    two = gather_samples([tmp_path / "two" / f"{s}-of-2" for s in (1, 2)], tmp_path / "ds_two")
    pd.testing.assert_frame_equal(one, two)
    filelist = read_filelist(tmp_path / "ds_one" / "FileList.csv", DARTAGNAN_SCHEMA)
    assert list(filelist.columns) == list(DARTAGNAN_SCHEMA)
    assert (filelist[["FrameHeight", "NumberOfFrames", "FPS"]].iloc[0].tolist()
            == [16, 8, 32.0])  # fmt: skip
    for name in filelist["FileName"]:
        a = read_video(tmp_path / "ds_one" / "Videos" / f"{name}.mp4")
        np.testing.assert_array_equal(a, read_video(tmp_path / "ds_two" / "Videos" / f"{name}.mp4"))

    rng = np.random.default_rng(0)
    for kind in ("regressor", "expert"):
        pd.DataFrame({"FileName": filelist["FileName"],
                      "EF_pred_all": filelist["EF"] + rng.normal(0, 5, len(filelist))}
                     ).to_csv(tmp_path / f"{kind}.csv", index=False)  # fmt: skip
    paths = (tmp_path / "ds_one", trained["metainfo"], tmp_path / "regressor.csv",
             tmp_path / "expert.csv")  # fmt: skip
    scores = score_counterfactuals(*paths, root=trained["root"])  # the generator's 16 px
    assert len(scores) == 4 and scores["ssim"].between(-1, 1).all()
    assert (scores["size"] == 16).all()
    larger = score_counterfactuals(*paths, size=32, root=trained["root"])
    assert (larger["size"] == 32).all() and not np.allclose(larger["ssim"], scores["ssim"])
    with pytest.raises(ValueError, match="score_size"):
        score_counterfactuals(*paths, size=8, root=trained["root"])
    with pytest.raises(ValueError, match="SSIM and LPIPS need frames of at least 31 px"):
        score_counterfactuals(*paths, lpips=LPIPS("alex"), root=trained["root"])  # 16 px
    with pytest.raises(ValueError, match="re-run rule score_dartagnan"):
        dartagnan_report(scores.drop(columns="size"))
    report = dartagnan_report(scores)
    assert report["all"]["regressor"]["mae"] == pytest.approx(
        mean_absolute_error(scores["EF"], scores["EF_regressor"]))  # fmt: skip
    assert report["all"]["expert"]["r2"] == pytest.approx(
        r2_score(scores["EF"], scores["EF_expert"])
    )
    assert set(report) == {"all", "TEST", "VAL"} and report["VAL"]["n"] == 2

    generation = {
        "metrics": {"fid50k_full": 12.5, "fvd2048_16f": 80.0}
    }  # as compute_generation_metrics
    record = write_dartagnan_table(
        {"tiny": {"scores": scores, "generation": generation, "plumbing": True}},
        tmp_path / "dartagnan.txt", tmp_path / "dartagnan.json", "indep", "expert_run",
    )  # fmt: skip
    text = (tmp_path / "dartagnan.txt").read_text()
    assert "SSIM 0.79, R2 0.51" in text and "plumbing check" in text and "80.00" in text
    assert "to the factual clip, at tiny 16 px" in text
    assert record["models"]["tiny"]["fvd16"] == 80.0
    assert json.loads((tmp_path / "dartagnan.json").read_text())["expert"] == "expert_run"

    (tmp_path / "short.csv").write_text("FileName,EF_pred_all\nsample_00000,50\n")
    with pytest.raises(DataError, match="no prediction for"):
        score_counterfactuals(tmp_path / "ds_one", trained["metainfo"], tmp_path / "short.csv",
                              tmp_path / "expert.csv", size=16, root=trained["root"])  # fmt: skip


def _own_video(path: Path, frames: int, fps: float = 25.0) -> Path:
    t = np.arange(frames)[:, None, None]
    yy, xx = np.mgrid[:40, :48]
    radius = 10 + 4 * np.sin(2 * np.pi * t / 12)
    video = np.where((yy - 20) ** 2 + (xx - 24) ** 2 < radius**2, 200, 20).astype(np.uint8)
    write_video(path, video, fps)
    return path


def test_inference_on_a_dataset_video_and_a_plain_file(trained, tmp_path):
    own = _own_video(tmp_path / "mine.avi", 30)
    items = [{"dataset": "dynamic", "video": "video6", "ef": 70},
             {"path": str(own), "ef": 20.5, "start": 0.1}]  # fmt: skip
    out = tmp_path / "out"
    table = infer_counterfactuals(trained["model"], trained["expert"], items, out,
                                  metainfo={"dynamic": trained["metainfo"]}, seed=SEED,
                                  root=trained["root"])  # fmt: skip
    assert list(table["Input"]) == ["dynamic:video6", str(own)]
    assert list(table["EF"]) == [70.0, 20.5] and table["EF_expert"].notna().all()
    assert read_video(out / "Videos" / "sample_00001.mp4").shape == (8, 16, 16)
    assert len(list((out / "frames" / "sample_00000").glob("*.jpg"))) == 8
    assert pd.read_csv(out / "FileList.csv")["NumberOfFrames"].tolist() == [8, 8]
    # Plain files are resampled to the clips' frame rate, recorded at training.
    assert json.loads((Path(trained["model"]) / "train.json").read_text())["fps"] == 32.0
    assert table["FPS"].tolist() == [32.0, 32.0]


@pytest.mark.parametrize(
    "item, match",
    [
        ({"dataset": "dynamic", "video": "video6", "ef": 120}, r"items\[1\]: target EF 120"),
        ({"dataset": "dynamic", "video": "nope", "ef": 50}, r"no clip of video 'nope'"),
        ({"dataset": "camus", "video": "video6", "ef": 50}, "names neither a path"),
        ({"path": "missing.avi", "ef": 50}, "no such file"),
        ({"path": "BAD", "ef": 50}, "unreadable"),
        ({"path": "SHORT", "ef": 50}, r"has \d+ frames at 32 fps from 0 s, the model needs 8"),
    ],
)
def test_bad_inference_items_stop_naming_the_item_and_writing_nothing(trained, tmp_path, item,
                                                                      match):  # fmt: skip
    if item.get("path") == "BAD":
        (tmp_path / "bad.avi").write_bytes(b"not a video")
        item = {**item, "path": str(tmp_path / "bad.avi")}
    if item.get("path") == "SHORT":
        item = {**item, "path": str(_own_video(tmp_path / "short.avi", 5))}
    items = [{"dataset": "dynamic", "video": "video7", "ef": 40}, item]
    with pytest.raises(DataError, match=match) as error:
        infer_counterfactuals(trained["model"], trained["expert"], items, tmp_path / "o",
                              metainfo={"dynamic": trained["metainfo"]},
                              root=trained["root"])  # fmt: skip
    assert "Fix:" in str(error.value)
    assert not (tmp_path / "o").exists()
