"""The workflow as users write and plan it: lint, formatting, config checks and dry runs
(the fast tier; tests/workflow/test_demo.py runs the demo end to end)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from snakemake_plan import planned_job_blocks, planned_jobs
from workflow_helpers import (
    BIN,
    DEMO_CONFIG,
    PAPER_CONFIG,
    REPO,
    demo_config,
    paper_data_folders,
    runner_env,
    snakemake,
)


@pytest.mark.lint
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_clean(command):
    result = subprocess.run(
        [str(BIN / "ruff"), *command, "echogen", "workflow_scripts", "tests", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.lint
def test_snakefmt_clean():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.lint
def test_lint_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        (["datasets", "dynamic"], "chunks", 0, ["chunks", "minimum"]),
        # A system's section is validated through its schema fragment (lvdm.schema.yaml).
        (["lvdm", "samples", "dynamic"], "stepz", 3, ["stepz", "Additional properties"]),
    ],
)
def test_bad_config_key_is_named(tmp_path, section, key, value, words):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    node = config
    for part in section:
        node = node[part]
    node[key] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", bad, "--directory", tmp_path)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert all(word in text for word in words)


def test_missing_real_dataset_root_is_named(tmp_path):
    result = snakemake("-n", "--configfile", PAPER_CONFIG, "--directory", tmp_path)
    assert result.returncode != 0
    assert "datasets.dynamic.root = 'data/EchoNet-Dynamic' does not exist" in (
        result.stdout + result.stderr
    )


def test_paper_dry_run_plans_every_data_rule(tmp_path):
    paper_data_folders(tmp_path)
    result = snakemake("-n", "--configfile", PAPER_CONFIG, "--directory", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    paper = yaml.safe_load(PAPER_CONFIG.read_text())
    assert jobs["compute_flow"] == paper["datasets"]["dynamic"]["chunks"] == 100
    assert jobs["extract_dartagnan_clips"] == 100
    assert jobs["convert_dicoms"] == paper["datasets"]["rvfailure"]["chunks"]
    assert jobs["convert_cardiacnet"] == paper["datasets"]["cardiacnet"]["chunks"]
    assert "make_phantom" not in jobs
    for rule in [
        "ingest_dynamic",
        "ingest_pediatric",
        "index_cardiacnet",
        "ingest_cardiacnet",
        "prepare_camus",
        "index_dicoms",
        "ingest_rvfailure",
        "extract_reference_frames",
        "extract_cardiacnet_frames",
        "gather_dartagnan_clips",
        "gather_flow",
    ]:
        assert rule in jobs, rule
    # 618 with the LVDM line (2026-11), 695 with the LIDMs, 860 with EchoDiffusion's cascades
    # (7 stage trainings, 3 models x 2 modes x 8 sampling shards and their tables), 934 with
    # its EF re-balancing (8 more shards, 11 regressors on composed rows), 940 with the
    # paired FID/FVD tables.
    assert sum(jobs.values()) < 1000
    # EchoDream's two binary CardiacNet tasks x two training sources x 5 folds, from Kinetics
    # weights, each fold's classifier scored on real and synthetic TEST videos of the
    # 655-video synthetic set.
    assert "train_classifier" not in jobs
    assert jobs["train_classifier_fold"] == jobs["predict_classifier"] == 2 * 2 * 5
    assert "results/models/classifier_cardiacnet_pah_synthetic_fold5" in result.stdout
    assert "resources/weights/kinetics_r3d.pt" in result.stdout
    assert paper["lvdm"]["samples"]["cardiacnet_utility"]["n_samples"] == 655


def test_paper_plan_is_sbatch_ready_with_the_slurm_profile(tmp_path):
    """`snakemake --profile profiles/slurm -n` with the paper config: every job that goes to
    SLURM has a runtime, memory, partition and account; GPU rules name their GPUs."""
    paper_data_folders(tmp_path)
    result = snakemake(
        "-n", "--profile", REPO / "profiles" / "slurm", "--configfile", PAPER_CONFIG,
        "--directory", tmp_path, "all",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    paper = yaml.safe_load(PAPER_CONFIG.read_text())
    jobs = planned_jobs(result.stdout)
    assert jobs["sample_lvdm"] == paper["lvdm"]["shards"] * len(paper["lvdm"]["samples"])
    assert jobs["summarize_datasets"] == 1
    assert jobs["train_vae"] == 1
    # One LIDM per dataset, its image set sharded, filtered before the LVDM animates it.
    lidms = len(paper["lvdm"]["lidms"])
    assert (jobs["train_lidm"], jobs["filter_lidm"]) == (lidms, lidms) == (4, 4)
    assert jobs["sample_lidm"] == paper["lvdm"]["shards"] * lidms
    assert all(sample["lidm"] for sample in paper["lvdm"]["samples"].values())
    blocks = [job for job in planned_job_blocks(result.stdout) if not job.local]
    # EchoDiffusion: one training job per stage (1SCM + 2SCM + 4SCM), each on a node.
    assert jobs["train_cascade_stage"] == 1 + 2 + 4
    assert jobs["assemble_cascade"] == len(paper["cascade"]["models"]) == 3
    assert "results/models/cascade_4SCM/stage_4" in result.stdout
    # Every VAL video, factual and counterfactual, in 8 single-GPU shards per dataset, and
    # the 4SCM re-balancing set in 8 more.
    modes = paper["cascade"]["samples"]["modes"]
    assert jobs["sample_cascade"] == (3 * len(modes) + 1) * paper["cascade"]["shards"] == 56
    assert "results/sample_shards/cascade_4SCM_balanced/8-of-8" in result.stdout
    # EchoDiffusion's regressors on composed rows: real + the set capped at 5 ... 100 per
    # bin or whole, and 5 random subsets of the real TRAIN videos.
    assert jobs["regressor_manifest"] == 6 + 5
    # D'ARTAGNAN: its expert (a regressor run), the generator on a node of 8 GPUs, and the
    # counterfactuals of every VAL and TEST clip in 8 single-GPU shards.
    assert "output: results/models/regressor_dartagnan_expert" in result.stdout
    assert jobs["train_dartagnan"] == len(paper["dartagnan"]["models"]) == 1
    assert jobs["sample_dartagnan"] == paper["dartagnan"]["shards"] == 8
    assert "results/sample_shards/dartagnan_reference_counterfactual/8-of-8" in result.stdout
    assert jobs["dartagnan_table"] == 1
    shards = [job.resources for job in blocks if job.rule == "sample_dartagnan"]
    assert len(shards) == 8 and all(shard["gpu"] == "1" for shard in shards)
    # cardiGAN: SPADE on cardiGAN's 2 GPUs with the downloaded VGG19, its TEST-mask images and
    # their metrics, its TRAIN-mask images, and the three segmenters of the experiment.
    assert jobs["train_cardigan"] == len(paper["cardigan"]["models"]) == 1
    spade = [job.resources for job in blocks if job.rule == "train_cardigan"]
    assert spade[0]["gpu"] == "2" and "resources/weights/vgg19_imagenet.pt" in result.stdout
    assert (jobs["sample_cardigan"], jobs["sample_cardigan_train"], jobs["score_cardigan"]) == (
        1, 1, 1
    )  # fmt: skip
    assert jobs["train_cardigan_segmenter"] == 3 and jobs["cardigan_segmentation_table"] == 1
    assert "output: results/metrics/cardigan_reference_test.txt" in result.stdout
    # RV failure: both streams pretrained on EchoNet-Dynamic's EF and flow, the fusion, its
    # predictions and the table, each on one GPU.
    assert jobs["pretrain_rvfailure_stream"] == 2 and jobs["train_rvfailure"] == 1
    assert jobs["predict_rvfailure"] == 1 and jobs["rvfailure_table"] == 1
    assert jobs["explain_rvfailure"] == 1
    # both guided backpropagations: captum on a GPU, the TF1 step on CPU in its own interpreter
    assert jobs["innvestigate_rvfailure"] == 1 and jobs["rvfailure_saliency_agreement"] == 1
    explain = {job.rule: job.resources for job in blocks if "rvfailure" in job.rule}
    assert explain["explain_rvfailure"]["gpu"] == "1"
    assert "gpu" not in explain["innvestigate_rvfailure"]
    assert ".venv-innvestigate/bin/python" in result.stdout
    assert "output: results/models/rvfailure_pretrain_flow" in result.stdout
    rv = [job.resources for job in blocks if job.rule.endswith("rvfailure_stream")]
    assert len(rv) == 2 and all((r["gpu"], r["gpu_model"]) == ("1", "a100") for r in rv)
    whole_node = {"train_vae", "train_lvdm", "train_cascade_stage", "train_dartagnan"}
    for train in [job.resources for job in blocks if job.rule in whole_node]:
        assert (train["gpu"], train["gpu_model"], train["slurm_partition"]) == ("8", "a100", "gpu")
    for train in [job.resources for job in blocks if job.rule in ("train_lidm", "train_privacy")]:
        assert train["gpu"] == "1"  # EchoNet-Synthetic trains these on one A100 each
    # One re-identification network per dataset a filter protects.
    imagenet = (
        "index.csv, resources/weights/resnet50_imagenet.pt\n    output: results/models/privacy_"
    )
    assert jobs["train_privacy"] == 4 and result.stdout.count(imagenet) == 4
    shards = [job.resources for job in blocks if job.rule == "sample_cascade"]
    assert len(shards) == 56 and all(shard["gpu"] == "1" for shard in shards)
    shards = [job.resources for job in blocks if job.rule == "sample_lvdm"]
    assert len(shards) == jobs["sample_lvdm"]
    assert all(shard["gpu"] == "1" and shard["gpu_model"] == "a100" for shard in shards)
    checked = 0
    for job in blocks:
        checked += 1
        for key in ["runtime", "mem_mb", "slurm_partition", "slurm_account"]:
            assert key in job.resources, (job.rule, key, job.resources)
        if "gpu" in job.resources:
            assert job.resources.get("gpu_model") == "a100", job
    assert checked > 300  # chunked data preparation, every shard, every table


def test_pretrained_vae_is_used_as_is(tmp_path):
    """`lvdm.vae.pretrained` names a diffusers folder: no VAE training is planned."""
    config = demo_config()
    (tmp_path / "published_vae").mkdir()
    config["lvdm"]["vae"]["pretrained"] = "published_vae"
    path = tmp_path / "pretrained.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(
        "-n", "--configfile", path, "--directory", tmp_path, "results/metrics/lvdm_dynamic.txt"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert "train_vae" not in jobs and jobs["encode_latents"] >= 1
    assert "input: resources/manifests/dynamic.csv, published_vae" in result.stdout


def test_released_lidm_lvdm_and_reidentification_weights_replace_training(tmp_path):
    """`pretrained` on an LIDM, an LVDM and a dataset's re-identification network plans the
    import rules in their place; the others still train."""
    config = demo_config()
    lvdm = config["lvdm"]
    for folder in ["released/lidm_dynamic/unet_ema", "released/lvdm/unet_ema"]:
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "released" / "reid_dynamic.pth").write_bytes(b"")
    lvdm["lidms"]["dynamic"]["pretrained"] = "released/lidm_dynamic/unet_ema"
    lvdm["models"]["ef"]["pretrained"] = "released/lvdm/unet_ema"
    lvdm["privacy"]["pretrained"] = {"dynamic": "released/reid_dynamic.pth"}
    path = tmp_path / "released.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "lvdm")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert (jobs["import_lidm"], jobs["import_lvdm"], jobs["import_privacy"]) == (1, 1, 1)
    assert jobs["train_lidm"] == len(lvdm["lidms"]) - 1
    assert jobs["train_lvdm"] == len(lvdm["models"]) - 1
    assert jobs["train_privacy"] == 3  # ped_a4c, ped_psax, cardiacnet
    assert "ped_psax/index.csv, released/lvdm/unet_ema\n    output: results/models/lvdm_ef" in (
        result.stdout
    )


def test_released_cascade_is_imported_instead_of_trained(tmp_path):
    """`cascade.models.<m>.pretrained` (an EchoDiffusionWeights folder) plans import_cascade
    in place of its stage trainings; its videos are sampled and scored like a trained one's."""
    config = demo_config()
    release = tmp_path / "EchoDiffusionWeights" / "1SCM_v2"
    release.mkdir(parents=True)
    for name in ("config.yaml", "merged.pt"):
        (release / name).write_bytes(b"")
    config["cascade"]["models"]["1SCM"]["pretrained"] = str(release)
    path = tmp_path / "released.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "cascade")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["import_cascade"] == 1 and jobs["assemble_cascade"] == 1
    assert jobs["train_cascade_stage"] == 4  # 4SCM's stages only
    assert "output: results/models/cascade_1SCM/cascade.json, results/models/cascade_1SCM/" in (
        result.stdout
    )
    # Factual and counterfactual of both cascades, and the 1SCM's re-balancing set.
    assert jobs["sample_cascade"] == 4 + 1 and jobs["cascade_table"] == 2
    # A release was trained on the window's frame: asking for another one is an error.
    config["cascade"]["models"]["1SCM"]["cond_frame"] = "end_diastole"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "cascade")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "imports released weights (pretrained)" in output and "Fix: drop cond_frame" in output


