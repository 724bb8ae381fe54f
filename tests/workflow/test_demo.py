"""The demo end to end on CPU (tier `e2e`: `pytest -m e2e`): data preparation, every table,
the report, and re-runs that resume from training state."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake_plan import planned_jobs
from workflow_helpers import (
    DEMO_CONFIG,
    REPO,
    demo_config,
    snakemake,
)

from echogen.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest
from echogen.data.tracings import read_volume_tracings, tracing_ef

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's data preparation, run once into a temporary directory."""
    workdir = tmp_path_factory.mktemp("demo")
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", workdir, "prepare_data",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir


def test_demo_manifests_share_one_schema(demo):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    for dataset in ["dynamic", "ped_a4c", "ped_psax", "cardiacnet", "rvfailure"]:
        path = demo / "resources" / "manifests" / f"{dataset}.csv"
        assert list(pd.read_csv(path, nrows=0).columns) == MANIFEST_COLUMNS, dataset
        manifest = read_manifest(path)
        assert set(manifest["Split"]) <= set(SPLITS)
        assert len(manifest) > 0
        assert (manifest["Dataset"] == dataset).all()
    dynamic = read_manifest(demo / "resources/manifests/dynamic.csv")
    assert len(dynamic) == sum(config["phantom"]["dynamic"]["videos"].values())
    assert dynamic["FrameHeight"].eq(112).all() and dynamic["FPS"].eq(50).all()


def test_demo_phantom_tracing_ef_matches_filelist(demo):
    root = demo / "resources" / "phantom" / "dynamic"
    filelist = pd.read_csv(root / "FileList.csv", dtype={"FileName": str})
    tracings = read_volume_tracings(root / "VolumeTracings.csv")
    for name, ef in zip(filelist["FileName"], filelist["EF"], strict=True):
        assert abs(tracing_ef(tracings[name])[4] - ef) < 1.0, name
    manifest = read_manifest(demo / "resources/manifests/dynamic.csv")
    assert np.abs(manifest["TracingEF"] - manifest["EF"]).max() < 1.0


def test_demo_dartagnan_clips(demo):
    metainfo = pd.read_csv(demo / "resources/dartagnan/dynamic/metainfo.csv")
    assert len(metainfo) == len(read_manifest(demo / "resources/manifests/dynamic.csv"))
    clip = np.load(demo / metainfo["Path"].iloc[0])
    assert clip.shape == (64, 112, 112) and clip.dtype == np.float16
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0


def test_demo_reference_frames_layout(demo):
    for name, frames in [("dynamic_16f", 16), ("dynamic_128f", 128), ("ped_a4c_16f", 16)]:
        folder = demo / "resources" / "reference_frames" / name
        # Snakemake leaves a hidden .snakemake_timestamp in directory outputs.
        videos = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        assert videos and all(v.is_dir() for v in videos)
        names = sorted(p.name for p in videos[0].iterdir())
        assert names == [f"{i:04d}.jpg" for i in range(frames)]
        index = pd.read_csv(folder.with_suffix(".csv"))
        assert set(index["policy"]) == {"seeded_windows"}  # the demo's policy


def test_demo_flow_and_rvfailure(demo):
    flow = pd.read_csv(demo / "resources/flow/dynamic/index.csv")
    field = np.load(demo / flow["Path"].iloc[0])
    assert field.ndim == 4 and field.shape[1:] == (112, 112, 2)
    stats = json.loads((demo / "resources/rvfailure/stats.json").read_text())
    assert stats["std"] > 0
    splits = [
        pd.read_csv(demo / f"resources/rvfailure/splits/{s}.csv") for s in ("train", "val", "test")
    ]
    patients = [set(s["patient_id"]) for s in splits]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    for split in splits:
        assert set(split["label"]) <= {0, 1}
        clip = np.load(demo / split["Path"].iloc[0])
        assert clip.shape[1:] == (112, 112)


def test_demo_camus_and_cardiacnet(demo):
    camus = pd.read_csv(demo / "resources/camus/index.csv")
    assert sorted(camus["split"].unique()) == ["test", "train", "valid"]
    cardiac = read_manifest(demo / "resources/manifests/cardiacnet.csv")
    assert set(cardiac["class_id"]) == {0, 1, 2, 3}
    frames = pd.read_csv(demo / "resources/cardiacnet/frames.csv")
    assert len(frames) == len(cardiac)


