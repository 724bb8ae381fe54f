"""Parsers of Snakemake's printed plans, shared by tests/workflow and tests/slurm.

``tests/`` is on ``sys.path`` because tests/conftest.py lives there (pytest's default
"prepend" import mode), so test modules import this as ``snakemake_plan``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

JOB_BLOCK = re.compile(r"\n(local)?rule (\w+):\n((?:    .*\n)+)")


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table of a run's or dry run's output."""
    jobs = {}
    for line in output.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    local: bool
    threads: int
    resources: dict[str, str]  # as printed: "mem_mb=2000, gpu=1" -> {"mem_mb": "2000", "gpu": "1"}

    @property
    def cpus(self) -> str:
        """What sbatch should get: ``cpus_per_task`` if the profile sets it, else the threads."""
        return self.resources.get("cpus_per_task", str(self.threads))


def planned_job_blocks(output: str) -> list[PlannedJob]:
    """Every job block ("rule x:" / "localrule x:" with its indented fields) of a dry run."""
    jobs = []
    for match in JOB_BLOCK.finditer(output):
        local, rule, body = match.groups()
        fields = dict(
            line.strip().split(": ", 1) for line in body.splitlines() if ": " in line.strip()
        )
        items = fields.get("resources", "").split(", ")
        resources = dict(item.split("=", 1) for item in items if "=" in item)
        jobs.append(PlannedJob(rule, bool(local), int(fields.get("threads", 1)), resources))
    return jobs
