"""What the train-settings dataclasses of the adversarial and image tasks share.

:class:`TrainSettings` gives a frozen settings dataclass its dict round trip (unknown keys
refused by name) and the checks of the engine's fields: the positive counts, ``select``,
``precision``, ``max_steps`` and ``num_workers``. A subclass calls
:meth:`TrainSettings.check_engine_fields` from its ``__post_init__`` and checks its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from echogen.settings import DictFields
from echogen.training.engine import SELECTIONS

log = logging.getLogger(__name__)

# fp16: autocast with loss scaling; bf16: autocast without (accelerate's mixed precision).
PRECISIONS = ("fp32", "fp16", "bf16")


def mixed_precision(precision: str, device: str) -> str:
    """accelerate's ``mixed_precision`` for a train setting ``precision`` (one of
    :data:`PRECISIONS`) on ``device``: reduced precision on CUDA only, with a warning when a
    CPU run falls back to fp32."""
    if precision == "fp32":
        return "no"
    if device != "cuda":
        log.warning("train.precision %s needs a GPU; training in fp32 on %s", precision, device)
        return "no"
    return precision


@dataclass(frozen=True)
class TrainSettings(DictFields):
    """Base of a task's frozen train-settings dataclass.

    Attributes:
        label: the task's name in error messages (``"SPADE"``).
        positive: fields that must be >= 1.
    """

    label: ClassVar[str] = "task"
    positive: ClassVar[tuple[str, ...]] = (
        "batch_size", "epochs", "checkpoint_every", "checkpoints_total_limit", "log_every",
    )  # fmt: skip

    def check_engine_fields(self) -> None:
        """Raise ValueError naming the first engine field out of range."""
        for name in self.positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.select not in SELECTIONS:
            raise ValueError(f"train.select must be one of {SELECTIONS}, got {self.select!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError("train.max_steps must be None or >= 0")
        if self.num_workers < 0:
            raise ValueError("train.num_workers must be >= 0")

    @classmethod
    def settings_label(cls) -> str:
        return f"{cls.label} train settings"
