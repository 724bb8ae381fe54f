"""Helpers of the SLURM tests: the test cluster, the merged test profile, runs and sacct rows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
USER_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
TEST_OVERRIDES = REPO / "tests" / "slurm" / "profile" / "config.yaml"
LOCAL_PROFILE = REPO / "profiles" / "ci"  # the reference runs: the test suite's local profile


def unavailable() -> str | None:
    """Why this machine cannot run the test cluster, or None when it can."""
    if sys.platform != "linux":
        return "the SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "the SLURM test cluster starts daemons as root (run the tests as root)"
    if not (shutil.which("sbatch") or shutil.which("apt-get")):
        return "the SLURM test cluster installs Debian's slurm packages with apt-get"
    return None


def cluster(action: str, timeout: int = 600) -> str:
    """Run ``tests/slurm/cluster.sh <action>``; raise with its output when it fails."""
    result = subprocess.run(
        ["timeout", "-k", "10", str(timeout), "bash", str(CLUSTER), action],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cluster.sh {action} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key (nested dicts merged, everything else replaced)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merged_profile(folder: Path, extra: dict | None = None) -> Path:
    """Write profiles/slurm with the test cluster's overrides (and ``extra``) merged in."""
    profile = yaml.safe_load(USER_PROFILE.read_text())
    profile = merge(profile, yaml.safe_load(TEST_OVERRIDES.read_text()))
    profile = merge(profile, extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def command(workdir: Path, profile: Path, *args, timeout: int = 900) -> list[str]:
    """A Snakemake call with ``profile``, killed after ``timeout`` s (a lost job must not hang
    CI). Targets go first in ``args``: --configfile and --resources take several values.
    """
    return [
        "timeout", "-k", "10", str(timeout), str(BIN / "snakemake"),
        "--snakefile", str(REPO / "Snakefile"), "--profile", str(profile),
        "--workflow-profile", "none", "--directory", str(workdir), *map(str, args),
    ]  # fmt: skip


def environment() -> dict:
    """The jobs run `python -m snakemake` from PATH: put this venv first."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(workdir: Path, profile: Path, *args, timeout: int = 900) -> subprocess.CompletedProcess:
    """Snakemake through SLURM (``profile`` from :func:`merged_profile`)."""
    return subprocess.run(
        command(workdir, profile, *args, timeout=timeout),
        capture_output=True,
        text=True,
        env=environment(),
    )


def start(workdir: Path, profile: Path, *args, log: Path, timeout: int = 900) -> subprocess.Popen:
    """:func:`run` in the background (its own session, so it can be killed as a group)."""
    with open(log, "w") as stream:
        return subprocess.Popen(
            command(workdir, profile, *args, timeout=timeout),
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=environment(),
            start_new_session=True,
        )


def now() -> str:
    """A sacct ``--starttime`` for jobs from now on."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))


SACCT_FIELDS = ["JobIDRaw", "JobName", "State", "AllocTRES", "Elapsed", "Timelimit"]


def sacct(since: str) -> dict[str, dict]:
    """Allocation rows (one per job, not its steps) of the jobs started since ``since``."""
    result = subprocess.run(
        [
            "sacct",
            "-X",
            "--parsable2",
            "--noheader",
            "--starttime",
            since,
            "--format",
            ",".join(SACCT_FIELDS),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [
        dict(zip(SACCT_FIELDS, line.split("|"), strict=True)) for line in result.stdout.splitlines()
    ]
    return {row["JobIDRaw"]: row for row in rows}


def job_rules(workdir: Path) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's job logs.

    They are .snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<job id>.log in the workdir.
    """
    jobs = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule = next(p for p in log.relative_to(workdir).parts if p.startswith("rule_"))
        jobs[log.stem] = rule.removeprefix("rule_")
    return jobs


def tres(row: dict) -> dict[str, str]:
    """AllocTRES as a dict: ``{'cpu': '2', 'mem': '2000M', 'gres/gpu:a100': '2', ...}``."""
    return dict(item.split("=", 1) for item in row["AllocTRES"].split(",") if "=" in item)


def minutes(limit: str) -> int:
    """sacct's Timelimit ('02:00:00', '1-00:00:00') in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, mins, _ = clock.split(":")
    return (int(days or 0) * 24 + int(hours)) * 60 + int(mins)


def run_id(log: str) -> str:
    """The ``SLURM run ID`` a Snakemake run prints at its start (every job's --job-name)."""
    return re.search(r"SLURM run ID: (\S+)", log).group(1)