def test_demo_rerun_is_a_no_op(demo):
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", demo, "prepare_data", "-n",
    )  # fmt: skip
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_demo_logs_every_job(demo):
    logs = list((demo / "logs").rglob("*.log"))
    assert len(logs) >= 20


@pytest.fixture(scope="module")
def demo_all(demo):
    """The rest of the demo (metric comparisons, the tiny EF regressor) on top of `demo`."""
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", demo, "all",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return demo


def test_demo_generation_metrics(demo_all):
    windows = json.loads((demo_all / "results/metrics/realcheck_dynamic_windows.json").read_text())
    other = json.loads((demo_all / "results/metrics/realcheck_dynamic_vs_ped_a4c.json").read_text())
    for key in ["fid50k_full", "is50k_mean", "fvd2048_16f", "ssim", "lpips"]:
        assert np.isfinite(windows["metrics"][key]), key
    assert 0 < windows["metrics"]["ssim"] <= 1
    # Another dataset is further from Dynamic than other windows of the same videos.
    assert other["metrics"]["fid50k_full"] > windows["metrics"]["fid50k_full"]
    assert other["metrics"]["fvd2048_16f"] > windows["metrics"]["fvd2048_16f"]
    detail = windows["details"]["fvd2048_16f"]
    assert detail["n_real"] == detail["n_fake"] == 12  # the demo's 12 TRAIN videos
    assert windows["details"]["fid50k_full"]["n_real"] == 12 * 128
    table = (demo_all / "results/metrics/realcheck_dynamic_windows.txt").read_text()
    assert table.startswith("PLUMBING CHECK")
    assert len(list((demo_all / "resources/metric_cache").glob("*.npz"))) >= 2


def test_demo_regressor(demo_all):
    model = demo_all / "results/models/regressor_tiny_dynamic"
    for name in ["config.json", "clips.json", "train.json", "log.csv", "provenance.json"]:
        assert (model / name).is_file(), name
    predictions = pd.read_csv(demo_all / "results/predictions/regressor_tiny_dynamic/dynamic.csv")
    manifest = read_manifest(demo_all / "resources/manifests/dynamic.csv")
    assert len(predictions) == len(manifest)
    assert predictions[["EF_pred_clip", "EF_pred_all"]].notna().all().all()
    record = json.loads((demo_all / "results/metrics/regressor_tiny_dynamic.json").read_text())
    test = predictions[predictions["Split"] == "TEST"]
    mae = float(np.abs(test["EF_pred_all"] - test["EF"]).mean())
    assert record["splits"] == ["VAL", "TEST"]
    assert record["reports"]["TEST"]["all_clips"]["mae"]["value"] == pytest.approx(mae, rel=1e-9)
    table = (demo_all / "results/metrics/regressor_tiny_dynamic.txt").read_text()
    assert "MAE" in table and "train mean" in table
    assert "split VAL" in table and "split TEST" in table
    assert "95 % percentile-bootstrap CI (2.5th-97.5th percentiles of" in table


def test_demo_synthetic_trained_regressor_beside_the_real_one(demo_all):
    """EchoNet-Synthetic's utility experiment in miniature: a regressor trained on the
    synthetic lvdm_dynamic videos, tested on real Dynamic, in one table with tiny_dynamic."""
    train = json.loads(
        (demo_all / "results/models/regressor_tiny_synthetic_dynamic/train.json").read_text()
    )
    synthetic = pd.read_csv(demo_all / "results/samples/lvdm_dynamic/FileList.csv")
    assert train["n_train"] == int((synthetic["Split"] == "TRAIN").sum())
    record = json.loads(
        (demo_all / "results/metrics/regressor_tiny_synthetic_dynamic.json").read_text()
    )
    assert (record["trained_on"], record["tested_on"]) == ("lvdm_dynamic", "dynamic")
    real = read_manifest(demo_all / "resources/manifests/dynamic.csv")
    assert record["reports"]["TEST"]["n"] == int((real["Split"] == "TEST").sum())
    table = (demo_all / "results/metrics/regressors.txt").read_text()
    assert re.search(r"tiny_synthetic_dynamic +lvdm_dynamic +dynamic", table)
    assert "tiny_dynamic" in table
    assert table.startswith("PLUMBING CHECK: tiny_dynamic, tiny_synthetic_dynamic, tiny_balanced")


