"""Each system's test config, ``tests/configs/<system>/config.yaml`` (the snakemake-workflows
``.test/`` idea): the fast tier plans it, the e2e tier runs it end to end on CPU.

A test config activates one system alone, on a small phantom, so it also shows that the
system plugs in without the others: its datasets are registered, gathered, evaluated and
summarised by the shared rules.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from snakemake_plan import planned_jobs
from workflow_helpers import REPO, snakemake

SYSTEMS = ("lvdm", "cascade", "dartagnan", "rvfailure", "cardigan")
# Systems that generate nothing (analysis only): their own jobs and outputs are checked instead
# of the shared evaluation of synthetic datasets.
ANALYSIS = {
    "rvfailure": {
        "jobs": {"pretrain_rvfailure_stream", "train_rvfailure", "predict_rvfailure",
                 "explain_rvfailure", "rvfailure_table"},
        "outputs": ["results/metrics/rvfailure.txt", "results/metrics/rvfailure.json",
                    "results/metrics/rvfailure_twostream_predictions.csv",
                    "results/saliency/rvfailure_twostream/index.csv",
                    "results/report/rvfailure_twostream_saliency.gif"],
    },
}  # fmt: skip
# The TF1 step runs where its interpreter is (envs/setup.sh builds it from a Python 3.6; CI
# has one); elsewhere the workflow leaves it out with a warning.
if (REPO / ".venv-innvestigate" / "bin" / "python").is_file():
    ANALYSIS["rvfailure"]["jobs"] |= {"innvestigate_rvfailure", "rvfailure_saliency_agreement"}
    ANALYSIS["rvfailure"]["outputs"] += [
        "results/saliency/rvfailure_twostream_innvestigate/model.h5",
        "results/metrics/rvfailure_twostream_saliency_agreement.json",
        "results/report/rvfailure_twostream_saliency_innvestigate.gif",
    ]
CONFIGS = sorted((REPO / "tests" / "configs").glob("*/config.yaml"))
IDS = [path.parent.name for path in CONFIGS]


def active_systems(config: dict) -> list[str]:
    return [s for s in SYSTEMS if s in config and config[s].get("activate", True)]


def test_every_test_config_is_a_system():
    assert "lvdm" in IDS
    for path in CONFIGS:
        assert path.parent.name in SYSTEMS, path


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_system_test_config_plans(tmp_path, config):
    system = config.parent.name
    assert active_systems(yaml.safe_load(config.read_text())) == [system]
    result = snakemake("-n", "--configfile", config, "--directory", tmp_path, "all")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    if system in ANALYSIS:
        assert ANALYSIS[system]["jobs"] <= set(jobs)
        return
    assert {"gather_samples", "compute_generation_metrics", "summarize_datasets"} <= set(jobs)


@pytest.mark.e2e
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_system_end_to_end(tmp_path, config):
    """The system alone, end to end: every registered dataset has its gathered folder, its
    metric table and a summary row; a second run has nothing to do."""
    system = config.parent.name
    args = ["--profile", REPO / "profiles" / "ci", "--configfile", config, "--directory", tmp_path]
    result = snakemake(*args, "all")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    if system in ANALYSIS:
        for output in ANALYSIS[system]["outputs"]:
            assert (tmp_path / output).stat().st_size > 0, output
        again = snakemake(*args, "-n", "all")
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
        return
    summary = json.loads((tmp_path / "results/metrics/summary.json").read_text())
    rows = summary["rows"]
    assert rows and all(row["system"] == system for row in rows)
    for row in rows:
        dataset = row["dataset"]
        filelist = (tmp_path / f"results/samples/{dataset}/FileList.csv").read_text()
        assert filelist.startswith("FileName,EF,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split")
        table = (tmp_path / f"results/metrics/{dataset}.txt").read_text()
        assert "real reference: policy " in table
    if system == "lvdm":  # its test config builds the reference as EchoNet-Synthetic does
        index = pd.read_csv(tmp_path / "resources/reference_frames/dynamic_16f.csv")
        assert set(index["policy"]) == {"echonet_synthetic"} and (index["start"] == 0).all()
    if system == "dartagnan":  # its config scores the 16-px generator at score_size 32
        scores = pd.read_csv(tmp_path / "results/metrics/dartagnan_tiny_counterfactual_scores.csv")
        assert (scores["size"] == 32).all()
    again = snakemake(*args, "-n", "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
