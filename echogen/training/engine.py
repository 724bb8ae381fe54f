"""The one training loop: a task supplies the modelling, the engine everything else.

Every echogen trainer is the same loop around different models. The engine owns what a
reader should find in one place: the accelerator, seeding and deterministic kernels, the
settings fingerprint and resume (:mod:`echogen.training.state`), the step budget, the epoch
boundaries, the running loss and its logging cadence, checkpoint rotation, best-validation
selection, and the atomic export of the model folder with ``train.json`` and ``log.csv``.
A :class:`Task` owns only the modelling: it builds its models and optimisers, yields this
process's batches as a pure function of ``(seed, epoch, position)``, takes one optimiser
step, validates and writes its model files.

Because the batches depend on nothing but ``(seed, epoch, position)`` and every random
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
from echogen.training.state import deterministic, jsonable, resume, save_checkpoint, write_log

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")
SELECTIONS = ("last", "best_val")


@dataclass(frozen=True)
class Budget:
    """How long a run trains and how often it logs and saves.

    Args:
        epochs (int): epochs of the full budget.
        steps_per_epoch (int): optimiser steps in one epoch (all processes together).
        max_steps (int | None): cap on the optimiser steps; None = ``epochs * steps_per_epoch``;
            0 exports the initial weights untrained.
        checkpoint_every (int): save the state every this many steps (and at the end).
        checkpoints_total_limit (int): keep this many newest checkpoints.
        log_every (int): log the running loss every this many steps.
    """

    epochs: int
    steps_per_epoch: int
    max_steps: int | None
    checkpoint_every: int
    checkpoints_total_limit: int
    log_every: int

    @property
    def total(self) -> int:
        """Optimiser steps of the run."""
        total = self.epochs * self.steps_per_epoch
        return total if self.max_steps is None else min(total, self.max_steps)


@dataclass
class RunResult:
    """What a finished run hands to the task's export and to its caller.

    Attributes:
        step: optimiser steps taken (the budget).
        steps_per_epoch: from the budget.
        num_processes: processes that trained together.
        resumed_from: the step the run resumed at, None for a fresh start.
        epoch_log: one row per epoch (``epoch``, ``step``, ``train_loss`` and the task's
            validation values), plus a last partial epoch when the budget ended mid-epoch.
        selected: which weights were exported (``select``, ``epoch``, ``step`` and the
            selection metric's value); None for tasks without a selection metric.
    """

    step: int
    steps_per_epoch: int
    num_processes: int
    resumed_from: int | None
    epoch_log: list[dict] = field(default_factory=list)
    selected: dict | None = None

    def last(self, key: str) -> float:
        """The last epoch row's value of ``key`` (NaN when no epoch was logged)."""
        return self.epoch_log[-1][key] if self.epoch_log else math.nan


class Task:
    """What a trainer supplies to :func:`train`. Subclasses set the attributes and methods.

    Attributes:
        name: shown in the progress bar and log lines (``"regressor"``).
        log_columns: the columns of ``log.csv``: ``epoch``, ``step``, ``train_loss`` and the
            keys :meth:`validate` returns.
        select: ``"last"`` exports the last weights; ``"best_val"`` those of the epoch whose
            ``select_metric`` was best (the first one on ties).
        select_metric: a key of :meth:`validate`'s result (for ``"best_val"``).
        select_mode: ``"max"`` or ``"min"``: which direction of ``select_metric`` is better.
    """

    name: str = "model"
    log_columns: list[str] = ["epoch", "step", "train_loss"]
    select: str = "last"
    select_metric: str | None = None
    select_mode: str = "max"

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        """Build models and optimisers (the global RNG is seeded), prepare them with the
        accelerator, register extra state for checkpointing; return the (prepared) model
        whose weights are exported."""
        raise NotImplementedError

    def epoch_batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        """This process's batches of ``epoch`` from batch ``start`` on (a resume mid-epoch)."""
        raise NotImplementedError

    def train_step(self, accelerator: Accelerator, batch) -> torch.Tensor:
        """One optimiser step on ``batch``; returns this process's detached loss."""
        raise NotImplementedError

    def lr(self) -> float:
        """The current learning rate (for the log lines)."""
        raise NotImplementedError

    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        """Validation values of the current weights (every process calls this)."""
        raise NotImplementedError

    def export(self, folder: Path, model: torch.nn.Module, result: RunResult) -> dict:
        """Write the model files into ``folder`` (main process only); return the task's keys
        of ``train.json`` (the engine adds version, seed, steps and process count)."""
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
        # "accuracy": states saved before the engine (the classifier's own best tracker).
        value = state["value"] if "value" in state else self.sign * state["accuracy"]
        self.value, self.epoch, self.step = value, state["epoch"], state["step"]
        self.weights = state["weights"]


def accelerator_for(device: str, state_dir: str | Path) -> Accelerator:
    """The run's accelerator (all visible GPUs under ``accelerate launch`` when ``cuda``)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return Accelerator(cpu=device == "cpu", project_dir=str(state_dir))


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
    config: dict,
) -> RunResult:
    """Run ``task`` to ``budget``, resuming from ``state_dir``, and export it to ``out_dir``.

    Checkpoints go to ``state_dir/checkpoint_<step:08d>`` (accelerate state plus
    ``progress.json``: step, running loss, epoch log, ``config`` and ``fingerprint``);
    ``state_dir/log.csv`` is the running epoch log. A run finding checkpoints resumes from
    the newest, refusing one saved with another ``fingerprint`` (the differing keys are
    named). ``out_dir`` is replaced atomically at the end by the task's model files,
    ``train.json`` and ``log.csv``.

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
    fingerprint = jsonable(fingerprint)
    total, per_epoch = budget.total, budget.steps_per_epoch
    with deterministic():
        set_seed(seed)
        model = task.build(accelerator)
        best = None
        if task.select == "best_val":
            if task.select_metric is None:
                raise ValueError(f"{task.name}: select 'best_val' needs a select_metric")
            best = _Best(task.select_metric, task.select_mode)
            accelerator.register_for_checkpointing(best)

        progress = {"step": 0, "loss_sum": 0.0, "loss_count": 0, "log": []}
        record = resume(accelerator, state_dir, fingerprint)
        resumed_from = None
        if record is not None:
            progress = record["progress"]
            resumed_from = progress["step"]
            log.info("resuming at step %d of %d", resumed_from, total)

        def epoch_row(epoch: int, step: int) -> dict:
            row = {
                "epoch": epoch,
                "step": step,
                "train_loss": progress["loss_sum"] / progress["loss_count"],
                **task.validate(accelerator),
            }
            log.info("epoch %d (step %d): %s", epoch, step, _fmt(row))
            if best is not None:
                best.update(accelerator.unwrap_model(model), row)
            return row

        step = progress["step"]
        bar = tqdm(
            total=total,
            initial=step,
            desc=f"train {task.name}",
            leave=False,
            disable=not accelerator.is_local_main_process,
        )
        while step < total:
            epoch, done = divmod(step, per_epoch)
            for batch in task.epoch_batches(accelerator, epoch, done):
                loss = task.train_step(accelerator, batch)
                step += 1
                progress["step"] = step
                progress["loss_sum"] += accelerator.reduce(loss.detach(), "mean").item()
                progress["loss_count"] += 1
                bar.update(1)
                if step % budget.log_every == 0:
                    mean = progress["loss_sum"] / progress["loss_count"]
                    log.info("step %d/%d loss %.4f lr %.3g", step, total, mean, task.lr())
                if step % per_epoch == 0:
                    progress["log"].append(epoch_row(epoch, step))
                    progress.update(loss_sum=0.0, loss_count=0)
                    if accelerator.is_main_process:
                        write_log(state_dir / "log.csv", progress["log"], task.log_columns)
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
        result.epoch_log = list(progress["log"])
        if progress["loss_count"]:
            # The budget ended mid-epoch: report (and consider) that partial epoch too.
            result.epoch_log.append(epoch_row(step // per_epoch, step))

    net = accelerator.unwrap_model(model)
    if task.select_metric is not None:
        metric = task.select_metric
        result.selected = {"select": task.select, "epoch": None, "step": step, metric: None}
        if result.epoch_log:
            result.selected["epoch"] = result.epoch_log[-1]["epoch"]
            result.selected[metric] = result.last(metric)
        if best is not None and best.weights:
            net.load_state_dict(best.weights)
            result.selected.update(epoch=best.epoch, step=best.step)
            result.selected[metric] = best.sign * best.value
    if accelerator.is_main_process:
        with atomic_dir(out_dir) as tmp:
            keys = task.export(tmp, net, result)
            common = {
                "echogen_version": echogen.__version__,
                "seed": seed,
                "steps": step,
                "steps_per_epoch": per_epoch,
                "num_processes": result.num_processes,
            }
            if result.selected is not None:
                common["selected"] = result.selected
            write_json(tmp / "train.json", {**keys, **common})
            write_log(tmp / "log.csv", result.epoch_log, task.log_columns)
        log.info("exported the %s to %s", task.name, out_dir)
    accelerator.wait_for_everyone()
    return result


def _fmt(row: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
