"""Scores for predictions: EF regression (MAE, RMSE, R², bootstrap CIs) and classification.

EF regressors are reported as EchoNet-Dynamic does (PAPERS.md §1): MAE, RMSE and R² on the
test split with percentile bootstrap confidence intervals over paired (true, predicted)
resamples. Classifiers (e.g. RV failure, PAPERS.md §7) get accuracy, balanced accuracy and
ROC AUC. Definitions follow scikit-learn, which the tests use as the reference; it is not
imported here so that the library carries no metrics-only dependency.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _as_vector(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise ValueError(f"{name} is not finite at index {int(bad[0])} ({array[bad[0]]})")
    return array


def _paired(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = _as_vector("y_true", y_true)
    y_pred = _as_vector("y_pred", y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}")
    return y_true, y_pred


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_true - y_pred)))


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    if ss_tot == 0:
        # scikit-learn's convention for constant targets (force_finite): a perfect fit scores
        # 1, anything else 0. Keeps bootstrap resamples of tiny sets finite.
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


EF_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": _mae,
    "rmse": _rmse,
    "r2": _r2,
}


def ef_metrics(y_true, y_pred) -> dict[str, float | int]:
    """MAE, RMSE and R² (1 - SS_res/SS_tot, scikit-learn's definition) of EF predictions.

    Args:
        y_true, y_pred: 1-D arrays of the same length, finite (EF in %).

    Returns:
        {"mae": float, "rmse": float, "r2": float, "n": int}.
    """
    y_true, y_pred = _paired(y_true, y_pred)
    scores: dict[str, float | int] = {name: fn(y_true, y_pred) for name, fn in EF_METRICS.items()}
    scores["n"] = len(y_true)
    return scores


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float],
    y_true,
    y_pred,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``fn(y_true, y_pred)``.

    As ``echonet.utils.bootstrap``: draw ``n_boot`` resamples of the pairs with replacement,
    sort the statistic, and take the order statistics at ``round(q * n_boot)``. EchoNet's own
    code uses q = 0.05 and 0.95 (a 90% interval labelled 95%); here q = alpha/2 and
    1 - alpha/2, so ``alpha=0.10`` reproduces EchoNet's interval and the default gives 95%.
    The draws come from ``numpy.random.default_rng(seed)``, so the interval is deterministic.

    Args:
        fn: statistic of two float64 arrays (y_true, y_pred) -> float.
        y_true, y_pred: paired 1-D arrays of the same length, finite.
        n_boot: number of resamples.
        seed: seed of the resampling generator.
        alpha: 1 - coverage.

    Returns:
        (low, high).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y_true, y_pred = _paired(y_true, y_pred)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        index = rng.integers(0, n, size=n)
        stats[b] = fn(y_true[index], y_pred[index])
    stats.sort()
    low = stats[int(round(alpha / 2 * n_boot))]
    high = stats[min(int(round((1 - alpha / 2) * n_boot)), n_boot - 1)]
    return float(low), float(high)


def _ordinal(q: float) -> str:
    """``2.5`` -> ``"2.5th"``, ``5`` -> ``"5th"``, ``97.5`` -> ``"97.5th"``."""
    return f"{q:g}th"


def interval_label(n_boot: int, seed: int, alpha: float = 0.05) -> str:
    """How a table's intervals were made, e.g. ``95 % percentile-bootstrap CI (2.5th-97.5th
    percentiles of 1000 resamples, seed 0)``; ``alpha=0.10`` is named as EchoNet's interval."""
    low, high = 100 * alpha / 2, 100 * (1 - alpha / 2)
    label = (
        f"{100 * (1 - alpha):g} % percentile-bootstrap CI ({_ordinal(low)}-{_ordinal(high)} "
        f"percentiles of {n_boot} resamples, seed {seed})"
    )
    if np.isclose(alpha, 0.10):
        label += "; EchoNet-Dynamic's interval, which it labels 95 %"
    return label


def ef_report(
    y_true, y_pred, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05
) -> dict[str, object]:
    """EF metrics with bootstrap confidence intervals.

    Every metric uses the same seed, hence the same resamples.

    Returns:
        {"mae"|"rmse"|"r2": {"value": float, "ci_low": float, "ci_high": float},
         "n": int, "n_boot": int, "seed": int, "alpha": float}.
    """
    y_true, y_pred = _paired(y_true, y_pred)
    report: dict[str, object] = {}
    for name, fn in EF_METRICS.items():
        low, high = bootstrap_ci(fn, y_true, y_pred, n_boot=n_boot, seed=seed, alpha=alpha)
        report[name] = {"value": fn(y_true, y_pred), "ci_low": low, "ci_high": high}
    report.update(n=len(y_true), n_boot=n_boot, seed=seed, alpha=alpha)
    return report


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    first = last - counts + 1
    return ((first + last) / 2)[inverse]


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic: P(score_pos > score_neg) + P(tie)/2."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true, scores) -> float:
    """Binary ROC AUC of scores for labels 0/1 (Mann-Whitney, ties counted 1/2); NaN when
    one class is absent."""
    positive = _as_vector("y_true", y_true).astype(bool)
    scores = _as_vector("scores", scores)
    if positive.all() or not positive.any():
        return float("nan")
    return _binary_auc(positive, scores)


