"""Train the RV-failure network: stream pretraining on EF, then the two-stream fusion.

rohanshad/postop_rv_failure_echo (``/work/shared/PAPERS.md`` §7) first trains each 3-D
ResNet-152 stream to regress EF on EchoNet-Dynamic (``pretrain_greyscale.py``,
``pretrain_OF.py``: MSE, AdamW lr 1e-3 with cosine annealing, 100 epochs, batch 8, the weights
of the best validation loss), then the fusion of both pretrained trunks on the LVAD patients
(``train_twostream.py``: binary cross-entropy on severe vs rest with class weights 0.2/1.8,
AdamW lr 1e-4 with cosine annealing over the whole run, 75 epochs, batch 4, augmented
32-frame clips). keras-adamw's cosine annealing multiplies the rate by
``(1 + cos(pi * t / T))/2`` at iteration ``t`` of ``T``. Its weight decay is not reproduced:
keras-adamw, given the model, turns the ResNet builder's L2 factor 1e-4 on the convolution
kernels into decoupled decay scaled by its own normaliser (and ``model_zoo.py`` builds the
optimiser twice, the first call clearing the penalties the second reads); here torch's
``AdamW`` decays every parameter by ``lr * weight_decay`` (``train.weight_decay``, 1e-4), a
different regulariser. :class:`RVTrainSettings` holds the settings (the ``rvfailure`` config
sections).

Deliberate difference: the reference saves the fusion weights of the best VAL AUC while
evaluating the TEST set after every epoch and logging the TEST AUC of that epoch; here the
export is chosen on VAL alone and TEST is never read during training.

:func:`train_rvfailure` serves both: ``objective="ef"`` (one stream, EF target, MSE, the
best VAL loss) and ``objective="rvfailure"`` (the configured streams, label target, weighted
BCE, the best VAL AUC), on the trainer engine (resumable bit for bit, multi-process).
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from echogen.data.errors import DataError
from echogen.data.io import write_json
from echogen.data.rvfailure import ef_stream_rows, read_split_rows
from echogen.data.stream_clips import StreamClipSet, StreamClipSpec, with_stream_statistics
from echogen.metrics.scores import roc_auc
from echogen.models.rvfailure import TwoStreamNet, load_kinetics_trunk, load_pretrained_stream
from echogen.training.engine import Budget, RunResult, accelerator_for, steps_per_epoch
from echogen.training.engine import train as engine_train
from echogen.training.settings import TrainSettings, mixed_precision
from echogen.training.state import jsonable
from echogen.training.supervised import DECAY_ON, OPTIMIZERS, ClipTask, rows_digest

log = logging.getLogger(__name__)

OBJECTIVES = ("ef", "rvfailure")
SCHEDULES = ("cosine",)
# Settings that only say how long, how often or how fast: a run may resume with others.
BUDGET_FIELDS = ("max_steps", "checkpoint_every", "checkpoints_total_limit", "num_workers",
                 "log_every")  # fmt: skip


@dataclass(frozen=True)
class RVTrainSettings(TrainSettings):
    """Optimisation and budget of a stream pretraining or a fusion run.

    Args:
        optimizer (str, "adamw"): ``"adamw"``, ``"adam"`` or ``"sgd"``.
        lr (float, 1e-4): peak learning rate (the fusion's; the pretraining's is 1e-3).
        weight_decay (float, 1e-4): decoupled weight decay (AdamW).
        decay_on (str, "all"): ``"all"`` parameters, or ``"kernels"``: only convolution and
            linear weights (keras-adamw decays the layers the builder L2-regularises).
        lr_schedule (str | None, "cosine"): ``"cosine"`` = keras-adamw's annealing over every
            step of the run; None keeps the rate.
        epochs (int, 75): epochs of the full budget (75 fusion, 100 pretraining).
        batch_size (int, 4): clips per process per step (4 fusion, 8 pretraining).
        class_weights (list[float] | None, [0.2, 1.8]): BCE weight of a negative and of a
            positive clip (the fusion; unused for EF).
        select (str, "best_val"): export the epoch of the best VAL AUC (fusion) or loss (EF),
            or ``"last"``.
        max_steps (int | None, None): cap on the optimiser steps.
        checkpoint_every (int, 500): save the training state every this many steps.
        checkpoints_total_limit (int, 2): keep this many newest checkpoints.
        log_every (int, 10): log the running loss every this many steps.
        num_workers (int, 0): data loader worker processes.
        precision (str, "fp32"): ``"fp16"`` or ``"bf16"`` = accelerate's mixed precision on
            CUDA (fp32 with a warning on the CPU).
    """

    label = "RV-failure"

    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    decay_on: str = "all"
    lr_schedule: str | None = "cosine"
    epochs: int = 75
    batch_size: int = 4
    class_weights: tuple[float, float] | None = (0.2, 1.8)
    select: str = "best_val"
    max_steps: int | None = None
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    log_every: int = 10
    num_workers: int = 0
    precision: str = "fp32"

    def __post_init__(self):
        self.check_engine_fields()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule is not None and self.lr_schedule not in SCHEDULES:
            raise ValueError(f"train.lr_schedule must be None or one of {SCHEDULES}")
        if self.decay_on not in DECAY_ON:
            raise ValueError(f"train.decay_on must be one of {DECAY_ON}, got {self.decay_on!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"train.lr must be > 0 and weight_decay >= 0, got {self.lr}, "
                             f"{self.weight_decay}")  # fmt: skip
        if self.class_weights is not None:
            weights = tuple(float(w) for w in self.class_weights)
            if len(weights) != 2 or min(weights) <= 0:
                raise ValueError(f"train.class_weights must be two positive numbers, got "
                                 f"{self.class_weights}")  # fmt: skip
            object.__setattr__(self, "class_weights", weights)


@dataclass(frozen=True)
class RVConfig:
    """A resolved run: the network, the clips and the training settings."""

    model: dict
    clips: StreamClipSpec
    train: RVTrainSettings

    @classmethod
    def from_dict(cls, data: dict) -> RVConfig:
        unknown = sorted(set(data) - {"model", "clips", "train"})
        if unknown:
            raise ValueError(f"unknown RV-failure config sections {unknown}; "
                             "known: model, clips, train")  # fmt: skip
        model = dict(data.get("model") or {})
        known = set(inspect.signature(TwoStreamNet.__init__).parameters) - {"self"}
        if set(model) - known:
            raise ValueError(f"unknown RV-failure model keys {sorted(set(model) - known)}; "
                             f"known: {', '.join(sorted(known))}")  # fmt: skip
        return cls(model, StreamClipSpec.from_dict(data.get("clips") or {}),
                   RVTrainSettings.from_dict(data.get("train")))  # fmt: skip

    def to_dict(self) -> dict:
        return jsonable({"model": self.model, "clips": self.clips.to_dict(),
                         "train": self.train.to_dict()})  # fmt: skip


class RVTask(ClipTask):
    """The engine's task for both objectives (see the module docstring).

    Args:
        config: the resolved run, clip statistics filled in.
        objective: ``"ef"`` or ``"rvfailure"``.
        train_set, val_set: :class:`StreamClipSet` of TRAIN (augmented) and VAL rows.
        steps_per_epoch: optimiser steps per epoch (all processes together).
        seed: the data order's seed.
        total_steps: the cosine schedule's length, ``epochs`` times the steps per epoch (not
            the ``max_steps`` cap: a run cut short and resumed follows one schedule).
        init: ``{stream: ("pretrained" | "kinetics", path)}``: where each trunk starts.
    """

    log_columns = ["epoch", "step", "train_loss", "val_loss", "val_auc"]

    def __init__(self, config: RVConfig, objective: str, train_set: StreamClipSet,
                 val_set: StreamClipSet, steps_per_epoch: int, seed: int,
                 total_steps: int, init: dict | None = None):  # fmt: skip
        super().__init__(train_set, val_set, config.train, steps_per_epoch, seed)
        self.config, self.objective, self.init = config, objective, init or {}
        self.select = config.train.select
        self.name = "stream pretraining" if objective == "ef" else "RV-failure fusion"
        if objective == "ef":
            self.log_columns = ["epoch", "step", "train_loss", "val_loss", "val_mae"]
            self.select_metric, self.select_mode = "val_loss", "min"
        else:
            self.select_metric, self.select_mode = "val_auc", "max"
        self.total_steps = max(total_steps, 1)
        self.records: dict = {}

    def make_model(self) -> TwoStreamNet:
        net = TwoStreamNet(**self.config.model)
        for stream, (kind, path) in sorted(self.init.items()):
            if kind == "pretrained":
                load_pretrained_stream(net, stream, path)
            else:
                load_kinetics_trunk(net, stream, path)
        return net

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        train = self.config.train
        lr = train.lr
        if train.lr_schedule == "cosine":  # a function of the step alone: nothing to save
            lr = train.lr * (1 + math.cos(math.pi * step / self.total_steps)) / 2
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return super().train_step(accelerator, batch, step)

    def _bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = self.config.train.class_weights
        weight = None
        if weights is not None:
            weight = torch.where(target > 0.5, weights[1], weights[0]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target.float(), weight)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.objective == "ef":
            return F.mse_loss(output, target.float())
        return self._bce(output, target)

    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        pairs = self.validation_outputs(accelerator)
        output = torch.tensor([p[0] for p in pairs], dtype=torch.float32)
        target = torch.tensor([p[1] for p in pairs], dtype=torch.float32)
        if self.objective == "ef":
            return {"val_loss": float(F.mse_loss(output, target)),
                    "val_mae": float((output - target).abs().mean())}  # fmt: skip
        auc = roc_auc(target.numpy(), output.numpy())
        # One class in VAL: AUC is undefined; 0.5 keeps the first epoch selected.
        return {"val_loss": float(self._bce(output, target)),
                "val_auc": 0.5 if math.isnan(auc) else auc}  # fmt: skip

    def export(self, folder: Path, model: TwoStreamNet, result: RunResult) -> dict:
        model.save_pretrained(folder)
        write_json(folder / "clips.json", self.config.clips.to_dict())
        return {
            **self.records,
            "objective": self.objective,
            "model": jsonable(self.config.model),
            "train": self.config.train.to_dict(),
            "init": {s: {"kind": k, "path": str(p)} for s, (k, p) in self.init.items()},
        }


def train_rvfailure(rows: pd.DataFrame, out_dir: str | Path, state_dir: str | Path,
                    config: RVConfig, objective: str, seed: int, device: str = "cpu",
                    root: str | Path = ".", init: dict | None = None) -> dict:  # fmt: skip
    """Train a stream on EF or the fusion on RV failure; TRAIN rows train, VAL rows select.

    Args:
        rows: ``Split`` TRAIN/VAL (and, for ``clips.stat_splits``, others), FileName, Path
            (grey), FlowPath (flow), and ``EF`` (objective ``ef``) or ``label`` 0/1
            (``rvfailure``).
        out_dir: export folder (``save_pretrained`` files, ``clips.json`` with the statistics,
            ``train.json``, ``log.csv``), replaced atomically.
        state_dir: resumable training state (not a workflow output).
        config: :class:`RVConfig`; statistics left None are estimated on the rows of
            ``clips.stat_splits`` (TRAIN by default).
        objective: ``"ef"`` (a single stream) or ``"rvfailure"``.
        seed: seeds the initialisation, data order and clip draws.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
        root: folder the paths are relative to.
        init: ``{stream: (kind, path)}`` with kind ``"pretrained"`` (an exported EF stream)
            or ``"kinetics"`` (a local Kinetics 3-D ResNet state dict).

    Returns:
        steps, steps_per_epoch, resumed_from, the last VAL values, the selected epoch, out_dir.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    streams = tuple(config.model.get("streams", ("grey", "flow")))
    if objective == "ef" and len(streams) != 1:
        raise ValueError(f"EF pretraining trains one stream, got model.streams {streams}")
    target = "EF" if objective == "ef" else "label"
    source = str(rows.attrs.get("source", "rows"))
    split = {s: rows[rows["Split"] == s].reset_index(drop=True) for s in ("TRAIN", "VAL")}
    for name, part in split.items():
        part.attrs["source"] = source
        if part.empty:
            raise DataError(source, f"no {name} rows", f"put some videos in the {name} split")
    if objective == "rvfailure":
        labels = pd.to_numeric(split["TRAIN"]["label"], errors="coerce")
        if not labels.isin([0, 1]).all() or labels.nunique() < 2:
            raise DataError(source, "the TRAIN labels must be 0/1 with both present, got "
                            f"{sorted(labels.unique().tolist())}", "put patients of both "
                            "classes in the train split")  # fmt: skip
    train = config.train
    accelerator = accelerator_for(device, state_dir, mixed_precision(train.precision, device))
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(split["TRAIN"]), train.batch_size, world, source)
    budget = Budget.of(train, per_epoch)
    spec = with_stream_statistics(config.clips, rows, streams, seed, root)
    resolved = RVConfig(config.model, spec, train)
    sets = {name: StreamClipSet(part, spec, streams, target, train=name == "TRAIN", seed=seed,
                                root=root) for name, part in split.items()}  # fmt: skip
    task = RVTask(resolved, objective, sets["TRAIN"], sets["VAL"], budget.steps_per_epoch,
                  seed, train.epochs * per_epoch, init)  # fmt: skip
    digest = {"FileName": str, target: float}
    fingerprint = {
        "objective": objective,
        "model": jsonable(config.model),
        "clips": spec.to_dict(),
        "train": {k: v for k, v in train.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(split["TRAIN"], digest),
        "val_rows": rows_digest(split["VAL"], digest),
        "init": {s: [k, str(p)] for s, (k, p) in sorted((init or {}).items())},
    }
    task.records = {"n_train": len(split["TRAIN"]), "n_val": len(split["VAL"]),
                    "streams": list(streams), "target": target}  # fmt: skip
    if objective == "rvfailure":
        task.records["n_train_positive"] = int(sets["TRAIN"].targets.sum())
    result = engine_train(task, accelerator, state_dir=state_dir, out_dir=out_dir,
                          budget=budget, seed=seed, fingerprint=fingerprint,
                          config=resolved.to_dict())  # fmt: skip
    metric = "val_mae" if objective == "ef" else "val_auc"
    return {
        "steps": result.step,
        "steps_per_epoch": result.steps_per_epoch,
        "resumed_from": result.resumed_from,
        "val_loss": result.last("val_loss"),
        metric: result.last(metric),
        "selected": result.selected,
        "out_dir": str(out_dir),
    }


def train_rvfailure_from_config(objective: str, out_dir: str, state_dir: str, network: dict,
                                streams: list[str], clips: dict, train: dict, seed: int,
                                device: str = "cpu", splits: dict | None = None,
                                manifest: str | None = None, flow_index: str | None = None,
                                init: dict | None = None) -> dict:  # fmt: skip
    """:func:`train_rvfailure` from the ``rvfailure`` config (JSON-able arguments, so
    ``echogen.workflow.run_distributed`` can start it on N processes).

    ``objective="ef"`` reads ``manifest`` + ``flow_index`` (EF pretraining of ``streams``'
    single stream); ``"rvfailure"`` reads ``splits`` (``{"TRAIN": csv, "VAL": csv}``).
    ``init`` maps a stream to ``[kind, path]`` (see :func:`train_rvfailure`).
    """
    if objective == "ef":
        flow = flow_index if "flow" in streams else None  # grey: every video with an EF
        rows = ef_stream_rows(manifest, flow, int(clips.get("frames", 32)))
    else:
        rows = read_split_rows(splits)
    config = RVConfig.from_dict({"model": {**network, "streams": list(streams)}, "clips": clips,
                                 "train": train})  # fmt: skip
    init = {stream: (kind, path) for stream, (kind, path) in (init or {}).items()}
    return train_rvfailure(rows, out_dir, state_dir, config, objective, seed, device, init=init)