def test_synthetic_trained_regressor_plans_its_manifest_and_the_side_by_side_table(tmp_path):
    result = snakemake(
        "-n", "--configfile", DEMO_CONFIG, "--directory", tmp_path, "results/metrics/regressors.txt"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["synthetic_manifest"] == 2 and jobs["compare_regressors"] == 1
    assert jobs["train_regressor"] == 5 and jobs["evaluate_regressor"] == 5  # + the expert
    assert "input: results/samples/lvdm_dynamic/manifest.csv\n" in result.stdout
    # EchoDiffusion's runs train on composed rows: real + the re-balancing set, and a subset.
    assert jobs["regressor_manifest"] == 2
    composed = (
        "input: resources/manifests/dynamic.csv, results/samples/cascade_1SCM_balanced/"
        "manifest.csv\n    output: results/train_regressor/tiny_balanced_dynamic/manifest.csv"
    )
    assert composed in result.stdout
    assert "input: results/train_regressor/tiny_resampled_dynamic/manifest.csv" in result.stdout
    config = demo_config()
    config["regressors"]["runs"]["tiny_resampled_dynamic"]["with_real"] = True
    path = tmp_path / "alone.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "train_regressors")
    assert result.returncode != 0
    assert "tiny_resampled_dynamic.with_real is set but `synthetic` is not" in (
        result.stdout + result.stderr
    )
    config = demo_config()
    config["regressors"]["runs"]["tiny_synthetic_dynamic"]["synthetic"] = "lvdm_nowhere"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "train_regressors")
    assert result.returncode != 0
    assert "synthetic = 'lvdm_nowhere' is not a registered synthetic dataset" in (
        result.stdout + result.stderr
    )


