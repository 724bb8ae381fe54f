"""Helpers shared by the workflow scripts: logging into the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path) -> None:
    """Send logging records and stderr (tqdm progress bars, warnings) to the rule's log file.

    Also echoes records to the original stderr, so a local run shows them in the terminal.
    The first record names the echogen package the job imported.
    """
    import gc

    # Every rule script calls this right after its imports: move the imported modules'
    # objects (torch, diffusers: millions) out of the collector's reach. They live as long as
    # the process anyway; the collections during the job and the one at exit then skip them
    # (about half a second per job on 2 cores, times the demo's two hundred jobs).
    gc.freeze()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    console = sys.__stderr__
    sys.stderr = stream
    handlers = [logging.StreamHandler(stream), logging.StreamHandler(console)]
    logging.basicConfig(
        level=logging.INFO,
        format=LOG_FORMAT,
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    import echogen

    # Which code ran: the checkout the workflow put first on PYTHONPATH (rules/common.smk).
    logging.getLogger("echogen").info(
        "echogen %s from %s", echogen.__version__, Path(echogen.__file__).parent
    )


def pick_device(gpus: int = 0) -> str:
    """``"cuda"`` when the rule was given GPUs and CUDA is present, else ``"cpu"``."""
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def provenance(config: dict | None = None, device: str = "cpu", **extra) -> dict:
    """Facts that make an output reproducible: echogen git SHA, library versions, device.

    ``config`` is the resolved config subtree the rule used; ``extra`` adds fields (seed, step).
    """
    import platform
    import subprocess

    import accelerate
    import diffusers
    import torch

    import echogen

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(echogen.__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    return {
        "echogen_version": getattr(echogen, "__version__", "unknown"),
        "echogen_git_sha": sha,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "device": device,
        "config": config or {},
        **extra,
    }


def distributed_processes(gpus: int, device: str) -> int:
    """Processes a training rule with ``gpus`` GPUs runs: one per GPU it can use.

    On CUDA that is the GPUs both declared and visible. Without CUDA (a laptop, or the test
    cluster's fake GPUs) a rule declaring N > 1 GPUs still runs N CPU processes, so the
    data-parallel path is the one that runs (a local run and a cluster run of the same config
    then split their batches alike).
    """
    import torch

    if device == "cuda":
        return max(1, min(gpus, torch.cuda.device_count()))
    return max(1, gpus)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now (two training jobs on one node must not share 29500)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Thread-count variables Snakemake sets to a job's threads; every one must be shared out
# between the processes (MKL_NUM_THREADS=2 in two processes on two cores made steps 5x slower).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def thread_env(threads: int) -> dict:
    """This environment with every thread-count variable set to ``threads``."""
    import os

    return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(threads))}


def run_distributed(target: str, kwargs: dict, gpus: int = 0, device: str = "cpu") -> None:
    """Call ``"module:function"(**kwargs)``, on one process per GPU when a rule has several.

    A training rule with N > 1 GPUs runs the function under ``accelerate launch --multi_gpu
    --num_processes N`` (torchrun; data-parallel, NCCL on CUDA, gloo on CPU; the trainers
    split every global batch across processes); otherwise it runs in this process.
    ``kwargs`` must be JSON-able. See :func:`distributed_processes`.
    """
    import importlib
    import json
    import os
    import subprocess
    import tempfile

    import torch

    processes = distributed_processes(gpus, device)
    if processes <= 1:
        module, name = target.split(":")
        getattr(importlib.import_module(module), name)(**kwargs)
        return
    # The rule's threads, shared by its processes (oversubscribed OpenMP is many times slower).
    threads = max(1, torch.get_num_threads() // processes)
    fd, path = tempfile.mkstemp(prefix="echogen-launch-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump({"target": target, "kwargs": kwargs}, handle)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--num_cpu_threads_per_process",
        str(threads),
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "echogen.launch",
        path,
    ]
    logging.getLogger(__name__).info("launching %s", " ".join(command))
    try:  # the processes write into the rule's log (setup_logging made it sys.stderr)
        stream = sys.stderr if _has_fileno(sys.stderr) else None
        subprocess.run(command, check=True, stdout=stream, stderr=stream, env=thread_env(threads))
    finally:
        os.unlink(path)


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
