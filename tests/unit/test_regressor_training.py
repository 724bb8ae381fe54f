"""EF regressor training (checkpoints, export, bitwise resume), prediction csv and report.

A phantom EchoNet-Dynamic (13 videos of 32 px) and a micro model (widths 4-8, 8-frame clips)
keep every run to a second or two. The reference run starts with fc bias 0 and SGD with a
step schedule, so the loss must fall and the scheduler's state must survive a resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from trainer_cases import DYNAMIC_PHANTOM, REGRESSOR, phantom_dynamic

from echogen.data.ef_clips import EFClipDataset, estimate_mean_std
from echogen.data.errors import DataError
from echogen.data.manifest import read_manifest, write_manifest
from echogen.data.video import write_video
from echogen.models.regressor import load_regressor
from echogen.pipelines.ef_prediction import (
    PREDICTION_COLUMNS,
    predict_ef,
    regressor_record,
    regressor_report,
    video_folder_rows,
    write_regressor_comparison,
    write_regressor_table,
)
from echogen.training.regressor import (
    REGRESSOR_PRESETS,
    TrainSpec,
    resolve_config,
    train_regressor,
    train_regressor_from_run,
)
from echogen.training.state import checkpoints

SEED = 3
pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEPS_PER_EPOCH = 4  # 8 TRAIN videos / batch 2
EPOCHS = 8
# The contract's tiny regressor run (SGD with a step schedule, fc bias 0), for more epochs.
MICRO = {**REGRESSOR.overrides, "train": {**REGRESSOR.overrides["train"], "epochs": EPOCHS}}
EXPORT_FILES = {"config.json", "diffusion_pytorch_model.safetensors", "clips.json", "train.json"}
EXPORT_FILES |= {"log.csv"}


def micro(**train) -> dict:
    return {**MICRO, "train": {**MICRO["train"], **train}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("phantom")
    manifest = phantom_dynamic(base)
    return {"manifest": manifest, "rows": read_manifest(manifest), "base": base}


@pytest.fixture(scope="module")
def reference(one_torch_thread, data, tmp_path_factory) -> dict:
    """The uninterrupted run every resumed run must reproduce bit for bit."""
    base = tmp_path_factory.mktemp("reference")
    config = resolve_config("tiny", MICRO)
    summary = train_regressor(data["manifest"], base / "out", base / "state", config, SEED)
    return {"out": base / "out", "state": base / "state", "summary": summary, "config": config}


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(out_dir / "diffusion_pytorch_model.safetensors")


def assert_same_export(out: Path, expected: Path) -> None:
    got, want = weights(out), weights(expected)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    for name in ["log.csv", "train.json", "clips.json", "config.json"]:
        assert (out / name).read_text() == (expected / name).read_text(), name


# --- configuration ---


def test_presets_resolve_with_published_settings():
    for name in REGRESSOR_PRESETS:
        config = resolve_config(name)
        assert config.model["in_channels"] == config.clips.channels
    echonet = resolve_config("echonet")
    assert (echonet.clips.frames, echonet.clips.period, echonet.clips.pad) == (32, 2, 12)
    assert echonet.train == TrainSpec()  # TrainSpec defaults are EchoNet's
    echodiffusion = resolve_config("echodiffusion")
    assert (echodiffusion.clips.frames, echodiffusion.clips.fps) == (64, 32.0)
    assert echodiffusion.clips.normalisation == "unit"
    assert (echodiffusion.train.optimizer, echodiffusion.train.epochs) == ("adam", 100)
    expert = resolve_config("dartagnan_expert")
    # The reference's scheduler never runs (returned under a key Lightning ignores): constant lr.
    assert (expert.clips.channels, expert.train.epochs) == (1, 50)
    assert expert.train.lr_step_epochs is None
    assert expert.train.batch_size == 4
    # The exported checkpoint: EchoNet's best.pt (lowest VAL loss), EchoDiffusion's best VAL
    # checkpoint; D'ARTAGNAN's is not recorded (last), nor is the demo preset's.
    selects = {name: resolve_config(name).train.select for name in REGRESSOR_PRESETS}
    assert selects == {
        "echonet": "best_val",
        "echodiffusion": "best_val",
        "dartagnan_expert": "last",
        "tiny": "last",
    }
    with pytest.raises(ValueError, match="select"):
        TrainSpec(select="best")


def test_echonet_and_echodiffusion_presets_follow_their_code_point_by_point():
    # echonet/dynamic: Echo(...) random starts for TRAIN, VAL and the one-clip number;
    # pad 12 with randint(0, 24) offsets; get_mean_and_std over one 16-frame clip per video.
    echonet = resolve_config("echonet").clips
    assert (echonet.train_start, echonet.clip_start, echonet.crop) == (
        "random",
        "random",
        "echonet",
    )
    assert (echonet.statistics, echonet.normalisation, echonet.test_clip_stride) == (
        "one_clip",
        "zscore",
        1,
    )
    assert resolve_config("echonet").train.precision == "fp32"
    # EchoDiffusion ef_regression: zoom(order=1) to 32 fps, first 64 frames, Pad(12) +
    # RandomCrop(112), x/255, eval on the first 64 frames, Lightning precision=16.
    echodiffusion = resolve_config("echodiffusion")
    clips = echodiffusion.clips
    assert (clips.fps, clips.resample, clips.frames, clips.period) == (32.0, "linear", 64, 1)
    assert (clips.train_start, clips.pad, clips.crop) == ("first", 12, "torchvision")
    assert (clips.clip_start, clips.normalisation) == ("first", "unit")
    train = echodiffusion.train
    assert (train.optimizer, train.lr, train.batch_size, train.precision) == (
        "adam",
        1e-4,
        16,
        "fp16",
    )
    # The demo preset keeps today's behaviour (the demo's numbers do not move).
    tiny = resolve_config("tiny").clips
    assert (tiny.train_start, tiny.clip_start, tiny.crop, tiny.statistics) == (
        "random",
        "first",
        "echonet",
        "all_frames",
    )
    for key, bad in [("resample", "cubic"), ("train_start", "middle"), ("crop", "centre")]:
        with pytest.raises(ValueError, match=key):
            resolve_config("tiny", {"clips": {key: bad}})
    with pytest.raises(ValueError, match="precision"):
        TrainSpec(precision="fp64")
    assert TrainSpec(precision="bf16").precision == "bf16"


def test_fp16_falls_back_to_fp32_on_cpu(data, tmp_path, caplog):
    from echogen.training.settings import mixed_precision

    assert mixed_precision("fp16", "cuda") == "fp16"
    assert mixed_precision("bf16", "cuda") == "bf16" and mixed_precision("bf16", "cpu") == "no"
    assert mixed_precision("fp32", "cuda") == "no"
    config = resolve_config("tiny", micro(max_steps=1, precision="fp16"))
    with caplog.at_level("WARNING"):
        train_regressor(data["manifest"], tmp_path / "out", tmp_path / "state", config, SEED)
    assert "needs a GPU" in caplog.text
    record = json.loads((tmp_path / "out" / "train.json").read_text())
    assert record["mixed_precision"] == "no" and record["train"]["precision"] == "fp16"


def test_overrides_are_nested_and_checked():
    config = resolve_config("tiny", {"clips": {"frames": 8}, "train": {"lr": 0.5}})
    assert (config.clips.frames, config.train.lr) == (8, 0.5)
    assert config.clips.size == REGRESSOR_PRESETS["tiny"]["clips"]["size"]
    with pytest.raises(ValueError, match="clips.framez"):
        resolve_config("tiny", {"clips": {"framez": 8}})
    with pytest.raises(ValueError, match="optimiser"):
        resolve_config("tiny", {"optimiser": {}})
    with pytest.raises(ValueError, match="unknown regressor preset"):
        resolve_config("huge")
    with pytest.raises(ValueError, match="in_channels"):
        resolve_config("tiny", {"clips": {"channels": 3}})
    with pytest.raises(ValueError, match="optimizer"):
        TrainSpec(optimizer="rmsprop")


# --- training ---


def test_training_learns_checkpoints_and_exports(data, reference):
    state, out = reference["state"], reference["out"]
    total = EPOCHS * STEPS_PER_EPOCH
    # Saved every 3 steps and at the end (32), the 2 newest kept, no temporary folder left.
    assert [p.name for p in checkpoints(state)] == ["checkpoint_00000030", "checkpoint_00000032"]
    assert not list(state.glob(".checkpoint_*"))
    assert {p.name for p in out.iterdir()} == EXPORT_FILES

    log = pd.read_csv(out / "log.csv")
    assert log["epoch"].tolist() == list(range(EPOCHS))
    assert log["step"].tolist() == [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    assert np.isfinite(log[["train_loss", "val_loss", "val_mae"]].to_numpy()).all()
    # From fc bias 0 the first epoch's loss is about mean(EF)^2; training must cut it.
    assert log["train_loss"].iloc[-1] < 0.5 * log["train_loss"].iloc[0]
    assert (state / "log.csv").read_text() == (out / "log.csv").read_text()

    train_rows = data["rows"][data["rows"]["Split"] == "TRAIN"]
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == total and info["seed"] == SEED
    assert info["train_mean_ef"] == pytest.approx(train_rows["EF"].mean(), abs=1e-12)
    # The z-score statistics are estimated on TRAIN and exported with the model.
    model, spec = load_regressor(out)
    mean, std = estimate_mean_std(train_rows, reference["config"].clips, seed=SEED)
    assert spec.mean + spec.std == pytest.approx(mean + std, abs=1e-12)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights(out)[key])

    # The logged validation numbers equal a direct evaluation of the exported model.
    val_rows = data["rows"][data["rows"]["Split"] == "VAL"]
    dataset = EFClipDataset(val_rows, spec, train=False, seed=0)
    model.eval()
    with torch.no_grad():
        pred = np.array([model(dataset[i][0][None]).item() for i in range(len(dataset))])
    true = val_rows["EF"].to_numpy()
    assert log["val_mae"].iloc[-1] == pytest.approx(mean_absolute_error(true, pred), rel=1e-5)
    assert log["val_loss"].iloc[-1] == pytest.approx(np.mean((true - pred) ** 2), rel=1e-5)


def test_best_val_exports_the_epoch_of_lowest_val_loss(data, reference, tmp_path):
    """``select: best_val`` exports the weights of the epoch whose VAL loss was lowest (the
    first on ties), and ``train.json`` says which; ``last`` (the reference) the last ones."""
    config = resolve_config("tiny", micro(select="best_val"))
    train_regressor(data["manifest"], tmp_path / "out", tmp_path / "state", config, SEED)
    log = pd.read_csv(tmp_path / "out" / "log.csv")
    pd.testing.assert_frame_equal(log, pd.read_csv(reference["out"] / "log.csv"))  # same run
    best = int(np.argmin(log["val_loss"].to_numpy()))
    assert best != len(log) - 1  # else this test could not tell best_val from last
    info = json.loads((tmp_path / "out" / "train.json").read_text())
    assert info["selected"]["select"] == "best_val" and info["selected"]["epoch"] == best
    assert info["selected"]["val_loss"] == log["val_loss"].iloc[best]
    last = json.loads((reference["out"] / "train.json").read_text())["selected"]
    assert last["select"] == "last" and last["epoch"] == len(log) - 1

    # The exported model's VAL loss is the logged loss of the selected epoch.
    model, spec = load_regressor(tmp_path / "out")
    val_rows = data["rows"][data["rows"]["Split"] == "VAL"]
    dataset = EFClipDataset(val_rows, spec, train=False, seed=0)
    with torch.no_grad():
        pred = np.array([model.eval()(dataset[i][0][None]).item() for i in range(len(dataset))])
    loss = np.mean((val_rows["EF"].to_numpy() - pred) ** 2)
    assert loss == pytest.approx(log["val_loss"].iloc[best], rel=1e-5)


def test_bad_manifests_raise_data_errors(data, tmp_path):
    no_val = data["rows"][data["rows"]["Split"] != "VAL"]
    manifest = write_manifest(no_val, tmp_path / "no_val.csv")
    assert len(manifest)
    with pytest.raises(DataError, match="no VAL rows"):
        train_regressor(
            tmp_path / "no_val.csv",
            tmp_path / "o",
            tmp_path / "s",
            resolve_config("tiny", MICRO),
            SEED,
        )
    with pytest.raises(DataError, match="do not fill one batch"):
        train_regressor(
            data["manifest"],
            tmp_path / "o",
            tmp_path / "s",
            resolve_config("tiny", micro(batch_size=9)),
            SEED,
        )
    with pytest.raises(DataError, match="clips.json"):
        load_regressor(tmp_path)


# --- prediction and report ---


def expected_clips(n_frames: int, span: int, stride: int) -> int:
    return max(n_frames - span, 0) // stride + 1


def test_predictions_match_direct_forward_passes(data, reference, tmp_path):
    rows = data["rows"][data["rows"]["Split"] == "TEST"]
    table = predict_ef(reference["out"], rows, tmp_path / "pred.csv", batch_size=3)
    assert list(table.columns) == PREDICTION_COLUMNS
    read_back = pd.read_csv(tmp_path / "pred.csv", dtype={"FileName": str})
    pd.testing.assert_frame_equal(read_back, table, check_dtype=False)
    assert table["FileName"].tolist() == rows["FileName"].tolist()
    assert (table["Split"] == "TEST").all()
    np.testing.assert_array_equal(table["EF"], rows["EF"])

    model, spec = load_regressor(reference["out"])
    model.eval()
    dataset = EFClipDataset(rows, spec, train=False, seed=0)
    span = (spec.frames - 1) * spec.period + 1
    for i, n_frames in enumerate(rows["NumberOfFrames"]):
        assert table["n_clips"].iloc[i] == expected_clips(n_frames, span, spec.test_clip_stride)
        with torch.no_grad():
            first = model(dataset[i][0][None]).item()  # the evaluation clip: start 0
            every = model(dataset.all_clips(i)[0]).numpy()
        assert table["EF_pred_clip"].iloc[i] == pytest.approx(first, rel=1e-5)
        assert table["EF_pred_all"].iloc[i] == pytest.approx(every.mean(), rel=1e-5)
    # Batching clips across videos does not change the predictions.
    one = predict_ef(reference["out"], rows, tmp_path / "one.csv", batch_size=1)
    np.testing.assert_allclose(one["EF_pred_all"], table["EF_pred_all"], rtol=1e-5)


def test_report_matches_sklearn(data, reference, tmp_path):
    rows = data["rows"]
    table = predict_ef(reference["out"], rows, tmp_path / "pred.csv", batch_size=8)
    train_mean = json.loads((reference["out"] / "train.json").read_text())["train_mean_ef"]
    report = regressor_report(table, train_mean, split="TEST", n_boot=200, seed=1)
    test = table[table["Split"] == "TEST"]
    y = test["EF"].to_numpy()
    assert report["n"] == len(test) == DYNAMIC_PHANTOM["videos"]["TEST"]
    for kind, column in (("clip", "EF_pred_clip"), ("all_clips", "EF_pred_all")):
        pred = test[column].to_numpy()
        assert report[kind]["mae"]["value"] == pytest.approx(mean_absolute_error(y, pred))
        assert report[kind]["rmse"]["value"] == pytest.approx(root_mean_squared_error(y, pred))
        assert report[kind]["r2"]["value"] == pytest.approx(r2_score(y, pred))
        low, high = report[kind]["mae"]["ci_low"], report[kind]["mae"]["ci_high"]
        assert low <= report[kind]["mae"]["value"] <= high
    baseline = np.full_like(y, train_mean)
    assert report["train_mean"]["mae"] == pytest.approx(mean_absolute_error(y, baseline))
    assert report["train_mean"]["r2"] == pytest.approx(r2_score(y, baseline))
    assert regressor_report(table, train_mean, split=None, n_boot=10)["n"] == len(table)

    record = regressor_record(table, train_mean, ["VAL", "TEST"], n_boot=200, seed=1)
    assert record["reports"]["TEST"] == report
    assert record["reports"]["VAL"]["n"] == DYNAMIC_PHANTOM["videos"]["VAL"]
    write_regressor_table(record, tmp_path / "report.txt", tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(record))
    text = (tmp_path / "report.txt").read_text()
    assert f"MAE {report['all_clips']['mae']['value']:.2f}" in text
    assert f"MAE {report['train_mean']['mae']:.2f}" in text
    assert text.index("split VAL") < text.index("split TEST")
    assert "95 % percentile-bootstrap CI (2.5th-97.5th percentiles of 200 resamples" in text
    assert "(clip at frame 0)" in text
    with pytest.raises(ValueError, match="no predictions"):
        regressor_report(table, train_mean, split="HOLDOUT")

    # Trained on synthetic videos: the table says so, and the side-by-side table sets the
    # run beside a real-trained one with the same numbers as each run's own table.
    synthetic = {**record, "trained_on": "lvdm_dynamic", "tested_on": "dynamic"}
    write_regressor_table(synthetic, tmp_path / "s.txt", tmp_path / "s.json")
    first = (tmp_path / "s.txt").read_text().splitlines()[0]
    assert first == "trained on lvdm_dynamic, tested on dynamic (real videos)"
    real = {**record, "trained_on": "dynamic", "tested_on": "dynamic"}
    both = write_regressor_comparison({"real": real, "synth": synthetic}, tmp_path / "all.txt")
    assert both["run"].tolist() == ["real", "real", "synth", "synth"]
    assert both["trained_on"].tolist()[2:] == ["lvdm_dynamic"] * 2
    assert both.loc[3, "mae"] == report["all_clips"]["mae"]["value"]
    assert "lvdm_dynamic" in (tmp_path / "all.txt").read_text()
    assert not (tmp_path / "all.txt").read_text().startswith("PLUMBING")
    write_regressor_comparison({"synth": synthetic}, tmp_path / "tiny.txt", plumbing=["synth"])
    assert (tmp_path / "tiny.txt").read_text().startswith("PLUMBING CHECK: synth use tiny")

    # EchoNet's 5th-95th interval: narrower, and named as EchoNet's.
    narrow = regressor_report(table, train_mean, "TEST", n_boot=200, seed=1, ci_level=0.90)
    assert narrow["interval"].startswith("90 % percentile-bootstrap CI (5th-95th")
    assert "EchoNet-Dynamic's interval" in narrow["interval"]
    for kind in ("clip", "all_clips"):
        wide, tight = report[kind]["mae"], narrow[kind]["mae"]
        assert wide["ci_low"] <= tight["ci_low"] <= tight["ci_high"] <= wide["ci_high"]


def test_video_folder_rows_and_unlabelled_predictions(reference, tmp_path):
    folder = tmp_path / "generated"
    frames = np.random.default_rng(0).integers(0, 255, size=(24, 32, 32), dtype=np.uint8)
    write_video(folder / "b.avi", frames, 25)
    write_video(folder / "a.mp4", frames, 25)
    (folder / "notes.txt").write_text("not a video")
    rows = video_folder_rows(folder)
    assert rows["FileName"].tolist() == ["a", "b"]
    assert rows["FPS"].tolist() == pytest.approx([25.0, 25.0])
    assert rows["EF"].isna().all() and rows["Split"].isna().all()
    assert video_folder_rows(folder, fps=32)["FPS"].tolist() == [32.0, 32.0]

    table = predict_ef(reference["out"], rows, tmp_path / "pred.csv")
    assert table["EF"].isna().all() and np.isfinite(table["EF_pred_all"]).all()
    assert table["n_clips"].tolist() == [expected_clips(24, 15, 4)] * 2

    pd.DataFrame({"FileName": ["b.avi"], "EF": [61.5], "Split": ["test"]}).to_csv(
        folder / "FileList.csv", index=False
    )
    rows = video_folder_rows(folder)
    assert rows.set_index("FileName")["EF"].to_dict() == pytest.approx(
        {"a": np.nan, "b": 61.5}, nan_ok=True
    )
    assert rows["Split"].tolist()[1] == "TEST"
    pd.DataFrame({"FileName": ["c"], "EF": [50.0]}).to_csv(folder / "FileList.csv", index=False)
    with pytest.raises(DataError, match="listed but not in the folder"):
        video_folder_rows(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .avi or .mp4"):
        video_folder_rows(tmp_path / "empty")


def test_published_weights_export_untrained_with_zero_budget(data, reference, tmp_path):
    """finetune: false in config = max_steps 0: the published weights come out unchanged."""
    model, _ = load_regressor(reference["out"])
    published = tmp_path / "published.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, published)
    run = {
        "preset": "tiny",
        "overrides": MICRO,
        "pretrained": {"kind": "published", "finetune": False},
    }
    summary = train_regressor_from_run(
        str(data["manifest"]), str(tmp_path / "out"), str(tmp_path / "state"), run, SEED,
        weights=str(published),
    )  # fmt: skip
    assert summary["steps"] == 0
    got, want = weights(tmp_path / "out"), weights(reference["out"])
    for key in want:
        assert torch.equal(got[key], want[key]), key
