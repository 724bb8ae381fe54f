"""Shared by the effect benches: run the workflow on the CPU with the demo config plus an
overlay, and read a value out of a metric record."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_workflow(out: Path, overlay: Path, targets: list[str], extra: tuple = ()) -> float:
    """Build ``targets`` in ``out`` with ``config/config.yaml`` plus ``overlay`` (then the
    ``extra`` config files, merged in order) on 2 threads; returns the wall time (s)."""
    env = dict(os.environ)
    env["PATH"] = f"{REPO}/tests/workflow/no_slurm:{REPO}/.venv/bin:{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    command = [
        str(REPO / ".venv/bin/snakemake"),
        "--snakefile", str(REPO / "Snakefile"),
        "--profile", str(REPO / "profiles/ci"),
        "--max-threads", "2",
        "--configfile", str(REPO / "config/config.yaml"), str(overlay), *map(str, extra),
        "--directory", str(out),
        *targets,
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    return time.perf_counter() - start


def metric_value(record: dict, metric: str) -> float:
    """``record[metric]["value"]`` of an ``ef_report``-style record, as a float."""
    return float(record[metric]["value"])


def fvd_ordering(out: Path, real: Path, dataset: str, seed: int) -> bool:
    """Print FID and FVD16 of real half vs real half, ``dataset``'s samples and uniform noise,
    each against ``real`` (tiny random detectors: an ordering check); True when FVD16 orders
    real half < generated < noise."""
    from lvdm_demo_fidelity import distance_rows

    rows = distance_rows(out, real, dataset, seed)
    print("\n## FID / FVD16 against real TRAIN (tiny random detectors: a plumbing-level check)")
    print(f"{'comparison':26s} {'FID':>10s} {'FVD16':>10s}")
    for name, values in rows.items():
        print(f"{name:26s} {values['fid50k_full']:10.3f} {values['fvd2048_16f']:10.3f}")
    fvd = [v["fvd2048_16f"] for v in rows.values()]
    met = fvd[0] < fvd[1] < fvd[2]
    print(f"target FVD16 real half < generated < noise: {'met' if met else 'MISSED'}")
    return met


def bench_main(doc: str, overlay: Path, targets: list[str], report) -> None:
    """The command line of an effect bench: ``--out DIR`` runs the workflow with ``overlay``
    into DIR (``--report-only`` reads an existing run), then prints ``report(out)``'s
    targets as met or MISSED."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true", help="read an existing run")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="a config file merged after the overlay (repeatable)")  # fmt: skip
    args = parser.parse_args()
    out = args.out.resolve()
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
        wall = run_workflow(out, overlay, targets, tuple(args.extra))
        print(f"workflow wall time {wall / 60:.1f} min on {os.cpu_count()} CPUs")
    results = report(out)
    print("\n" + ", ".join(f"{p}: {'met' if ok else 'MISSED'}" for p, ok in results.items()))
