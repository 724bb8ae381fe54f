"""Class prediction with a trained video classifier, and the real/synthetic comparison table.

EchoDream (``/work/shared/PAPERS.md`` §5) trains its CardiacNet classifiers on real or on
synthetic videos and tests them on real TEST videos (its "synthetic only" runs on synthetic
TEST videos; its "real+synthetic" runs are synthetic-trained, real-tested), each setting 5
times (5-fold cross-validation); echogen adds a source trained on real and synthetic videos
together.
:func:`predict_classes` gives every video the softmax probabilities averaged over all its
clips (starts ``0, test_clip_stride, ...`` of the model's :class:`~echogen.data.ef_clips.ClipSpec`;
its one clip under ``"uniform"`` sampling);
:func:`predict_test_sets` does so for every TEST set asked for (a ``test_set`` column).
:func:`score_sources` scores each training source of one task on one TEST set with accuracy,
balanced accuracy and ROC AUC (:func:`echogen.metrics.scores.classification_metrics`) and
percentile bootstrap 95 % intervals (:func:`echogen.metrics.scores.bootstrap_ci`, the same
resamples for every metric), one row per source; :func:`score_folds` scores cross-validated
classifiers as EchoDream reports them (each fold's value, their mean and population
standard deviation). :func:`classification_tables` writes every task's (the workflow's
table).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echogen.data.class_rows import TEST_SETS, heldout_rows
from echogen.data.ef_clips import ClassClipDataset
from echogen.data.io import atomic_path, write_json
from echogen.metrics.scores import bootstrap_ci, classification_metrics, interval_label
from echogen.models.regressor import load_classifier
from echogen.pipelines.ef_prediction import all_clip_outputs

log = logging.getLogger(__name__)

METRICS = ("accuracy", "balanced_accuracy", "roc_auc")
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc", "roc_auc": "ROC AUC"}
PROB_PREFIX = "prob_"
ALPHA = 0.05


def prob_columns(n_classes: int) -> list[str]:
    """``["prob_0", ..., "prob_<K-1>"]``: the probability columns of :func:`predict_classes`."""
    return [f"{PROB_PREFIX}{k}" for k in range(n_classes)]


def predict_classes(
    model_dir: str | Path,
    rows: pd.DataFrame,
    device: str = "cpu",
    batch_size: int = 8,
    root: str | Path = ".",
) -> pd.DataFrame:
    """Class probabilities of every video, averaged over all of its clips.

    Args:
        model_dir: export folder of :func:`~echogen.training.classifier.train_classifier`.
        rows: FileName, Path and FPS (e.g. :func:`~echogen.data.class_rows.heldout_rows`);
            ``label`` (the true class, may be absent) is copied.
        device: torch device of the forward passes.
        batch_size: clips per forward pass (clips of consecutive videos share a batch).
        root: folder that the ``Path`` column is relative to.

    Returns:
        Columns FileName, label (true; ``<NA>`` when unknown), pred (argmax of the mean
        probabilities, first on ties), ``prob_<k>`` for each label k (softmax probabilities
        averaged over the clips), n_clips. ``attrs["classes"]`` holds the model's class list.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model, spec, classes = load_classifier(model_dir)
    model = model.to(device).eval()
    n_classes = model.config.out_features
    if n_classes < 2:
        raise ValueError(f"{model_dir} holds a 1-output model, not a classifier")
    known = "label" in rows.columns
    labels = rows["label"] if known else pd.Series(0, index=rows.index)
    dataset = ClassClipDataset(rows.assign(label=labels.fillna(0)), spec, False, 0, root)

    per_video = all_clip_outputs(
        model,
        dataset,
        batch_size,
        device,
        lambda logits: torch.softmax(logits, dim=1),
        "predict classes",
    )
    counts = [len(p) for p in per_video]
    mean = np.stack([p.mean(axis=0) for p in per_video])

    table = pd.DataFrame(
        {
            "FileName": [str(v) for v in rows["FileName"]],
            "label": pd.array(rows["label"] if known else [pd.NA] * len(rows), dtype="Int64"),
            "pred": mean.argmax(axis=1),
        }
    )
    for k, column in enumerate(prob_columns(n_classes)):
        table[column] = mean[:, k]
    table["n_clips"] = counts
    table.attrs["classes"] = classes
    log.info("predicted classes of %d videos (%d clips)", len(table), sum(counts))
    return table