def test_demo_regressor_rerun_resumes_from_state(demo_all):
    """Deleting the exported model and re-running resumes from the saved state: no retraining."""
    model = demo_all / "results/models/regressor_tiny_dynamic"
    before = (model / "diffusion_pytorch_model.safetensors").read_bytes()
    shutil.rmtree(model)
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", demo_all, "results/models/regressor_tiny_dynamic",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (model / "diffusion_pytorch_model.safetensors").read_bytes() == before
    log = (demo_all / "logs/train_regressor/tiny_dynamic.log").read_text()
    assert "resum" in log.lower()


# --- latent video diffusion (issue 4) -------------------------------------------------


def test_demo_lvdm_metric_tables(demo_all):
    samples = demo_config()["lvdm"]["samples"]
    assert set(samples) == {"dynamic", "ped_a4c", "ped_psax", "cardiac", "cardiacnet"}
    for name, sample in samples.items():
        table = (demo_all / f"results/metrics/lvdm_{name}.txt").read_text()
        assert table.startswith("PLUMBING CHECK"), name
        record = json.loads((demo_all / f"results/metrics/lvdm_{name}.json").read_text())
        for metric in sample["metrics"]:
            key = f"{metric}_mean" if metric.startswith("is") else metric
            assert np.isfinite(record["metrics"][key]), (name, metric)
        fid = record["details"]["fid50k_full"]
        assert fid["n_fake"] == sample["n_samples"] * sample["frames"], name
        # A few hundred frames, not 50k: said in the table, as the json says it.
        assert f"WARNING: fid50k_full: computed over {fid['n_fake']} fake frames" in table
        assert fid["warning"] in record["warnings"] and record["tf32"] is False
        # Every demo video animates an LIDM image that passed the privacy filter.
        assert "conditioning frames: private (results/privacy/lidm_" in table, name
        assert "NON-PRIVATE" not in table, name


def test_demo_summary_has_a_row_per_lvdm_dataset(demo_all):
    """results/metrics/summary.{txt,json}: every synthetic dataset with the numbers of its own
    tables, the sampling cost and a plumbing label (tiny detectors and regressor)."""
    metrics = demo_all / "results" / "metrics"
    record = json.loads((metrics / "summary.json").read_text())
    everything = {row["dataset"]: row for row in record["rows"]}
    cascade = [f"cascade_{m}_{mode}" for m in demo_config()["cascade"]["models"]
               for mode in demo_config()["cascade"]["samples"]["modes"]]  # fmt: skip
    cascade.append(f"cascade_{demo_config()['cascade']['balancing']['model']}_balanced")
    assert [d for d, row in everything.items() if row["system"] == "cascade"] == cascade
    dartagnan = [f"dartagnan_{m}_counterfactual" for m in demo_config()["dartagnan"]["models"]]
    assert [d for d, row in everything.items() if row["system"] == "dartagnan"] == dartagnan
    cardigan = [f"cardigan_{m}_test" for m in demo_config()["cardigan"]["models"]]
    assert [d for d, row in everything.items() if row["system"] == "cardigan"] == cardigan
    rows = {d: row for d, row in everything.items() if row["system"] == "lvdm"}
    lvdm = demo_config()["lvdm"]
    assert list(rows) == [f"lidm_{name}" for name in lvdm["lidms"]] + [
        f"lvdm_{name}" for name in lvdm["samples"]
    ]
    for dataset, row in rows.items():
        own = json.loads((metrics / f"{dataset}.json").read_text())["metrics"]
        assert row["fid50k_full"] == own["fid50k_full"] and row["system"] == "lvdm"
        assert row["seconds_per_video"] > 0 and row["device"] == "cpu" and row["plumbing"]
        # Image sets have no conditioning frames; every video set animates kept images.
        assert row["conditioning"] == (None if dataset.startswith("lidm_") else "private")
    fidelity = json.loads((metrics / "ef_fidelity_lvdm_dynamic.json").read_text())["metrics"]
    assert rows["lvdm_dynamic"]["ef_mae"] == fidelity["mae"]["value"]
    assert rows["lvdm_ped_a4c"]["ef_mae"] is None  # no EF fidelity asked for
    assert (metrics / "summary.txt").read_text().startswith("PLUMBING CHECK")