def threshold_at_sensitivity(y_true, scores, sensitivity: float = 0.8) -> float:
    """The highest threshold ``t`` at which calling ``score >= t`` positive finds at least
    ``sensitivity`` of the positives (the operating point of "specificity at 80 %
    sensitivity"); NaN without positives."""
    positive = _as_vector("y_true", y_true).astype(bool)
    scores = _as_vector("scores", scores)
    if not 0 < sensitivity <= 1:
        raise ValueError(f"sensitivity must be in (0, 1], got {sensitivity}")
    ranked = np.sort(scores[positive])[::-1]
    if len(ranked) == 0:
        return float("nan")
    return float(ranked[int(np.ceil(sensitivity * len(ranked) - 1e-9)) - 1])


def confusion_at(y_true, scores, threshold: float) -> dict[str, float | int]:
    """Counts (tp, fp, tn, fn), sensitivity and specificity of ``score >= threshold``."""
    positive = _as_vector("y_true", y_true).astype(bool)
    called = _as_vector("scores", scores) >= threshold
    counts = {
        "tp": int((called & positive).sum()),
        "fp": int((called & ~positive).sum()),
        "tn": int((~called & ~positive).sum()),
        "fn": int((~called & positive).sum()),
    }
    n_pos, n_neg = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
    counts["sensitivity"] = counts["tp"] / n_pos if n_pos else float("nan")
    counts["specificity"] = counts["tn"] / n_neg if n_neg else float("nan")
    return counts


def specificity_at_sensitivity(y_true, scores, sensitivity: float = 0.8) -> float:
    """Specificity at :func:`threshold_at_sensitivity` (the best one reaching it)."""
    threshold = threshold_at_sensitivity(y_true, scores, sensitivity)
    if np.isnan(threshold):
        return float("nan")
    return float(confusion_at(y_true, scores, threshold)["specificity"])


def classification_metrics(y_true, scores, n_classes: int | None = None) -> dict[str, float | int]:
    """Accuracy, balanced accuracy and ROC AUC of class probabilities.

    Args:
        y_true: 1-D integer labels in [0, K).
        scores: probabilities, either [N] of the positive class (binary, K = 2; predicted
            positive when > 0.5) or [N, K] (predicted class = argmax, first on ties).
        n_classes: K, if given it must agree with ``scores``.

    Returns:
        {"accuracy", "balanced_accuracy" (mean recall over the classes present in y_true),
         "roc_auc" (binary: Mann-Whitney with ties counted 1/2; K > 2: macro average of
         one-vs-rest AUCs), "n"}.
    """
    labels = _as_vector("y_true", y_true)
    probs = np.asarray(scores, dtype=np.float64)
    if probs.ndim not in (1, 2) or len(probs) != len(labels):
        raise ValueError(
            f"scores must be [N] or [N, K] with N = {len(labels)} (len of y_true), "
            f"got shape {probs.shape}"
        )
    bad = np.argwhere(~np.isfinite(probs))
    if len(bad):
        raise ValueError(f"scores is not finite at index {tuple(int(i) for i in bad[0])}")
    k = 2 if probs.ndim == 1 else probs.shape[1]
    if n_classes is not None and n_classes != k:
        raise ValueError(f"n_classes is {n_classes} but scores imply {k} classes")
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= k))
    if len(bad):
        raise ValueError(f"y_true[{int(bad[0])}] = {labels[bad[0]]} is not a class in 0..{k - 1}")
    labels = labels.astype(np.int64)

    if probs.ndim == 1:
        bad = np.flatnonzero((probs < 0) | (probs > 1))
        if len(bad):
            raise ValueError(f"scores[{int(bad[0])}] = {probs[bad[0]]} is not a probability")
        predicted = (probs > 0.5).astype(np.int64)
        one_vs_rest = [(1, probs)]
    else:
        predicted = probs.argmax(axis=1)
        one_vs_rest = [(c, probs[:, c]) for c in range(k)]
    for c, _ in one_vs_rest:
        if (labels == c).all() or not (labels == c).any():
            raise ValueError(f"ROC AUC is undefined: y_true needs class {c} and another class")

    present = np.unique(labels)
    recalls = [np.mean(predicted[labels == c] == c) for c in present]
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(np.mean(recalls)),
        "roc_auc": float(np.mean([_binary_auc(labels == c, s) for c, s in one_vs_rest])),
        "n": len(labels),
    }