def predict_test_sets(
    model_dir: str | Path,
    manifest: str | Path,
    samples_dir: str | Path | None,
    test_sets: list[str],
    device: str = "cpu",
    root: str | Path = ".",
) -> pd.DataFrame:
    """:func:`predict_classes` on the TEST videos of each test set, the model's classes.

    Args:
        model_dir: export folder of a classifier.
        manifest: the real videos' manifest (``"real"`` test set).
        samples_dir: the synthetic samples folder (``"synthetic"`` test set), or None.
        test_sets: ``"real"`` and/or ``"synthetic"``
            (:func:`~echogen.data.class_rows.heldout_rows`).
        device: torch device of the forward passes.
        root: folder that paths are relative to.

    Returns:
        ``test_set`` then :func:`predict_classes`'s columns, test set by test set.
    """
    if not test_sets or any(t not in TEST_SETS for t in test_sets):
        raise ValueError(f"test_sets must be a non-empty list of {TEST_SETS}, got {test_sets!r}")
    _, _, classes = load_classifier(model_dir)
    ids = [c["class_id"] for c in classes]
    tables = []
    for test_set in test_sets:
        rows = heldout_rows(test_set, manifest, samples_dir, ids, root)
        predictions = predict_classes(model_dir, rows, device, root=root)
        tables.append(predictions.assign(test_set=test_set))
    table = pd.concat(tables, ignore_index=True)
    return table[["test_set", *(c for c in table.columns if c != "test_set")]]


