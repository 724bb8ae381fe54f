"""The one training loop: a task supplies the modelling, the engine everything else.

Every echogen trainer is the same loop around different models. The engine owns what a
reader should find in one place: the accelerator, seeding and deterministic kernels, the
settings fingerprint and resume (:mod:`echogen.training.state`), the step budget, epochs
where a task has them, the running means of the logged values and the log rows, checkpoint
rotation, best-validation selection, and the atomic export of the model folder with
``train.json`` and ``log.csv``. A :class:`Task` owns only the modelling: it builds its
models and optimisers, yields this process's batches as a pure function of the seed and
the step (or epoch and position), takes one optimiser step (a GAN task its two backward
passes), validates and writes its model files.

Two budgets exist. An *epoch* task (``Budget.steps_per_epoch`` set: the EF regressors, the
classifiers) gets one log row per epoch with its validation values; a *step* task (None:
the VAE, the LVDM, the privacy embedder) gets one row every ``log_every`` steps. Either way
a budget that ends between rows adds a last partial row to the exported log (never to the
resumable one), so a run cut short and resumed logs exactly what a straight run logs.

Because the batches depend on nothing but the seed and the position, and every random
generator a task uses is either seeded that way or part of the accelerate state, a run
killed at any step and started again resumes from its newest checkpoint and ends with the
weights, log and ``train.json`` of an uninterrupted run, bit for bit on one device and
thread count (``tests/unit/test_trainer_contract.py`` checks this for every task).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

import echogen
from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, write_json
from echogen.numerics import deterministic
from echogen.training.state import jsonable, resume, save_checkpoint, write_log

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")
SELECTIONS = ("last", "best_val")
# Bumped when the resumable record changes shape: older states are refused by name.
STATE_FORMAT = 2


@dataclass(frozen=True)
class Budget:
    """How long a run trains and how often it logs and saves.

    Args:
        total (int): optimiser steps of the run (0 exports the initial weights untrained).
        steps_per_epoch (int | None): optimiser steps in one epoch (all processes together);
            None for a task without epochs.
        checkpoint_every (int): save the state every this many steps (and at the end).
        checkpoints_total_limit (int): keep this many newest checkpoints.
        log_every (int): a log row (step tasks) or a log line (epoch tasks) every this many
            steps.
    """

    total: int
    steps_per_epoch: int | None
    checkpoint_every: int
    checkpoints_total_limit: int
    log_every: int

    @classmethod
    def of(cls, spec, steps_per_epoch: int | None = None) -> Budget:
        """The budget a task's training settings describe: their ``max_steps``,
        ``checkpoint_every``, ``checkpoints_total_limit`` and ``log_every``; with
        ``steps_per_epoch``, ``epochs`` epochs capped at ``max_steps`` (None: no cap)."""
        total = spec.max_steps
        if steps_per_epoch is not None:
            total = spec.epochs * steps_per_epoch
            total = total if spec.max_steps is None else min(total, spec.max_steps)
        cadence = (spec.checkpoint_every, spec.checkpoints_total_limit, spec.log_every)
        return cls(total, steps_per_epoch, *cadence)


@dataclass
class RunResult:
    """What a finished run hands to the task's export and to its caller.

    Attributes:
        step: optimiser steps taken (the budget).
        steps_per_epoch: from the budget (None for step tasks).
        num_processes: processes that trained together.
        resumed_from: the step the run resumed at, None for a fresh start.
        log: the exported log rows (``log.csv``).
        selected: which weights were exported (``select``, ``epoch``, ``step`` and the
            selection metric's value); None for tasks without a selection metric.
    """

    step: int
    steps_per_epoch: int | None
    num_processes: int
    resumed_from: int | None
    log: list[dict] = field(default_factory=list)
    selected: dict | None = None

    def last(self, key: str) -> float:
        """The last log row's value of ``key`` (NaN when nothing was logged)."""
        return self.log[-1][key] if self.log else math.nan


class Task:
    """What a trainer supplies to :func:`train`. Subclasses set the attributes and methods.

    Attributes:
        name: shown in the progress bar and log lines (``"regressor"``).
        log_columns: the columns of ``log.csv``: ``step`` (and ``epoch`` for epoch tasks)
            plus the keys of :meth:`row` and :meth:`validate`.
        select: ``"last"`` exports the last weights; ``"best_val"`` those of the epoch whose
            ``select_metric`` was best (the first one on ties; epoch tasks).
        select_metric: a key of :meth:`validate`'s result; None: no selection record.
        select_mode: ``"max"`` or ``"min"``: which direction of ``select_metric`` is better.
    """

    name: str = "model"
    log_columns: list[str] = ["step"]
    select: str = "last"
    select_metric: str | None = None
    select_mode: str = "max"

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        """Build models and optimisers (the global RNG is seeded), prepare them with the
        accelerator, register extra state for checkpointing; return the prepared module
        whose weights the engine selects and hands to :meth:`export`."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """Settings known only once :meth:`build` has run (e.g. a UNet's full config), added
        to the run's fingerprint."""
        return {}

    def start(self, accelerator: Accelerator, step: int) -> None:
        """Called once the state is resumed (or not), before the first batch."""

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        """This process's batches, one per optimiser step. Epoch tasks: those of ``epoch``
        from batch ``start`` on; step tasks (``epoch`` 0): those of steps ``start..``."""
        raise NotImplementedError

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        """Optimiser step ``step`` (0-based) on ``batch``; returns the values to log (already
        reduced over processes where the task wants that), summed by the engine."""
        raise NotImplementedError

    def row(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """A log row's values from the sums of ``count`` steps' values (default: means)."""
        return {key: value / count for key, value in sums.items()}

    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        """Validation values of the current weights, added to epoch rows (every process)."""
        return {}

    def export(self, folder: Path, model: torch.nn.Module, result: RunResult) -> dict:
        """Write the model files into ``folder`` (main process only; ``model`` unwrapped);
        return the task's keys of ``train.json`` (the engine adds version, seed, steps and
        process count)."""
        raise NotImplementedError


class _Best:
    """The weights of the best validation epoch so far; checkpointed with the run."""

    def __init__(self, metric: str, mode: str):
        if mode not in ("max", "min"):
            raise ValueError(f"select_mode must be 'max' or 'min', got {mode!r}")
        self.metric, self.sign = metric, 1.0 if mode == "max" else -1.0
        self.value = -math.inf
        self.epoch = -1
        self.step = -1
        self.weights: dict[str, torch.Tensor] = {}

    def update(self, model: torch.nn.Module, row: dict) -> None:
        if self.sign * row[self.metric] > self.value:  # strictly: the first best wins ties
            self.value = self.sign * row[self.metric]
            self.epoch, self.step = row["epoch"], row["step"]
            self.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def state_dict(self) -> dict:
        keys = ("value", "epoch", "step", "weights")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.epoch, self.step = state["value"], state["epoch"], state["step"]
        self.weights = state["weights"]


def accelerator_for(
    device: str,
    state_dir: str | Path,
    mixed_precision: str = "no",
    find_unused_parameters: bool = False,
) -> Accelerator:
    """The run's accelerator (all visible GPUs under ``accelerate launch`` when ``cuda``).

    ``find_unused_parameters``: for a model whose steps leave some parameters without a
    gradient (a cascade stage's image steps skip its temporal layers), so that
    DistributedDataParallel on several processes does not stop on them.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    handlers = []
    if find_unused_parameters:
        from accelerate import DistributedDataParallelKwargs

        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=mixed_precision,
        project_dir=str(state_dir),
        kwargs_handlers=handlers,
    )


def steps_per_epoch(n_rows: int, batch_size: int, world: int, source) -> int:
    """Full global batches in one epoch (the last incomplete one is dropped), else DataError."""
    steps = n_rows // (batch_size * world)
    if steps == 0:
        raise DataError(
            source,
            f"{n_rows} TRAIN videos do not fill one batch of {batch_size} x {world} process(es)",
            "lower train.batch_size or add TRAIN videos",
        )
    return steps


def train(
    task: Task,
    accelerator: Accelerator,
    *,
    state_dir: str | Path,
    out_dir: str | Path,
    budget: Budget,
    seed: int,
    fingerprint: dict,
    config: dict | None = None,
) -> RunResult:
    """Run ``task`` to ``budget``, resuming from ``state_dir``, and export it to ``out_dir``.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` (accelerate state plus
    ``progress.json``: step, running sums, log rows, ``config`` and ``fingerprint``);
    ``state_dir/log.csv`` is the running log. A run finding checkpoints resumes from the
    newest, refusing one saved with another ``fingerprint`` (the differing keys are named).
    ``out_dir`` is replaced atomically at the end by the task's model files, ``train.json``
    and ``log.csv``.

    Args:
        task: the modelling.
        accelerator: from :func:`accelerator_for`.
        state_dir: the resumable state (not a workflow output).
        out_dir: the export folder.
        budget: steps, epochs and cadences.
        seed: seeds the global RNGs before :meth:`Task.build`.
        fingerprint: every setting that shapes the trajectory (not the budget).
        config: the resolved configuration, recorded in every checkpoint.

    Returns:
        The :class:`RunResult`.
    """
    if task.select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {task.select!r}")
    state_dir, out_dir = Path(state_dir), Path(out_dir)
    total, per_epoch = budget.total, budget.steps_per_epoch
    with deterministic():
        set_seed(seed)
        model = task.build(accelerator)
        fingerprint = {**fingerprint, **task.fingerprint(), "state_format": STATE_FORMAT}
        fingerprint = jsonable(fingerprint)
        best = None
        if task.select == "best_val":
            if task.select_metric is None or per_epoch is None:
                raise ValueError(f"{task.name}: 'best_val' needs epochs and a select_metric")
            best = _Best(task.select_metric, task.select_mode)
            accelerator.register_for_checkpointing(best)

        progress = {"step": 0, "sums": {}, "count": 0, "log": []}
        record = resume(accelerator, state_dir, fingerprint)
        resumed_from = None
        if record is not None:
            progress = record["progress"]
            resumed_from = progress["step"]
            log.info("resuming at step %d of %d", resumed_from, total)
        step = progress["step"]
        if step > total:
            log.warning("the newest checkpoint (step %d) is past the budget %d", step, total)
        task.start(accelerator, step)

        def make_row(step: int) -> dict:
            """A log row from the running sums (and validation, for epoch tasks)."""
            row = {"step": step, **task.row(progress["sums"], progress["count"])}
            if per_epoch is not None:
                row = {"epoch": (step - 1) // per_epoch, **row, **task.validate(accelerator)}
                if best is not None:
                    best.update(accelerator.unwrap_model(model), row)
            log.info("%s: %s", _where(row, total), _fmt(row))
            return row

        bar = tqdm(
            total=total,
            initial=min(step, total),
            desc=f"train {task.name}",
            leave=False,
            disable=not accelerator.is_local_main_process,
        )
        while step < total:
            epoch, done = divmod(step, per_epoch) if per_epoch else (0, step)
            for batch in task.batches(accelerator, epoch, done):
                values = task.train_step(accelerator, batch, step)
                step += 1
                bar.update(1)
                progress["step"] = step
                for key, value in values.items():
                    progress["sums"][key] = progress["sums"].get(key, 0.0) + value
                progress["count"] += 1
                boundary = per_epoch if per_epoch is not None else budget.log_every
                if step % boundary == 0:
                    progress["log"].append(make_row(step))
                    progress.update(sums={}, count=0)
                    if accelerator.is_main_process:
                        write_log(state_dir / "log.csv", progress["log"], task.log_columns)
                elif per_epoch is not None and step % budget.log_every == 0:
                    means = task.row(progress["sums"], progress["count"])
                    log.info("step %d/%d: %s (running)", step, total, _fmt(means))
                if step % budget.checkpoint_every == 0 or step == total:
                    record = {
                        "echogen_version": echogen.__version__,
                        "step": step,
                        "seed": seed,
                        "config": config,
                        "fingerprint": fingerprint,
                        "progress": progress,
                    }
                    save_checkpoint(accelerator, state_dir, record, budget.checkpoints_total_limit)
                if step == total:
                    break
        bar.close()

        result = RunResult(step, per_epoch, accelerator.num_processes, resumed_from)
        result.log = list(progress["log"])
        if progress["count"]:
            # The budget ended between rows: report (and consider) that partial window too.
            result.log.append(make_row(step))

        net = accelerator.unwrap_model(model)
        if task.select_metric is not None:
            result.selected = _selection(task, result, best, net)
        if accelerator.is_main_process:
            with atomic_dir(out_dir) as tmp:
                keys = task.export(tmp, net, result)
                common = {
                    "echogen_version": echogen.__version__,
                    "seed": seed,
                    "steps": step,
                    "num_processes": result.num_processes,
                }
                if per_epoch is not None:
                    common["steps_per_epoch"] = per_epoch
                if result.selected is not None:
                    common["selected"] = result.selected
                write_json(tmp / "train.json", {**keys, **common})
                write_log(tmp / "log.csv", result.log, task.log_columns)
            log.info("exported the %s to %s", task.name, out_dir)
    accelerator.wait_for_everyone()
    return result


def _selection(task: Task, result: RunResult, best: _Best | None, net: torch.nn.Module) -> dict:
    """Load the selected weights into ``net``; the record of which were selected."""
    metric = task.select_metric
    selected = {"select": task.select, "epoch": None, "step": result.step, metric: None}
    if result.log:
        selected["epoch"] = result.log[-1].get("epoch")
        selected[metric] = result.log[-1][metric]
    if best is not None and best.weights:
        net.load_state_dict(best.weights)
        selected.update(epoch=best.epoch, step=best.step)
        selected[metric] = best.sign * best.value
    return selected


def _where(row: dict, total: int) -> str:
    where = f"step {row['step']}/{total}"
    return f"epoch {row['epoch']} ({where})" if "epoch" in row else where


def _fmt(values: dict) -> str:
    shown = {k: v for k, v in values.items() if k not in ("epoch", "step")}
    return ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
