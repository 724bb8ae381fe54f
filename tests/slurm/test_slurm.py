"""The workflow through a real one-node SLURM cluster (tests/slurm/cluster.sh).

One slice of the workflow (slice_config.py: phantom, ingest, reference frames, VAE and LVDM
training on 2 fake GPUs each, 2 sampling shards, one FVD table) goes through sbatch with the
users' profile (profiles/slurm) plus the test cluster's overrides (tests/slurm/profile). The
first run is cancelled while the VAE trains and then re-run; a local run of the same config
is the reference. Then the faults: a training job over its time limit, and a bad input.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from math import ceil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from harness import (
    LOCAL_PROFILE,
    cluster,
    job_rules,
    merged_profile,
    minutes,
    now,
    run,
    run_id,
    sacct,
    start,
    tres,
    unavailable,
)
from slice_config import TARGET, TRAIN_GPUS, slice_config
from snakemake_plan import planned_job_blocks, planned_jobs

from echogen.training.state import checkpoints
from echogen.workflow import run_distributed

pytestmark = pytest.mark.slurm

SLURM_RULES = {  # the slice's jobs that go to SLURM (the others are local rules)
    "make_phantom",
    "ingest_dynamic",
    "extract_reference_frames",
    "train_vae",
    "encode_latents",
    "train_lvdm",
    "sample_lvdm",
    "compute_generation_metrics",
}
DONE_BEFORE_CANCEL = {"make_phantom", "ingest_dynamic", "extract_reference_frames"}
RERUN = {  # the jobs still missing when the first run was cancelled
    "train_vae",
    "encode_latents",
    "gather_latents",
    "train_lvdm",
    "sample_lvdm",
    "gather_samples",
    "compute_generation_metrics",
}
GPU_RULES = {
    "train_vae",
    "encode_latents",
    "train_lvdm",
    "sample_lvdm",
    "compute_generation_metrics",
}
TRAINING_RULES = {"train_vae": "results/models/vae", "train_lvdm": "results/models/lvdm_ef"}


def output(result) -> str:
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def slurm():
    """The test cluster, up; stopped afterwards only if this session started it."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    was_up = subprocess.run(["bash", str(Path(__file__).parent / "cluster.sh"), "status"],
                            capture_output=True).returncode == 0  # fmt: skip
    cluster("up")
    yield
    if not was_up:
        cluster("down")


def wait_for_running(rule: str, deadline: float) -> str:
    """The id of a RUNNING job of ``rule`` (the plugin's --comment: rule_<rule>[_wildcards_…])."""
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True
        ).stdout
        for line in queue.splitlines():
            job, state, comment = line.split("|", 2)
            if comment.split("_wildcards_")[0] == f"rule_{rule}" and state == "RUNNING":
                return job
        time.sleep(0.5)
    raise AssertionError(f"no {rule} job ran under SLURM in time")


@pytest.fixture(scope="module")
def slice_runs(slurm, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(slice_config()))
    profile = merged_profile(root / "profile")
    work = root / "slurm"
    since = now()

    # The plan: what each rule declares (a dry run prints every job's resources).
    plan = run(work, profile, TARGET, "--configfile", config, "-n")
    assert plan.returncode == 0, output(plan)[-6000:]

    # The reference, in the background: the same config run locally, with room for the 2-GPU
    # training rules and the threads the SLURM jobs get.
    reference = root / "local"
    reference_run = start(
        reference, LOCAL_PROFILE, TARGET, "--configfile", config,
        "--resources", f"gpu={TRAIN_GPUS}", "--max-threads", "2", log=root / "local.txt",
    )  # fmt: skip

    try:
        # 1. A run cancelled while the VAE trains: Snakemake dies (a lost login session) and its
        #    jobs are cancelled with `scancel --name <run id>`, as the README tells users.
        process = start(work, profile, TARGET, "--configfile", config, log=root / "cancelled.txt")
        try:
            deadline = time.monotonic() + 600
            cancelled_job = wait_for_running("train_vae", deadline)
            while "(Rule: extract_reference_frames)" not in (root / "cancelled.txt").read_text():
                assert time.monotonic() < deadline, "extract_reference_frames did not finish"
                time.sleep(0.5)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        cancelled_id = run_id((root / "cancelled.txt").read_text())
        subprocess.run(["scancel", "--name", cancelled_id], check=True)
        unlock = run(work, profile, "--unlock", "--configfile", config)
        assert unlock.returncode == 0, output(unlock)[-3000:]
        done = ["resources/manifests/dynamic.csv", "resources/reference_frames/dynamic_16f.csv"]
        kept = {work / path: (work / path).stat().st_mtime_ns for path in done}

        # 2. The re-run, to the end.
        rerun = run(work, profile, TARGET, "--configfile", config)
        assert rerun.returncode == 0, output(rerun)[-6000:]
        assert reference_run.wait(timeout=900) == 0, (root / "local.txt").read_text()[-6000:]
    finally:  # a failed fixture must not leave the reference running
        if reference_run.poll() is None:
            os.killpg(reference_run.pid, signal.SIGKILL)
    return SimpleNamespace(
        root=root, config=config, profile=profile, work=work, since=since,
        cancelled=process.returncode, cancelled_job=cancelled_job, run_id=cancelled_id,
        cancelled_log=(root / "cancelled.txt").read_text(), kept=kept,
        rerun=output(rerun), plan=output(plan), reference=reference,
    )  # fmt: skip