def test_text_model_without_prompt_is_named(tmp_path):
    config = demo_config()
    del config["lvdm"]["models"]["text"]["prompt"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "lvdm")
    assert result.returncode != 0
    assert "lvdm.models.text is text-conditioned but has no text_encoder or prompt" in (
        result.stdout + result.stderr
    )


@pytest.mark.e2e  # two dry runs of the whole paper plan (~14 s): in CI, out of the edit loop
def test_configfile_replaces_the_demo_config_whatever_the_profile(tmp_path):
    """`--configfile config/paper.yaml` plans the paper alone even with no workflow profile
    (Snakemake would merge it into the Snakefile's demo config): no demo-only comparison or
    regressor run leaks in, and the plan equals the one under the default profile."""
    paper_data_folders(tmp_path)
    # Run where the Snakefile's `configfile: config/config.yaml` is found, as from a checkout.
    (tmp_path / "config").mkdir()
    shutil.copy(DEMO_CONFIG, tmp_path / "config" / "config.yaml")
    plans = {}
    for name, profile in [("none", ["--workflow-profile", "none"]), ("default", [])]:
        result = snakemake(
            "-n", *profile, "--configfile", PAPER_CONFIG, "--directory", tmp_path, "all"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "realcheck_dynamic_vs_ped_a4c" not in result.stdout  # demo-only comparison
        assert "regressor_tiny_dynamic" not in result.stdout  # demo-only regressor run
        plans[name] = planned_jobs(result.stdout)
    assert plans["none"] == plans["default"]


def test_an_inactive_system_adds_no_rules(tmp_path):
    """`lvdm.activate: false` (and the cascade's, D'ARTAGNAN's, cardiGAN's): rules/lvdm.smk is not
    included, so no LVDM job, no synthetic dataset and no summary table are planned; the
    other stages plan as before."""
    config = demo_config()
    config["lvdm"]["activate"] = False
    config["cascade"]["activate"] = False
    config["dartagnan"]["activate"] = False
    config["cardigan"]["activate"] = False
    config["rvfailure"]["activate"] = False
    del config["regressors"]["runs"]["tiny_synthetic_dynamic"]  # trains on an LVDM set
    del config["regressors"]["runs"]["tiny_balanced_dynamic"]  # and on a cascade set
    config["evaluation"]["ef_fidelity"]["datasets"] = []
    path = tmp_path / "no_lvdm.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "all")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert "train_regressor" in jobs and "ingest_dynamic" in jobs
    assert not {"train_vae", "train_lvdm", "sample_lvdm", "summarize_datasets"} & set(jobs)
    assert not {"train_cascade_stage", "sample_cascade", "train_dartagnan", "train_cardigan"} & set(
        jobs
    )
    assert not {"pretrain_rvfailure_stream", "train_rvfailure"} & set(jobs)
    listed = snakemake("--list-rules", "--configfile", path, "--directory", tmp_path)
    assert "train_lvdm" not in listed.stdout and "ingest_dynamic" in listed.stdout


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ef_fidelity", {"regressor": "tiny_dynamic", "datasets": ["lvdm_dynamc"]}, "lvdm_dynamc"),
        ("ef_fidelity", {"regressor": "nope", "datasets": ["lvdm_dynamic"]}, "'nope'"),
        ("classification", {"dataset": "cascade_dynamic"}, "cascade_dynamic"),
    ],
)
def test_evaluation_names_registered_datasets(tmp_path, key, value, message):
    """An `evaluation:` id that no active system registers stops the run naming the key."""
    config = demo_config()
    config["evaluation"][key] = {**config["evaluation"][key], **value}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "all")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"evaluation.{key}" in output and message in output