def test_demo_lvdm_samples_layout(demo_all):
    for name, sample in demo_config()["lvdm"]["samples"].items():
        root = demo_all / f"results/samples/lvdm_{name}"
        filelist = pd.read_csv(root / "FileList.csv")
        assert len(filelist) == sample["n_samples"]
        assert (filelist["NumberOfFrames"] == sample["frames"]).all()
        assert (filelist["FrameHeight"] == 112).all() and (filelist["FrameWidth"] == 112).all()
        assert (filelist["FPS"] == 32).all()
        for video in filelist["FileName"]:
            assert (root / "Videos" / f"{video}.mp4").is_file()
            frames = sorted((root / "frames" / video).glob("*.jpg"))
            assert len(frames) == sample["frames"]
            assert (root / "latents" / f"{video}.npy").is_file()
        if sample["model"] == "ef":
            assert filelist["EF"].between(10, 90).all()
        if sample["model"] == "class":
            assert set(filelist["class_id"]) <= {0, 1, 2, 3}


def test_demo_lvdm_models_and_latents(demo_all):
    for dataset in demo_config()["lvdm"]["latents"]["datasets"]:
        index = pd.read_csv(demo_all / f"resources/latents/{dataset}/index.csv")
        manifest = read_manifest(demo_all / f"resources/manifests/{dataset}.csv")
        assert len(index) == len(manifest), dataset
        latent = np.load(demo_all / index["latent_path"].iloc[0])
        assert latent.shape[1:] == (4, 14, 14)
    for name in demo_config()["lvdm"]["models"]:
        folder = demo_all / f"results/models/lvdm_{name}"
        assert (folder / "unet" / "config.json").is_file(), name
        assert (folder / "provenance.json").is_file(), name
        train = json.loads((folder / "train.json").read_text())
        assert train["steps"] > 0
    vae = json.loads((demo_all / "results/models/vae/config.json").read_text())
    assert vae["scaling_factor"] > 0


def test_demo_cascades_reference_their_stages(demo_all):
    """Every demo cascade: one trained folder per stage, each its own job (log), and a
    cascade.json that lists them and loads."""
    from echogen.models.cascade import load_cascade

    for name, entry in demo_config()["cascade"]["models"].items():
        folder = demo_all / f"results/models/cascade_{name}"
        index = json.loads((folder / "cascade.json").read_text())
        stages = {"1SCM": 1, "2SCM": 2, "4SCM": 4}[entry["structure"]]
        assert index["stages"] == [f"stage_{i}" for i in range(1, stages + 1)]
        for i in range(1, stages + 1):
            train = json.loads((folder / f"stage_{i}" / "train.json").read_text())
            assert train["stage"] == i and train["steps"] == entry["train"]["max_steps"]
            assert (demo_all / f"logs/train_cascade_stage/{name}_stage_{i}.log").is_file()
        assert len(load_cascade(folder).unets) == stages


def test_demo_cascade_tables(demo_all):
    """Every demo cascade's EchoDiffusion table: each task's mean over draws, best of N by EF
    and by metric, the real videos' row; per-sample scores with one row per draw."""
    samples = demo_config()["cascade"]["samples"]
    for name in demo_config()["cascade"]["models"]:
        table = (demo_all / f"results/metrics/cascade_{name}.txt").read_text()
        assert table.startswith("PLUMBING CHECK")
        record = json.loads((demo_all / f"results/metrics/cascade_{name}.json").read_text())
        assert sorted(record["tasks"]) == sorted(samples["modes"])
        for mode, task in record["tasks"].items():
            n = samples["resamples"]
            for label in (f"mean over {n}", f"best of {n} (EF)", f"best of {n} (per metric)"):
                assert f"{mode:<15}{label}" in table
            assert task["videos"] == samples["max_videos"] and task["draws"] == n
            assert task["mean"]["n"] == n * samples["max_videos"]
            assert 0 < task["seconds_per_video"] and task["fvd16"] is not None
            # FID/FVD as the paper: first draws against their paired real clips, padded.
            assert task["pad_to"] == samples.get("pad_to", 128)
            assert task["fid_112"] is not None and task["fvd16_112"] is not None
            paired = demo_all / f"results/paired_frames/cascade_{name}_{mode}"
            for side in ("real", "fake"):
                assert len(list((paired / side).iterdir())) == samples["max_videos"]
            scores = pd.read_csv(demo_all / f"results/metrics/cascade_{name}_{mode}_scores.csv")
            assert len(scores) == n * samples["max_videos"] and scores["lpips"].notna().all()