def test_no_daemon_holds_the_cluster_lock(slurm):
    """`up` holds /run/echogen-slurm.lock; a daemon inheriting it makes `down` wait 180 s."""
    lock = "/run/echogen-slurm.lock"
    holders = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == lock:
                holders.append(fd.parts[2])
        except OSError:  # the process or fd went away while we looked
            continue
    names = {pid: Path(f"/proc/{pid}/comm").read_text().strip() for pid in holders
             if Path(f"/proc/{pid}/comm").exists()}  # fmt: skip
    assert not names, f"processes holding {lock}: {names}"


def test_cancelled_run_then_rerun_recomputes_only_what_is_missing(slice_runs):
    assert slice_runs.cancelled != 0, slice_runs.cancelled_log[-3000:]
    assert sacct(slice_runs.since)[slice_runs.cancelled_job]["State"].startswith("CANCELLED")
    assert set(planned_jobs(slice_runs.rerun)) == RERUN, planned_jobs(slice_runs.rerun)
    for path, mtime in slice_runs.kept.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was recomputed"


def test_every_job_ran_under_slurm_with_its_declared_resources(slice_runs):
    rows = sacct(slice_runs.since)
    jobs = job_rules(slice_runs.work)
    declared = {job.rule: job for job in planned_job_blocks(slice_runs.plan)}
    first = {rule for job, rule in jobs.items() if rows[job]["JobName"] == slice_runs.run_id}
    second = {rule for job, rule in jobs.items() if rows[job]["JobName"] != slice_runs.run_id}
    assert first == DONE_BEFORE_CANCEL | {"train_vae"}
    assert second == SLURM_RULES - DONE_BEFORE_CANCEL
    for job, rule in jobs.items():
        row = rows[job]
        expected = "CANCELLED" if job == slice_runs.cancelled_job else "COMPLETED"
        assert row["State"].split()[0] == expected, (rule, row)
        alloc, plan = tres(row), declared[rule]
        assert alloc["mem"] == f"{plan.resources['mem_mb']}M", (rule, alloc, plan)
        assert alloc["cpu"] == plan.cpus, (rule, alloc, plan)
        assert minutes(row["Timelimit"]) == int(plan.resources["runtime"]), (rule, row, plan)
        if rule in GPU_RULES:
            gpus = TRAIN_GPUS if rule in TRAINING_RULES else 1
            assert alloc.get("gres/gpu:a100") == str(gpus), (rule, alloc)
        else:
            assert "gres/gpu" not in alloc, (rule, alloc)


def test_training_rules_ran_one_process_per_gpu(slice_runs):
    for rule, model in TRAINING_RULES.items():
        record = json.loads((slice_runs.work / model / "train.json").read_text())
        assert record["num_processes"] == TRAIN_GPUS, rule
        log = (
            slice_runs.work / "logs" / rule / f"{Path(model).name.removeprefix('lvdm_')}.log"
        ).read_text()
        assert f"--num_processes {TRAIN_GPUS}" in log, rule


def test_outputs_equal_a_local_run(slice_runs):
    a, b = slice_runs.work, slice_runs.reference
    for folder in [
        "resources/manifests",
        "resources/reference_frames",
        "resources/latents",
        "results/models/vae",
        "results/models/lvdm_ef",
        "results/samples/lvdm_dynamic",
        "results/metrics",
    ]:
        files = sorted(p.relative_to(a) for p in (a / folder).rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in (b / folder).rglob("*") if p.is_file())
        differ = [str(p) for p in files if (a / p).read_bytes() != (b / p).read_bytes()]
        # sampling.json records how long sampling took (the summary's seconds per video):
        # equal apart from that.
        timed = [str(p) for p in files if p.name == "sampling.json"]
        assert [p for p in differ if p not in timed] == []
        for name in timed:
            records = [json.loads((root / name).read_text()) for root in (a, b)]
            assert all(r.pop("timing")["videos"] > 0 for r in records), name
            assert records[0] == records[1], name


