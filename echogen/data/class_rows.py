"""Labelled rows of video classification datasets: real videos of a manifest, synthetic
videos of a samples folder, or both (EchoDream's CardiacNet protocol).

:func:`training_rows` builds one training source's TRAIN and VAL rows, from the fixed
splits or from one fold of a k-fold cross-validation (:class:`Folds`, EchoDream's
``--use-cross-val``); ``validation`` says whether the real VAL videos select the epoch
(``"real"``, echogen's default) or the source's own VAL videos / fold do (``"source"``,
EchoDream). :func:`heldout_rows` gives the TEST rows of the real manifest or of the synthetic
samples (EchoDream's "synthetic only" experiment is tested on synthetic TEST videos). TEST
rows never train. Every bad cell is a DataError naming the csv, its line and the fix.
Classifiers train on them (``echogen.training.classifier``) and predict on them
(``echogen.pipelines.classification``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echogen.data.errors import DataError
from echogen.data.manifest import SPLITS

SOURCES = ("real", "synthetic", "real+synthetic")
VALIDATIONS = ("real", "source")
TEST_SETS = ("real", "synthetic")
REAL_COLUMNS = ("FileName", "Path", "FPS", "Split", "class_id", "class_name")
SYNTHETIC_COLUMNS = ("FileName", "FPS", "Split", "class_id", "class_name")
ROW_COLUMNS = ["FileName", "Path", "FPS", "Split", "class_id", "class_name", "label", "source"]
FILELIST = "FileList.csv"
VIDEOS = "Videos"
SYNTHETIC_SUFFIX = ".mp4"
# csv line of a table row = its 0-based position + header line + 1.
CSV_LINE_OFFSET = 2


def _read_table(path: Path, required: tuple[str, ...], fix: str) -> pd.DataFrame:
    """A csv with string names (empty cells missing) and the required columns, else DataError."""
    if not path.is_file():
        raise DataError(path, "file does not exist", fix)
    table = pd.read_csv(
        path,
        dtype={"FileName": str, "Path": str, "Split": str, "class_name": str},
        keep_default_na=False,
        na_values=[""],
    )
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(path, f"columns {missing} are missing (need {list(required)})", fix, row=1)
    return table


def _labelled(
    table: pd.DataFrame, path: Path, classes: list[int], kind: str
) -> tuple[pd.DataFrame, dict[int, str]]:
    """Rows of ``classes`` with their label; the class names seen; DataError on a bad cell."""
    names: dict[int, str] = {}
    keep = []
    for position, row in enumerate(table.to_dict("records")):
        line = position + CSV_LINE_OFFSET
        name = str(row["FileName"])
        value = pd.to_numeric(pd.Series([row["class_id"]]), errors="coerce").iloc[0]
        if pd.isna(value) or value != round(value):
            raise DataError(
                path,
                f"{kind} video {name} has class_id {row['class_id']!r}, not an integer",
                "fill in the integer class id fixed by config",
                row=line,
                item=name,
            )
        class_id, class_name = int(value), row["class_name"]
        if pd.isna(class_name):
            raise DataError(
                path,
                f"{kind} video {name} has no class_name",
                "fill in the class name",
                row=line,
                item=name,
            )
        if names.setdefault(class_id, str(class_name)) != str(class_name):
            raise DataError(
                path,
                f"class_id {class_id} is named both {names[class_id]!r} and {class_name!r}",
                "use one name per class id",
                row=line,
                item=name,
            )
        if class_id in classes:
            keep.append(position)
    rows = table.iloc[keep].copy()
    rows["class_id"] = rows["class_id"].astype(float).astype(int)
    rows["label"] = [classes.index(c) for c in rows["class_id"]]
    rows["_line"] = np.asarray(keep, dtype=int) + CSV_LINE_OFFSET
    return rows, names


def _check_videos(rows: pd.DataFrame, path: Path, root: Path, kind: str, fix: str) -> None:
    """DataError for the first row whose FPS is not positive or whose video file is missing."""
    fps = pd.to_numeric(rows["FPS"], errors="coerce")
    for position, row in enumerate(rows.to_dict("records")):
        name, line = str(row["FileName"]), int(row["_line"])
        if not fps.iloc[position] > 0:
            raise DataError(
                path,
                f"{kind} video {name} has no positive FPS ({row['FPS']!r})",
                "fill in the frame rate the video was written at",
                row=line,
                item=name,
            )
        if pd.isna(row["Path"]) or not (root / str(row["Path"])).is_file():
            raise DataError(
                path,
                f"{kind} video {name} is missing ({root / str(row['Path'])})",
                fix,
                row=line,
                item=name,
            )


def _check_classes(classes: list[int]) -> list[int]:
    classes = [int(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must list at least two distinct class ids, got {classes}")
    return classes


@dataclass(frozen=True)
class Folds:
    """One fold of a k-fold cross-validation over a source's TRAIN+VAL videos.

    EchoDream's ``--use-cross-val``: ``KFold(n_splits=k, shuffle=True, random_state=seed)``
    over the rows of every class (the task's classes are picked afterwards, so a fold's share
    of a task's videos varies a little), the unit a video (a csv row).

    Args:
        k (int): folds, >= 2 (EchoDream: 5).
        fold (int): this fold, 1..k; its videos validate, the other k-1 folds' train.
        seed (int): the shuffle's seed (EchoDream: 42, its run seed).
    """

    k: int
    fold: int
    seed: int = 42

    def __post_init__(self):
        if not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"folds need k >= 2, got {self.k!r}")
        if not isinstance(self.fold, int) or not 1 <= self.fold <= self.k:
            raise ValueError(f"fold must be in 1..{self.k}, got {self.fold!r}")


def kfold_validation(n: int, k: int, seed: int) -> list[np.ndarray]:
    """The validation indices (sorted) of each of ``k`` folds of ``n`` items, as
    scikit-learn's ``KFold(n_splits=k, shuffle=True, random_state=seed).split`` yields them:
    a ``RandomState(seed)`` shuffle of ``0..n-1`` cut into consecutive folds, the first
    ``n % k`` one item longer.

    Raises:
        ValueError: fewer items than folds.
    """
    if n < k:
        raise ValueError(f"cannot cut {n} videos into {k} folds; use fewer folds")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(k)]


def _check_splits(table: pd.DataFrame, path: Path) -> None:
    for position, split in enumerate(table["Split"]):
        if split not in SPLITS:
            raise DataError(
                path,
                f"video {table['FileName'].iloc[position]} has split {split!r}",
                f"use one of {list(SPLITS)}",
                row=position + CSV_LINE_OFFSET,
            )


def _real_table(manifest: str | Path) -> tuple[pd.DataFrame, Path]:
    manifest = Path(manifest)
    fix = "use the harmonised manifest written by the dataset's ingestion rule (CardiacNet)"
    table = _read_table(manifest, REAL_COLUMNS, fix)
    _check_splits(table, manifest)
    return table.assign(source="real"), manifest


def _synthetic_table(samples_dir: str | Path, root: str | Path) -> tuple[pd.DataFrame, Path]:
    samples_dir = Path(samples_dir)
    filelist = samples_dir / FILELIST
    fix = "point at a samples folder written by the sampling rule (FileList.csv + Videos/)"
    table = _read_table(Path(root) / filelist, SYNTHETIC_COLUMNS, fix)
    _check_splits(table, filelist)
    paths = [str(samples_dir / VIDEOS / f"{n}{SYNTHETIC_SUFFIX}") for n in table["FileName"]]
    return table.assign(Path=paths, source="synthetic"), filelist


def _labelled_part(
    table: pd.DataFrame, path: Path, classes: list[int], root: str | Path
) -> pd.DataFrame:
    """The rows of ``classes`` whose ``Role`` is set, labelled, videos checked; the Role
    becomes the Split."""
    kind = str(table["source"].iloc[0]) if len(table) else "real"
    rows, names = _labelled(table, path, classes, kind)
    if kind == "real":
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise DataError(
                path,
                f"classes {unknown} have no videos (its classes are {sorted(names)})",
                "choose class ids the manifest has "
                "(CardiacNet: 0 ASD, 1 Non-ASD, 2 Non-PAH, 3 PAH)",
            )
    elif rows.empty:
        raise DataError(
            path,
            f"no synthetic videos of classes {classes}",
            "sample videos of these classes or choose other classes",
        )
    rows = rows[rows["Role"].notna()]
    fix = "re-run the dataset's ingestion rule" if kind == "real" else "re-run the sampling rule"
    _check_videos(rows, path, Path(root), kind, fix)
    return rows.assign(Split=rows["Role"])


def _finish(parts: list[pd.DataFrame], source: str) -> pd.DataFrame:
    rows = pd.concat(parts, ignore_index=True)[ROW_COLUMNS]
    rows["FPS"] = rows["FPS"].astype(float)
    rows.attrs["source"] = source
    return rows


def training_rows(
    source: str,
    manifest: str | Path,
    samples_dir: str | Path | None,
    classes: list[int],
    root: str | Path = ".",
    validation: str = "real",
    folds: Folds | None = None,
) -> pd.DataFrame:
    """The labelled TRAIN and VAL rows of one training source.

    The *pool* is the source's TRAIN videos (the manifest's for ``"real"``, the samples'
    FileList's for ``"synthetic"``, both for ``"real+synthetic"``), plus its VAL videos
    when they may train or validate: always under ``folds``, and with
    ``validation="source"``; with ``validation="real"`` the real VAL videos never join it.
    Without folds a pooled video keeps its split; with folds, the videos of fold
    ``folds.fold`` (:func:`kfold_validation` over the pool of every class, real rows first,
    each in file order) become VAL and the rest TRAIN. With ``validation="real"`` the
    pool's VAL videos are then dropped and the real VAL videos validate instead (EchoDream's
    "real+synthetic v1" selects on real VAL this way). TEST videos never train.

    Args:
        source: ``"real"``, ``"synthetic"`` or ``"real+synthetic"``.
        manifest: harmonised manifest csv with FileName, Path, FPS, Split, class_id,
            class_name (CardiacNet's).
        samples_dir: samples folder with ``FileList.csv`` (FileName without extension, FPS,
            Split, class_id, class_name) and ``Videos/<FileName>.mp4``; relative to ``root``
            like the manifest's ``Path`` (or absolute); ignored for ``"real"``.
        classes: class ids to classify; ``label`` is the position of a row's class id in this
            list, rows of other classes are dropped (EchoDream: ``[0, 1]`` ASD, ``[2, 3]`` PAH).
        root: folder the ``Path`` column (and ``samples_dir``) are relative to.
        validation: ``"real"`` (the real VAL videos select the epoch) or ``"source"`` (the
            source's own VAL videos, or its fold, do).
        folds: one fold of a cross-validation, or None for the fixed splits.

    Returns:
        Columns FileName, Path, FPS, Split (TRAIN | VAL), class_id, class_name, label,
        source (``"real"`` | ``"synthetic"``).

    Raises:
        DataError: a missing file or column, a split outside TRAIN/VAL/TEST, a class id that
            is not an integer or has two names, a class of ``classes`` absent from the
            manifest, a missing video or FPS (naming the file, row and fix); no TRAIN or VAL
            videos of ``classes``.
        ValueError: unknown source or validation, fewer than two classes, no samples_dir for
            a synthetic source, fewer pooled videos than folds.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if validation not in VALIDATIONS:
        raise ValueError(f"validation must be one of {VALIDATIONS}, got {validation!r}")
    classes = _check_classes(classes)
    if source != "real" and samples_dir is None:
        raise ValueError(f"source {source!r} needs samples_dir (a folder of generated videos)")
    real, real_path = _real_table(manifest)
    parts = [(real, real_path)] if source != "synthetic" else []
    if source != "real":
        parts.append(_synthetic_table(samples_dir, root))

    pooled = ["TRAIN", "VAL"] if folds is not None or validation == "source" else ["TRAIN"]
    roles = []
    for table, _ in parts:
        role = table["Split"].where(table["Split"].isin(pooled))
        if validation == "real" and table["source"].iloc[0] == "real":
            role = role.where(table["Split"] == "TRAIN")
        roles.append(role)
    if folds is not None:
        sizes = [int(r.notna().sum()) for r in roles]
        validating = kfold_validation(sum(sizes), folds.k, folds.seed)[folds.fold - 1]
        start = 0
        for i, role in enumerate(roles):
            in_pool = np.flatnonzero(role.notna().to_numpy())
            in_fold = np.isin(np.arange(start, start + len(in_pool)), validating)
            role.iloc[in_pool] = np.where(in_fold, "VAL", "TRAIN")
            start += len(in_pool)
            roles[i] = role
    if validation == "real":
        roles = [r.where(r == "TRAIN") for r in roles]
        if source == "synthetic":
            parts.insert(0, (real, real_path))
            roles.insert(0, pd.Series(np.nan, index=real.index, dtype=object))
        first = roles[0]
        roles[0] = first.where(real["Split"] != "VAL", "VAL")

    labelled = [
        _labelled_part(table.assign(Role=role), path, classes, root)
        for (table, path), role in zip(parts, roles, strict=True)
    ]
    # Errors about these rows (e.g. a fold without videos of a class) name the csvs and fold.
    described = " + ".join(
        str(path) for _, path in parts if path != real_path or source != "synthetic"
    )
    if folds is not None:
        described += f" (cross-validation fold {folds.fold} of {folds.k})"
    rows = _finish(labelled, described)
    for split in ("TRAIN", "VAL"):
        if not (rows["Split"] == split).any():
            raise DataError(
                described,
                f"no {split} videos of classes {classes}",
                "check the split and classes (or use fewer cross-validation folds)",
            )
    return rows


def heldout_rows(
    test_set: str,
    manifest: str | Path,
    samples_dir: str | Path | None,
    classes: list[int],
    root: str | Path = ".",
) -> pd.DataFrame:
    """The TEST rows of ``classes``, labelled as :func:`training_rows` labels them.

    Args:
        test_set: ``"real"`` (the manifest's TEST videos) or ``"synthetic"`` (the samples'
            FileList's TEST videos; EchoDream tests its "synthetic only" classifiers so).
        manifest, samples_dir, classes, root: as :func:`training_rows`'s.

    Returns:
        The columns of :func:`training_rows`, Split all TEST, source the test set.
    """
    if test_set not in TEST_SETS:
        raise ValueError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    classes = _check_classes(classes)
    if test_set == "real":
        table, path = _real_table(manifest)
    elif samples_dir is None:
        raise ValueError("the synthetic test set needs samples_dir (a folder of generated videos)")
    else:
        table, path = _synthetic_table(samples_dir, root)
    role = table["Split"].where(table["Split"] == "TEST")
    rows = _finish([_labelled_part(table.assign(Role=role), path, classes, root)], str(path))
    if rows.empty:
        raise DataError(
            path,
            f"no {test_set} TEST videos of classes {classes}",
            "check the split (a synthetic set needs sampling.split with a TEST share)",
        )
    return rows


def sample_rows(
    samples_dir: str | Path, classes: list[int], root: str | Path = "."
) -> pd.DataFrame:
    """Every synthetic video of ``classes`` in a samples folder, whatever its split (e.g. to
    check that a class-conditioned generator's videos are classified as requested).

    Returns:
        The columns of :func:`training_rows`, Split as the FileList gives it, source
        ``"synthetic"``.
    """
    classes = _check_classes(classes)
    table, path = _synthetic_table(samples_dir, root)
    return _finish(
        [_labelled_part(table.assign(Role=table["Split"]), path, classes, root)], str(path)
    )