def test_demo_ef_rebalancing(demo_all):
    """EchoDiffusion's re-balancing in miniature: one video per target EF that fills the
    TRAIN histogram, conditioned on TRAIN anatomies; its report; a regressor on real +
    balanced synthetic and one on a random subset, beside the real one on real TEST."""
    from echogen.data.ef_balance import ef_bins

    balancing = demo_config()["cascade"]["balancing"]
    model = balancing["model"]
    real = read_manifest(demo_all / "resources/manifests/dynamic.csv")
    train = real[real["Split"] == "TRAIN"]
    report = pd.read_csv(demo_all / f"results/metrics/cascade_{model}_balanced_scores.csv")
    low, high = balancing["ef_range"]
    counts = pd.Series(ef_bins(train["EF"])).value_counts()
    missing = sum(max(0, balancing["per_bin"] - counts.get(b, 0)) for b in range(low, high))
    assert len(report) == missing > 0
    assert report["EF"].between(low, high).all() and report["EF_gen"].notna().all()
    assert set(report["Source"]) <= set(train["FileName"])
    filled = pd.Series(ef_bins(pd.concat([train["EF"], report["EF"]]))).value_counts()
    assert all(filled.get(b, 0) >= balancing["per_bin"] for b in range(low, high))
    rows = read_manifest(demo_all / "results/train_regressor/tiny_balanced_dynamic/manifest.csv")
    pooled = rows[rows["Split"] == "TRAIN"]
    assert set(pooled["Dataset"]) == {"dynamic", f"cascade_{model}_balanced"}
    assert pooled.groupby(ef_bins(pooled["EF"])).size().max() <= 2
    assert (rows.loc[rows["Split"] == "VAL", "Dataset"] == "dynamic").all()
    subset = read_manifest(demo_all / "results/train_regressor/tiny_resampled_dynamic/manifest.csv")
    assert (subset["Split"] == "TRAIN").sum() == 8
    table = (demo_all / "results/metrics/regressors.txt").read_text()
    assert f"dynamic + cascade_{model}_balanced, <= 2 per 1-% EF bin in [0, 100]" in table
    assert "dynamic, 8 TRAIN videos at random" in table


def test_demo_dartagnan(demo_all):
    """D'ARTAGNAN's table (both regressors, SSIM, LPIPS, FID, FVD16), its per-sample scores,
    and the counterfactuals of the inference items, one a dataset video, one a plain file."""
    section = demo_config()["dartagnan"]
    record = json.loads((demo_all / "results/metrics/dartagnan.json").read_text())
    assert (record["regressor"], record["expert"]) == (section["regressor"], section["expert"])
    table = (demo_all / "results/metrics/dartagnan.txt").read_text()
    assert "plumbing check" in table and "SSIM 0.79, R2 0.51" in table
    for name in section["models"]:
        model = record["models"][name]
        assert model["plumbing"] and set(model) >= {"all", "VAL", "TEST", "fid", "fvd16"}
        assert model["all"]["n"] == section["samples"]["max_videos"] == 4
        assert 0 < model["all"]["ssim"] <= 1
        scores = pd.read_csv(
            demo_all / f"results/metrics/dartagnan_{name}_counterfactual_scores.csv"
        )
        assert ((scores["EF"] - scores["SourceEF"]).abs() >= 10).all()
        size = section["models"][name]["train"]["size"]  # score_size null: the generator's own
        assert (scores["size"] == size).all() and f"{name} {size} px" in table
        folder = demo_all / f"results/models/dartagnan_{name}"
        assert (folder / "generator/config.json").is_file() and (folder / "log.csv").is_file()
    inference = section["inference"]
    out = demo_all / f"results/counterfactuals/dartagnan_{inference['model']}"
    listing = pd.read_csv(out / "FileList.csv")
    items = inference["items"]
    assert listing["Input"].tolist() == [
        f"{item['dataset']}:{item['video']}" if "dataset" in item else item["path"]
        for item in items
    ]
    assert listing["EF"].tolist() == [item["ef"] for item in items]
    assert any("path" in item for item in items) and listing["EF_expert"].notna().all()
    for name in listing["FileName"]:
        assert (out / "Videos" / f"{name}.mp4").is_file() and (out / "frames" / name).is_dir()


