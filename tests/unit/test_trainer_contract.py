"""The trainer contract, written once and run over every task of the engine.

For each case of ``tests/trainer_cases.py``: a run killed with SIGKILL mid-training and run
again exports bitwise the weights, log and ``train.json`` of an uninterrupted run; so does a
run whose budget was cut and then raised; a state saved with other settings is refused with
the differing keys named; two processes finish the same budget; the export loads through
``from_pretrained`` with the weights it saved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from trainer_cases import CASES

from echogen.training.state import checkpoints
from echogen.workflow import run_distributed

SEED = 4
pytestmark = pytest.mark.usefixtures("one_torch_thread")
THREADS = 1  # every run (and the killed subprocess) uses the same count: bitwise comparisons


@pytest.fixture(scope="module")
def built(one_torch_thread, tmp_path_factory) -> dict[str, dict]:
    """Every case's data and uninterrupted reference run."""
    runs = {}
    for spec in CASES:
        base = tmp_path_factory.mktemp(spec.name)
        data = spec.make_data(base / "data")
        out, state = base / "reference" / "out", base / "reference" / "state"
        summary = spec.call(spec.kwargs(data, out, state, SEED))
        runs[spec.name] = {"spec": spec, "data": data, "out": out, "state": state}
        runs[spec.name]["summary"] = summary
    return runs


@pytest.fixture(params=[c.name for c in CASES])
def case(request, built) -> dict:
    """One case, its data and its reference run."""
    return built[request.param]


@pytest.fixture(scope="module")
def two_processes(built, tmp_path_factory) -> dict[str, Path]:
    """Every case trained by 2 gloo processes (the global batch kept), all in one launch."""
    base = tmp_path_factory.mktemp("two_processes")
    jobs, outs = [], {}
    for name, run in built.items():
        spec, outs[name] = run["spec"], base / name / "out"
        kwargs = spec.kwargs(
            run["data"], outs[name], base / name / "state", SEED, **spec.two_process
        )
        jobs.append({"target": spec.entry, "kwargs": kwargs})
    tests = str(Path(__file__).resolve().parents[1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
        )
        run_distributed("trainer_cases:run_jobs", {"jobs": jobs}, 2, "cpu")
    return outs


def files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def assert_same_export(out: Path, expected: Path) -> None:
    """Every exported file byte for byte (weights, config, train.json, log.csv, ...)."""
    assert files(out) == files(expected)
    for name in files(expected):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name


def test_reference_run_trains_its_budget_and_exports(case):
    spec, out = case["spec"], case["out"]
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == spec.total and info.get("steps_per_epoch") == spec.steps_per_epoch
    assert info["seed"] == SEED and info["num_processes"] == 1
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == spec.log_steps(spec.total)
    if spec.steps_per_epoch is not None:
        assert log["epoch"].tolist() == list(range(spec.overrides["train"]["epochs"]))
    assert log.notna().all().all()
    limit = spec.overrides["train"]["checkpoints_total_limit"]
    assert len(checkpoints(case["state"])) == limit
    assert checkpoints(case["state"])[-1].name == f"checkpoint_{spec.total:08d}"


def test_export_round_trips_through_from_pretrained(case):
    model = case["spec"].load(case["out"])
    saved = load_file(case["out"] / case["spec"].weights)
    state = model.state_dict()
    assert saved.keys() == state.keys()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_budget_cut_then_rerun_equals_uninterrupted(case, tmp_path):
    spec, data = case["spec"], case["data"]
    out, state = tmp_path / "out", tmp_path / "state"
    first = spec.call(spec.kwargs(data, out, state, SEED, max_steps=spec.cut))
    assert first["steps"] == spec.cut and first["resumed_from"] is None
    # The cut run exported a partial last row (epoch or log window).
    assert pd.read_csv(out / "log.csv")["step"].tolist() == spec.log_steps(spec.cut)

    second = spec.call(spec.kwargs(data, out, state, SEED))
    assert second["resumed_from"] == spec.cut
    assert_same_export(out, case["out"])
    # A finished run started again resumes at its end and exports the same model.
    third = spec.call(spec.kwargs(data, out, state, SEED))
    assert third["resumed_from"] == spec.total
    assert_same_export(out, case["out"])


# A killed subprocess per case (each pays an interpreter and library start-up, 7-12 s): in CI's
# e2e tier; the fast tier keeps the in-process cut-and-resume test below and above.
@pytest.mark.e2e
def test_sigkill_then_rerun_equals_uninterrupted(case, tmp_path):
    spec, data = case["spec"], case["data"]
    out, state = tmp_path / "out", tmp_path / "state"
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps({"target": spec.entry, "kwargs": spec.kwargs(data, out, state, SEED)})
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        command = [sys.executable, "-m", "echogen.launch", str(job)]
        process = subprocess.Popen(command, env=env, stderr=stderr)
        deadline = time.monotonic() + 120
        while not checkpoints(state) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    # Killed, not finished or crashed: the rerun below really starts from a mid-run state.
    assert process.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()[-2000:]
    killed_at = int(checkpoints(state)[-1].name.split("_")[1])
    assert 0 < killed_at < spec.total
    assert not out.exists()

    summary = spec.call(spec.kwargs(data, out, state, SEED))
    assert summary["resumed_from"] == killed_at
    assert not list(state.glob(".checkpoint_*"))
    assert_same_export(out, case["out"])


def test_resume_refuses_other_settings_naming_them(case, tmp_path):
    spec = case["spec"]
    state = tmp_path / "state"
    shutil.copytree(case["state"], state)
    kwargs = spec.kwargs(case["data"], tmp_path / "out", state, SEED, **spec.changed)
    with pytest.raises(ValueError, match="other settings") as error:
        spec.call(kwargs)
    assert "train: saved" in str(error.value) and f"delete {state}" in str(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e  # one 2-process launch of every case (~25 s): in CI, out of the edit loop
def test_two_processes_train_the_budget(case, two_processes):
    """The rule's multi-GPU path (2 gloo processes, the global batch kept): the same step
    budget and log rows as one process, finite values, one export of the same tensors."""
    spec, out = case["spec"], two_processes[case["spec"].name]
    info = json.loads((out / "train.json").read_text())
    assert info["num_processes"] == 2 and info["steps"] == spec.total
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == spec.log_steps(spec.total) and log.notna().all().all()
    weights = [load_file(folder / spec.weights) for folder in (out, case["out"])]
    assert set(weights[0]) == set(weights[1])