def seconds_per_step(work: Path, folder: Path) -> float:
    """Seconds per step of the slice's LVDM training on 2 processes, on this machine now:
    the spacing of the checkpoints of steps 10 and 30 of a local 30-step run."""
    model = slice_config()["lvdm"]["models"]["ef"]
    model["train"] = {"max_steps": 30, "checkpoint_every": 10, "checkpoints_total_limit": 3}
    kwargs = {
        "latent_indexes": [str(work / "resources/latents/dynamic/index.csv")],
        "out_dir": str(folder / "model"), "state_dir": str(folder / "state"),
        "model": model, "seed": 0, "device": "cpu", "root": str(work),
    }  # fmt: skip
    run_distributed("echogen.training.lvdm:train_lvdm_from_config", kwargs, TRAIN_GPUS, "cpu")
    saved = {int(p.name.split("_")[1]): p.stat().st_mtime for p in checkpoints(folder / "state")}
    return (saved[30] - saved[10]) / 20


def test_training_killed_at_its_time_limit_is_retried_and_resumes_to_the_budget(slice_runs):
    """The first attempt gets 1 minute, the retry 10; the budget needs ~100 s of training.

    SLURM checks time limits every 30 s, so a 1-minute job ends 60-92 s after it starts, of
    which ~20 s are start-up: the budget is sized from a step time measured just before.
    """
    work = slice_runs.work
    per_step = seconds_per_step(work, slice_runs.root / "calibration")
    budget = ceil(100 / per_step)
    config = slice_runs.root / "long.yaml"
    config.write_text(
        yaml.safe_dump(slice_config(lvdm_steps=budget, checkpoint_every=max(1, budget // 20)))
    )
    profile = merged_profile(
        slice_runs.root / "profile_timeout",
        {"set-resources": {"train_lvdm": {"runtime": "1 if attempt == 1 else 10"}}},
    )
    since = now()
    result = run(work, profile, TRAINING_RULES["train_lvdm"], "--configfile", config)
    assert result.returncode == 0, output(result)[-6000:]
    rows, rules = sacct(since), job_rules(work)
    jobs = sorted((int(job), row) for job, row in rows.items() if rules.get(job) == "train_lvdm")
    assert [row["State"] for _, row in jobs] == ["TIMEOUT", "COMPLETED"], jobs
    assert [row["Timelimit"] for _, row in jobs] == ["00:01:00", "00:10:00"]
    record = json.loads((work / TRAINING_RULES["train_lvdm"] / "train.json").read_text())
    assert record["steps"] == budget
    assert "resum" in (work / "logs" / "train_lvdm" / "ef.log").read_text().lower()


def test_bad_input_fails_naming_the_log_and_the_reason(slice_runs):
    root = slice_runs.root / "bad"
    data = root / "data" / "dynamic"
    shutil.copytree(slice_runs.work / "resources" / "phantom" / "dynamic", data)
    filelist = pd.read_csv(data / "FileList.csv")
    name = filelist.loc[1, "FileName"]
    filelist.loc[1, "EF"] = np.nan
    filelist.to_csv(data / "FileList.csv", index=False)
    config = slice_config()
    config["datasets"]["dynamic"]["root"] = "data/dynamic"
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    # A bad input fails every attempt alike: one attempt is enough to see the message.
    profile = merged_profile(root / "profile", {"retries": 0})
    since = now()
    result = run(
        root,
        profile,
        "resources/manifests/dynamic.csv",
        "--configfile",
        root / "config.yaml",
    )
    assert result.returncode != 0
    text = output(result)
    assert "logs/ingest_dynamic" in text, text[-4000:]
    assert f"EF of {name!r} is nan, expected a number in [0, 100]" in text, text[-4000:]
    assert not (root / "resources" / "manifests" / "dynamic.csv").exists()
    rules = job_rules(root)
    states = {row["State"] for job, row in sacct(since).items() if job in rules}
    assert states == {"FAILED"}


def test_ctrl_c_cancels_the_running_jobs_and_releases_the_lock(slurm, tmp_path):
    """One SIGINT to Snakemake (Ctrl-C in its terminal) scancels its jobs and leaves no lock,
    so the same command runs again without --unlock."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(slice_config()))
    since = now()
    process = start(
        tmp_path, merged_profile(tmp_path / "profile"), "resources/phantom/dynamic",
        "--configfile", tmp_path / "config.yaml", log=tmp_path / "run.txt",
    )  # fmt: skip
    try:
        job = wait_for_running("make_phantom", time.monotonic() + 120)
        # `timeout` runs Snakemake as its child; a terminal's Ctrl-C reaches Snakemake once.
        snakemake = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
        ).stdout.split()[0]
        os.kill(int(snakemake), signal.SIGINT)
        returncode = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    log = (tmp_path / "run.txt").read_text()
    assert returncode != 0 and "Terminating processes on user request" in log, log[-3000:]
    assert sacct(since)[job]["State"].startswith("CANCELLED"), sacct(since)[job]
    queue = subprocess.run(["squeue", "-h", "-n", run_id(log)], capture_output=True, text=True)
    assert queue.stdout.strip() == "", queue.stdout
    assert not list((tmp_path / ".snakemake" / "locks").glob("*"))
