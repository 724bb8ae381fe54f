"""docs/lvdm_reference.md's first table: every config/paper.yaml value it names is the file's."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _rows() -> list[list[str]]:
    text = (REPO / "docs" / "lvdm_reference.md").read_text()
    table = text.split("| behaviour | reference (code) |", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in table.splitlines()[2:] if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def test_the_documented_paper_values_are_the_paper_configs():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    rows = _rows()
    assert len(rows) >= 10
    for behaviour, _, key, value, _, _ in rows:
        key, value = key.strip("`"), yaml.safe_load(value.strip("`"))
        assert _lookup(paper, key) == value, f"{behaviour}: {key} is {_lookup(paper, key)!r}"


def test_the_utility_set_has_echonet_dynamics_split_sizes():
    """EchoNet-Synthetic trains its EF regressor on a synthetic twin of EchoNet-Dynamic:
    7,465 / 1,288 / 1,277 videos."""
    from echogen.pipelines.synthetic import split_counts

    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    utility = paper["lvdm"]["samples"]["dynamic_utility"]
    counts = split_counts(utility["n_samples"], utility["split"])
    assert counts == {"TRAIN": 7465, "VAL": 1288, "TEST": 1277}
    run = paper["regressors"]["runs"]["echonet_synthetic"]
    assert (run["synthetic"], run["dataset"]) == ("lvdm_dynamic_utility", "dynamic")
    # Its README trains EchoNet's regressor with --period 1 (EchoNet's default is 2).
    assert run["overrides"]["clips"]["period"] == 1 and run["preset"] == "echonet"