def test_jobs_import_the_checkouts_echogen(tmp_path):
    """A copy of the workflow runs its own echogen package, even when another copy of the
    package comes first on the Python path (an environment with echogen installed): the
    workflow puts the Snakefile's folder first on PYTHONPATH (rules/common.smk), so a
    per-rule conda environment needs only the dependencies and a second checkout never runs
    the first one's code. Each job's log names the package it imported."""
    copy, shadow = tmp_path / "copy", tmp_path / "shadow"
    copy_ignore = shutil.ignore_patterns("__pycache__")
    for part in ("Snakefile", "rules", "workflow_scripts", "echogen", "config", "docs", "envs"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=copy_ignore)
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy / part)
    shutil.copytree(REPO / "echogen", shadow / "echogen", ignore=copy_ignore)
    init = shadow / "echogen" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "shadow-'))
    work = tmp_path / "work"
    result = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", copy / "Snakefile", "--directory", work,
         "--configfile", copy / "config" / "config.yaml", "--cores", "1",
         "resources/weights/tiny/i3d.pt"],
        capture_output=True, text=True, timeout=600,
        env=runner_env(PYTHONPATH=str(shadow)),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (work / "logs" / "build_tiny_detector" / "i3d.log").read_text()
    assert f"from {copy / 'echogen'}" in log and "shadow" not in log


