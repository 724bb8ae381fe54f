"""Test tiers and markers.

- A plain ``pytest`` is the fast tier, the loop one edits in: lint, unit tests on tiny
  models, the trainer contract, config checks and dry runs. It never installs packages or
  starts daemons; it deselects the tiers below.
- ``pytest -m e2e``: the demo end to end through Snakemake on CPU (tests/workflow/test_demo.py),
  and the tests that launch several training processes (tests/unit/test_distributed.py, the
  trainer contract's two-process case).
- ``pytest -m slurm``: through the one-node SLURM test cluster (tests/slurm; root + apt).
- ``pytest -m gpu``: needs CUDA (skipped without it).
- ``pytest --all-tiers``: every tier this machine can run, lint first, then fast, e2e and
  slurm (what ``.ci/run`` runs).
- ``slow`` tests are opt-in with ``--runslow`` in any tier.
"""

from __future__ import annotations

import pytest

# Tiers a plain `pytest` leaves out (select them with -m or --all-tiers).
OPT_IN_TIERS = ("e2e", "slurm")
# --all-tiers order: lint (fails fastest), the fast tier, then the opt-in tiers.
TIER_ORDER = ("lint", "fast", "e2e", "slurm")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: bitwise comparisons between runs (and the
    subprocesses they start with OMP_NUM_THREADS=1) need the same thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption(
        "--all-tiers",
        action="store_true",
        default=False,
        help="run every tier (lint, fast, e2e, slurm) in that order, as CI does",
    )


def tier(item) -> str:
    for name in ("lint", *OPT_IN_TIERS):
        if name in item.keywords:
            return name
    return "fast"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="gpu: needs CUDA")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)

    if config.getoption("--all-tiers"):
        items.sort(key=lambda item: TIER_ORDER.index(tier(item)))  # stable within a tier
    elif not config.getoption("markexpr"):
        kept = [item for item in items if tier(item) not in OPT_IN_TIERS]
        deselected = [item for item in items if tier(item) in OPT_IN_TIERS]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept
