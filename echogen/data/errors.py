"""Errors for bad input data, and the quarantine that collects them when config says skip.

Every problem with a user's data is raised as :class:`DataError`, whose message names the
culprit (file and, where there is one, the row) and what to do about it. Loops over many
items use a :class:`Quarantine`: with ``on_error="raise"`` the first problem stops the run;
with ``on_error="skip"`` problems are collected and written to a ``quarantine.csv`` next to
the artefact, and the item is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from echogen.data.io import atomic_path

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "skip")
QUARANTINE_COLUMNS = ["item", "file", "row", "problem", "fix"]


class DataError(ValueError):
    """A problem with input data.

    Args:
        file: the offending file (path as the user gave it).
        problem: what is wrong, in one sentence.
        fix: what the user should do about it.
        row: 1-based line number in a csv (header is line 1), or another row label.
        item: the dataset item (video name, patient id) the problem belongs to, if any.
    """

    def __init__(
        self,
        file: str | Path,
        problem: str,
        fix: str,
        row: int | str | None = None,
        item: str | None = None,
    ):
        self.file = str(file)
        self.problem = problem
        self.fix = fix
        self.row = row
        self.item = item
        where = self.file if row is None else f"{self.file}, row {row}"
        super().__init__(f"{where}: {problem}. Fix: {fix}")

    def as_record(self) -> dict:
        return {
            "item": self.item or "",
            "file": self.file,
            "row": "" if self.row is None else self.row,
            "problem": self.problem,
            "fix": self.fix,
        }


@dataclass
class Quarantine:
    """Collects :class:`DataError`s when ``on_error == "skip"``, re-raises them otherwise."""

    on_error: str = "raise"
    records: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run a block for one item; a DataError inside is quarantined or re-raised."""
        try:
            yield
        except DataError as err:
            self.add(err)

    def add(self, err: DataError) -> None:
        if self.on_error == "raise":
            raise err
        log.warning("quarantined: %s", err)
        self.records.append(err.as_record())

    def __len__(self) -> int:
        return len(self.records)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=QUARANTINE_COLUMNS)

    def write(self, path: str | Path) -> None:
        """Write the quarantine list (possibly empty, so the file is always there)."""
        with atomic_path(path) as tmp:
            self.frame().to_csv(tmp, index=False)

    @staticmethod
    def merge(paths: list[str | Path], out: str | Path) -> int:
        """Concatenate several quarantine csvs into one; returns the number of rows."""
        frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
        merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        merged = merged.reindex(columns=QUARANTINE_COLUMNS)
        with atomic_path(out) as tmp:
            merged.to_csv(tmp, index=False)
        return len(merged)