def test_a_missing_tf1_interpreter_leaves_the_tf1_step_out_with_advice(tmp_path):
    """Without the TF1 interpreter (and without --sdm conda) the plan leaves the innvestigate
    step out and says how to build it; everything else still plans."""
    config = yaml.safe_load((REPO / "tests/configs/rvfailure/config.yaml").read_text())
    config["rvfailure"].setdefault("innvestigate", {})["python"] = str(tmp_path / "no_python")
    path = tmp_path / "no_tf1.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, "all")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert "explain_rvfailure" in jobs and "innvestigate_rvfailure" not in jobs
    assert "bash envs/setup_innvestigate.sh" in result.stdout + result.stderr


def test_fusion_training_reads_test_for_pooled_statistics(tmp_path):
    """rvfailure.clips.stat_splits naming TEST (the reference's pooled z-score statistics)
    makes the TEST split csv an input of the fusion's training (by default it is not one:
    rv_train_inputs adds it only then)."""
    config = demo_config()
    config["rvfailure"]["clips"]["stat_splits"] = ["TRAIN", "TEST"]
    path = tmp_path / "stats.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "results/models/rvfailure_twostream"
    result = snakemake("-n", "--configfile", path, "--directory", tmp_path, target)
    assert result.returncode == 0, result.stderr[-3000:]
    block = result.stdout.split("rule train_rvfailure:", 1)[1]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    assert "resources/rvfailure/splits/val.csv" in inputs
    assert "resources/rvfailure/splits/test.csv" in inputs