def test_demo_lidm_image_sets(demo_all):
    """LIDM -> privacy filter -> LVDM: each image set has its images, latents and FID/IS
    table; the filter's kept list is what the LVDM videos animate, one image per video."""
    lvdm = demo_config()["lvdm"]
    for name, lidm in lvdm["lidms"].items():
        root = demo_all / f"results/samples/lidm_{name}"
        images = pd.read_csv(root / "FileList.csv")
        assert len(images) == lidm["sampling"]["n_samples"]
        assert (images["NumberOfFrames"] == 1).all() and (images["FrameHeight"] == 112).all()
        for image in images["FileName"]:
            assert (root / "frames" / image / "0000.jpg").is_file()
            assert np.load(root / "latents" / f"{image}.npy").shape == (4, 14, 14)
        record = json.loads((demo_all / f"results/metrics/lidm_{name}.json").read_text())
        assert np.isfinite(record["metrics"]["fid50k_full"]), name
        summary = json.loads((demo_all / f"results/privacy/lidm_{name}/summary.json").read_text())
        assert summary["n_kept"] + summary["n_dropped"] == summary["n_samples"] == len(images)
        kept = pd.read_csv(demo_all / f"results/privacy/lidm_{name}/FileList.csv")
        assert len(kept) == summary["n_kept"] > 0
        # Each dataset's images are judged by its own re-identification network.
        assert summary["model_dir"] == f"results/models/privacy_{lidm['dataset']}"
        assert summary["heldout"] == ["VAL", "TEST"]
        # FID/IS of the kept images, beside the table of the whole set.
        frames = demo_all / f"results/privacy/lidm_{name}/frames"
        linked = sorted(p.name for p in frames.iterdir() if not p.name.startswith("."))
        assert linked == sorted(kept["FileName"])
        after = json.loads((demo_all / f"results/metrics/lidm_{name}_private.json").read_text())
        assert after["details"]["fid50k_full"]["n_fake"] == summary["n_kept"]
        model = json.loads((demo_all / f"results/models/lidm_{name}/train.json").read_text())
        assert model["steps"] == lidm["train"]["max_steps"]
        assert model["spec"]["conditioning"] == lidm.get("conditioning", "none")
    for name, sample in lvdm["samples"].items():
        videos = pd.read_csv(demo_all / f"results/samples/lvdm_{name}/FileList.csv")
        kept = pd.read_csv(demo_all / f"results/privacy/lidm_{sample['lidm']}/FileList.csv")
        assert set(videos["cond_video"]) <= set(kept["FileName"]), name
        assert (videos["cond_frame"] == 0).all(), name
        if "class_id" in kept and sample["model"] == "class":
            classes = dict(zip(kept["FileName"], kept["class_id"], strict=True))
            assert (videos["cond_video"].map(classes) == videos["class_id"]).all()
        record = json.loads((demo_all / f"results/samples/lvdm_{name}/sampling.json").read_text())
        assert record["conditioning"]["private"] is True, name


def test_demo_privacy_ef_fidelity_classification(demo_all):
    generation = (demo_all / "results/metrics/lvdm_dynamic.txt").read_text()
    assert "real reference: policy seeded_windows" in generation
    fidelity = (demo_all / "results/metrics/ef_fidelity_lvdm_dynamic.txt").read_text()
    assert fidelity.startswith("PLUMBING CHECK") and "MAE" in fidelity
    table = (demo_all / "results/metrics/classification_cardiacnet.txt").read_text()
    assert table.startswith("PLUMBING CHECK")
    for task in ["task asd", "task pah"]:  # EchoDream's binary tasks, one section each
        section = table.split(task, 1)[1].split("\ntask ", 1)[0]
        for source in ["real", "synthetic", "real+synthetic"]:
            assert f"\n{source} " in section, (task, source)