class _SameTest:
    """Reads predictions tables that must all be of one TEST set: the first fixes the videos
    and the number of classes, every later one must agree."""

    def __init__(self):
        self.videos: list[str] | None = None
        self.n_classes: int | None = None
        self.first = ""

    def __call__(self, predictions: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities [N, K]) of one table, rows in FileName order."""
        order = predictions.sort_values("FileName", kind="stable").reset_index(drop=True)
        names = order["FileName"].astype(str).tolist()
        if self.videos is None:
            self.videos, self.first = names, what
        elif names != self.videos:
            raise ValueError(
                f"{what} are for other videos than {self.first}: every source (and fold) "
                "must be tested on the same TEST videos"
            )
        columns = sorted(
            (c for c in order.columns if c.startswith(PROB_PREFIX)),
            key=lambda c: int(c.removeprefix(PROB_PREFIX)),
        )
        if columns != prob_columns(len(columns)) or len(columns) < 2:
            raise ValueError(f"{what} need columns prob_0..prob_<K-1>, K >= 2")
        if "label" not in order or order["label"].isna().any():
            raise ValueError(f"{what} need a true label for every video")
        labels, probs = order["label"].to_numpy(np.int64), order[columns].to_numpy(np.float64)
        if self.n_classes is None:
            self.n_classes = probs.shape[1]
        elif probs.shape[1] != self.n_classes:
            raise ValueError(f"{what} have {probs.shape[1]} classes, not {self.n_classes}")
        return labels, probs


def score_sources(
    results: dict[str, pd.DataFrame],
    n_bootstrap: int = 10000,
    seed: int = 0,
    classes: list[str] | None = None,
) -> dict:
    """Score each training source's TEST predictions of one task.

    Every metric of every source uses the same bootstrap resamples (``seed``): resample b of
    source A and of source B draw the same videos, so the intervals compare like with like.
    A resample that lacks a class leaves its ROC AUC undefined (accuracy and balanced
    accuracy, the mean recall over the classes present, stay defined); if any resample of a
    source is undefined, that source's ROC AUC interval is null and ``n_undefined`` counts
    them (only likely for test sets of a few videos per class).

    Args:
        results: training source (``"real"``, ``"synthetic"``, ``"real+synthetic"``, ...) ->
            its :func:`predict_classes` table; every table must hold the same videos.
        n_bootstrap: bootstrap resamples.
        seed: bootstrap seed.
        classes: class names per label; default: the names in the predictions'
            ``attrs["classes"]`` if present, else ``"0"``, ``"1"``, ....

    Returns:
        ``{"n_bootstrap", "seed", "alpha", "classes", "n", "rows": [{"source", "n",
        "n_undefined", "accuracy"|"balanced_accuracy"|"roc_auc": {"value", "ci_low",
        "ci_high"}}]}``.
    """
    if not results:
        raise ValueError("results is empty: pass {training source: predictions}")
    same = _SameTest()
    rows = []
    for source, predictions in results.items():
        labels, probs = same(predictions, f"predictions of {source!r}")
        rows.append({"source": source, **_score_source(labels, probs, n_bootstrap, seed)})
    return {
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "alpha": ALPHA,
        "classes": _class_names(classes, next(iter(results.values())), same.n_classes),
        "n": len(same.videos),
        "rows": rows,
    }


def score_folds(
    results: dict[str, list[pd.DataFrame]],
    classes: list[str] | None = None,
) -> dict:
    """Score cross-validated classifiers of one task on one TEST set, as EchoDream reports
    them: every metric on each fold's predictions, then the mean and population standard
    deviation (``np.std``, ddof 0) over the folds.

    Args:
        results: training source -> its folds' :func:`predict_classes` tables (fold 1
            first); every table must hold the same videos.
        classes: class names per label; default as :func:`score_sources`'s.

    Returns:
        ``{"folds", "classes", "n", "rows": [{"source", "n", "accuracy"|"balanced_accuracy"|
        "roc_auc": {"value" (the mean), "std", "folds": [per fold]}}]}``.
    """
    if not results:
        raise ValueError("results is empty: pass {training source: [fold predictions]}")
    counts = {source: len(tables) for source, tables in results.items()}
    if len(set(counts.values())) != 1 or min(counts.values()) < 1:
        raise ValueError(f"every source needs the same number of folds (>= 1), got {counts}")
    same = _SameTest()
    rows = []
    for source, tables in results.items():
        per_fold = []
        for fold, predictions in enumerate(tables, start=1):
            labels, probs = same(predictions, f"fold {fold} of {source!r}")
            per_fold.append(classification_metrics(labels, probs, same.n_classes))
        entry: dict = {"source": source, "n": len(same.videos)}
        for name in METRICS:
            values = [float(m[name]) for m in per_fold]
            entry[name] = {
                "value": float(np.mean(values)),
                "std": float(np.std(values)),
                "folds": values,
            }
        rows.append(entry)
    return {
        "folds": len(next(iter(results.values()))),
        "classes": _class_names(classes, next(iter(results.values()))[0], same.n_classes),
        "n": len(same.videos),
        "rows": rows,
    }


def classification_tables(
    tasks: dict[str, dict[str, pd.DataFrame | list[pd.DataFrame]]],
    txt: str | Path,
    json: str | Path,
    n_bootstrap: int = 10000,
    seed: int = 0,
    trunk: str | None = None,
    classes: dict[str, list[str]] | None = None,
    plumbing: bool = False,
) -> dict:
    """Score several tasks (EchoDream: ASD vs Non-ASD, PAH vs Non-PAH) into one table.

    Each task's predictions are split by their ``test_set`` column (``"real"`` when absent)
    and each TEST set is scored apart: one table per source (:func:`score_sources`, with
    bootstrap intervals), or, when a source gives a list of several folds' predictions,
    :func:`score_folds`' mean ± std over the folds.

    Args:
        tasks: task name -> training source -> predictions (one table, or one per fold).
        txt: text file: a line naming the trunk's start, then each task's tables under a
            ``task <name>`` line; written atomically.
        json: ``{"plumbing", "trunk", "tasks": {name: {test_set: report}}}``, written
            atomically.
        n_bootstrap: bootstrap resamples (the same resamples for every source of a task).
        seed: bootstrap seed.
        trunk: the Kinetics-400 weights file the classifiers started from, or None (random
            initialisation, said in the table).
        classes: task -> class names per label (default: :func:`score_sources`'s).
        plumbing: the classifiers or the generator are CPU-sized presets (or the data a
            phantom); the table then starts with a PLUMBING CHECK line and the JSON says so.
    """
    if not tasks:
        raise ValueError("tasks is empty: pass {task: {training source: predictions}}")
    reports: dict[str, dict] = {}
    for name, results in tasks.items():
        folds = {s: p if isinstance(p, list) else [p] for s, p in results.items()}
        names = (classes or {}).get(name)
        reports[name] = {}
        for test_set in _test_sets(folds):
            chosen = {s: [_of_test_set(p, test_set) for p in ps] for s, ps in folds.items()}
            if all(len(ps) == 1 for ps in chosen.values()):
                single = {s: ps[0] for s, ps in chosen.items()}
                report = score_sources(single, n_bootstrap, seed, names)
            else:
                report = score_folds(chosen, names)
            reports[name][test_set] = {"test_set": test_set, **report}
    start = (
        f"Kinetics-400 weights {trunk}"
        if trunk
        else "random initialisation (no Kinetics-400 weights)"
    )
    lines = [f"Video classifiers' trunk: {start}"]
    if plumbing:
        lines.insert(
            0,
            "PLUMBING CHECK: the classifiers and/or the generative model are tiny presets or "
            "trained on phantom data; these numbers only show that the pipeline runs and are "
            "not comparable to papers",
        )
    for name, by_test_set in reports.items():
        lines += ["", f"task {name}"]
        for report in by_test_set.values():
            lines.append(_format_table(report).rstrip("\n"))
    record = {"plumbing": plumbing, "trunk": trunk, "tasks": reports}
    write_json(json, record)
    with atomic_path(txt) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return record


def _test_sets(folds: dict[str, list[pd.DataFrame]]) -> list[str]:
    """The TEST sets in the predictions, in :data:`TEST_SETS` order."""
    seen = set()
    for tables in folds.values():
        for table in tables:
            seen |= set(table["test_set"]) if "test_set" in table else {"real"}
    return [t for t in TEST_SETS if t in seen] + sorted(seen - set(TEST_SETS))


def _of_test_set(predictions: pd.DataFrame, test_set: str) -> pd.DataFrame:
    if "test_set" not in predictions:
        return predictions
    chosen = predictions[predictions["test_set"] == test_set].reset_index(drop=True)
    chosen.attrs = predictions.attrs
    return chosen


def _class_names(classes: list[str] | None, first: pd.DataFrame, n_classes: int) -> list[str]:
    """The given names, else the predictions' ``attrs["classes"]``, else ``"0"``, ``"1"``...;
    their number must be ``n_classes``."""
    if classes is None:
        listed = first.attrs.get("classes")
        classes = (
            [c["class_name"] for c in listed] if listed else [str(k) for k in range(n_classes)]
        )
    if len(classes) != n_classes:
        raise ValueError(f"classes names {len(classes)} classes, the predictions {n_classes}")
    return list(classes)


def _score_source(labels: np.ndarray, probs: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    """Point values and bootstrap intervals of every metric for one source."""
    k = probs.shape[1]
    point = classification_metrics(labels, probs, n_classes=k)
    undefined = 0

    def metric(name: str):
        def fn(y_true: np.ndarray, index: np.ndarray) -> float:
            # bootstrap_ci resamples (label, video index) pairs; the index picks the rows of
            # probabilities, so the [N, K] scores travel with their labels.
            nonlocal undefined
            scores = probs[index.astype(np.int64)]
            if np.unique(y_true).size == k:
                return classification_metrics(y_true, scores, k)[name]
            # A class is missing from this resample: ROC AUC is undefined, the others are
            # classification_metrics' definitions restricted to the classes present.
            predicted = scores.argmax(axis=1)
            if name == "accuracy":
                return float(np.mean(predicted == y_true))
            if name == "balanced_accuracy":
                return float(
                    np.mean([np.mean(predicted[y_true == c] == c) for c in np.unique(y_true)])
                )
            undefined += 1
            return float("nan")

        return fn

    entry: dict = {"n": int(point["n"])}
    for name in METRICS:
        low, high = bootstrap_ci(
            metric(name), labels, np.arange(len(labels)), n_boot=n_bootstrap, seed=seed, alpha=ALPHA
        )
        if name == "roc_auc" and undefined:
            low = high = None
        entry[name] = {"value": point[name], "ci_low": low, "ci_high": high}
    entry["n_undefined"] = undefined
    return entry


def _format_table(report: dict) -> str:
    """One task's report on one TEST set as an aligned text table."""
    folds = report.get("folds")
    header = ["training data", "N", *(METRIC_LABELS[m] for m in METRICS)]
    body = []
    for row in report["rows"]:
        cells = [row["source"], str(row["n"])]
        for name in METRICS:
            m = row[name]
            if folds:
                cells.append(f"{m['value']:.3f} ± {m['std']:.3f}")
                continue
            interval = "n/a" if m["ci_low"] is None else f"{m['ci_low']:.3f}, {m['ci_high']:.3f}"
            cells.append(f"{m['value']:.3f} [{interval}]")
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    how = (
        f"mean ± population std over {folds} cross-validation folds (one classifier each)"
        if folds
        else interval_label(report["n_bootstrap"], report["seed"], report["alpha"])
    )
    lines = [
        f"Classification on {report['n']} {report.get('test_set', 'real')} TEST videos, "
        f"classes {', '.join(report['classes'])}; {how}",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    undefined = [r["source"] for r in report["rows"] if r.get("n_undefined")]
    if undefined:
        lines.append(
            f"n/a: some resamples of {', '.join(undefined)} lack a class, so their ROC AUC is "
            "undefined; the test set is too small for its interval"
        )
    return "\n".join(line.rstrip() for line in lines) + "\n"