def test_demo_classification_cross_validated(demo_all, tmp_path):
    """EchoDream's protocol through the workflow: cv_folds 2 (one train_classifier_fold job
    per task and fold), the table's mean ± std; then the demo's own table comes back."""
    overlay = tmp_path / "cv.yaml"
    classification = {"sources": ["real"], "cv_folds": 2, "validation": "source"}
    overlay.write_text(yaml.safe_dump({"evaluation": {"classification": classification}}))
    table = demo_all / "results/metrics/classification_cardiacnet.txt"

    def run(*configs) -> str:
        result = snakemake(
            "--profile", REPO / "profiles" / "ci", "--configfile", *configs,
            "--directory", demo_all, "--rerun-triggers", "mtime",
            "--forcerun", "classification_table", "--", table.relative_to(demo_all),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout + result.stderr

    ran = planned_jobs(run(DEMO_CONFIG, overlay))
    assert ran["train_classifier_fold"] == ran["predict_classifier"] == 2 * 2
    text = table.read_text()
    assert text.count("mean ± population std over 2 cross-validation folds") == 2
    for task in ["asd", "pah"]:
        for fold in [1, 2]:
            model = demo_all / f"results/models/classifier_cardiacnet_{task}_real_fold{fold}"
            info = json.loads((model / "train.json").read_text())
            assert info["n_val"] > 0 and sum(info["n_train"].values()) > 0
    run(DEMO_CONFIG)
    assert "\nreal+synthetic " in table.read_text() and "±" not in table.read_text()


def test_demo_report(demo_all):
    for path in ["results/report/loss_curves.png", "results/report/lvdm_dynamic_strip.gif"]:
        assert (demo_all / path).stat().st_size > 0, path
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", demo_all, "--report", demo_all / "report.html",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = (demo_all / "report.html").read_text(errors="replace")
    assert "lvdm_dynamic" in html


def test_demo_lvdm_rerun_resumes_from_state(demo_all):
    """Deleting an exported LVDM and re-running resumes from its saved state to the budget."""
    model = demo_all / "results/models/lvdm_class"
    before = (model / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    steps = json.loads((model / "train.json").read_text())["steps"]
    shutil.rmtree(model)
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", demo_all, "results/models/lvdm_class",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (model / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    assert json.loads((model / "train.json").read_text())["steps"] == steps
    assert "resum" in (demo_all / "logs/train_lvdm/class.log").read_text().lower()


@pytest.mark.slow  # 46 s; in CI, tests/unit/test_sampling.py compares 1 vs 3 shards byte for byte
def test_demo_samples_identical_for_any_shard_count(demo_all):
    """3 sampling jobs write the same bytes as the demo's 2 (run last: it rewrites samples)."""
    root = demo_all / "results/samples/lvdm_ped_a4c"

    def files():  # every sample file; sampling.json records the shard list, so it differs
        paths = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
        return {p.relative_to(root): p.read_bytes() for p in paths if p.name != "sampling.json"}

    before = files()
    result = snakemake(
        "--profile", REPO / "profiles" / "ci", "--configfile", DEMO_CONFIG,
        "--directory", demo_all, "results/samples/lvdm_ped_a4c/FileList.csv",
        "--set-scatter", "lvdm_shard=3", "--forcerun", "sample_lvdm",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert len(list((demo_all / "results/sample_shards/lvdm_ped_a4c").glob("*-of-3"))) == 3
    ran = set(planned_jobs(result.stderr + result.stdout))
    assert ran == {"sample_lvdm", "gather_samples"}, ran  # only the target's own jobs
    after = files()
    assert after.keys() == before.keys() and len(after) == 2 * 4 + 32 * 4 + 1  # 4 samples
    assert [str(k) for k in before if after[k] != before[k]] == []
    provenance = json.loads((root / "sampling.json").read_text())
    assert provenance["shards"] == ["1-of-3", "2-of-3", "3-of-3"]


def test_demo_cardigan(demo_all):
    """cardiGAN: SPADE's table (SSIM, LPIPS, FID, mask fidelity beside the real-image
    ceiling), the segmentation experiment's table (three training sets, bootstrap CIs), the
    report strips, and the TRAIN-mask dataset the synthetic segmenters trained on."""
    section = demo_config()["cardigan"]
    record = json.loads((demo_all / "results/metrics/cardigan.json").read_text())
    table = (demo_all / "results/metrics/cardigan.txt").read_text()
    assert "plumbing check" in table and "mask fidelity" in table
    for name in section["models"]:
        model = record["models"][name]
        assert model["plumbing"] and model["n"] == 2  # the phantom's 2 TEST masks
        assert 0 < model["ssim"] <= 1 and model["fid"] is not None and model["kid"] is not None
        assert set(model["dice"]) == {"lv_cavity", "myocardium", "left_atrium"}
        for figure in ("strips", "embedding"):
            assert (demo_all / f"results/report/cardigan_{name}_{figure}.png").stat().st_size
        train = pd.read_csv(demo_all / f"results/samples/cardigan_{name}_train/FileList.csv")
        assert len(train) == 8 and (train["Split"] == "TRAIN").all()
    experiment = json.loads((demo_all / "results/metrics/cardigan_segmentation.json").read_text())
    assert sorted(experiment["runs"]) == ["mixed", "real", "synthetic"]  # json keys sorted
    for run in experiment["runs"].values():
        assert run["n"] == 2
        for structure in experiment["structures"]:
            cell = run[structure]
            assert cell["low"] <= cell["mean"] <= cell["high"]
    assert "plumbing check" in (demo_all / "results/metrics/cardigan_segmentation.txt").read_text()


def test_demo_rvfailure(demo_all):
    """RV failure: the streams pretrained on the dynamic phantom's EF, the fusion chosen on
    VAL, every VAL and TEST video's probability over 5 clips, and the table per patient."""
    section = demo_config()["rvfailure"]
    for stream in ("grey", "flow"):
        record = json.loads(
            (demo_all / f"results/models/rvfailure_pretrain_{stream}/train.json").read_text()
        )
        assert record["objective"] == "ef" and record["streams"] == [stream]
    for name, streams in section["models"].items():
        model = demo_all / f"results/models/rvfailure_{name}"
        record = json.loads((model / "train.json").read_text())
        assert record["streams"] == streams and record["selected"]["select"] == "best_val"
        assert set(record["init"]) == set(streams)  # each trunk from its EF pretraining
        predictions = pd.read_csv(demo_all / f"results/metrics/rvfailure_{name}_predictions.csv")
        assert set(predictions["Split"]) == {"VAL", "TEST"}
        assert predictions["clip_probs"].str.count(";").eq(4).all()
        assert predictions["prob"].between(0, 1).all()
        saliency = demo_all / f"results/saliency/rvfailure_{name}"
        explained = pd.read_csv(saliency / "index.csv")
        assert len(explained) == section["explain"]["videos"]
        for video in explained["FileName"]:
            for stream in streams:
                assert (saliency / "captum" / f"{video}_{stream}.npy").is_file()
                assert (saliency / "inputs" / f"{video}_{stream}.npy").is_file()
        assert (demo_all / f"results/report/rvfailure_{name}_saliency.gif").stat().st_size
        # the TF1 innvestigate step on the same clips and weights: the same maps (where its
        # interpreter is: envs/setup.sh builds it from a Python 3.6, CI has one)
        if not (REPO / ".venv-innvestigate" / "bin" / "python").is_file():
            continue
        tf1 = demo_all / f"results/saliency/rvfailure_{name}_innvestigate"
        assert (tf1 / "model.h5").stat().st_size
        for video in explained["FileName"]:
            for stream in streams:
                assert (tf1 / f"{video}_{stream}.npy").is_file()
        agreement = json.loads(
            (demo_all / f"results/metrics/rvfailure_{name}_saliency_agreement.json").read_text()
        )
        assert len(agreement["maps"]) == len(explained) * len(streams)
        assert agreement["max_relative_error"] <= section["innvestigate"]["tolerance"]
        assert agreement["min_correlation"] > 0.999
        gif = demo_all / f"results/report/rvfailure_{name}_saliency_innvestigate.gif"
        assert gif.stat().st_size
    table = (demo_all / "results/metrics/rvfailure.txt").read_text()
    assert "PLUMBING CHECK" in table and "AUC 0.729" in table
    # No identifying DICOM value reaches any RV-failure output or log.
    import pydicom

    identifying = set()
    for path in (demo_all / "resources/phantom/rvfailure/dicoms").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        identifying |= {str(ds.PatientName), ds.PatientBirthDate, ds.InstitutionName}
    written = [p for pattern in ("results/**/*rvfailure*", "logs/**/*rvfailure*")
               for p in demo_all.glob(pattern)]  # fmt: skip
    files = [f for p in written for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    assert len(files) > 10
    for path in files:
        text = path.read_bytes().decode("latin-1")
        assert not [value for value in identifying if value in text], path
    report = json.loads((demo_all / "results/metrics/rvfailure.json").read_text())
    for row in report["models"].values():
        # the phantom's stratified split: 3 TEST patients, 1 with severe RV failure
        assert (row["n_patients"], row["n_positive"]) == (3, 1)
        assert 0 <= row["auc"]["value"] <= 1 and row["confusion"] is not None
