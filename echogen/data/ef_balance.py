"""EF re-balancing: target EFs that flatten a dataset's EF histogram, and balanced training rows.

EchoDiffusion (``ef_regression/`` of HReynaud/EchoDiffusion, ``/work/shared/PAPERS.md`` §3)
generates videos for a list of EFs that fills the sparse parts of EchoNet-Dynamic's TRAIN
histogram (``diffusion/generate_samples/balanced_ef_list.csv``: 4,138 EFs in [10, 90], none
where real videos are dense), then trains EF regressors on real and generated videos pooled
and balanced per 1-% EF bin (``EchoVideoEFextended``: each integer bin capped at
``elem_per_bin`` entries, 5 to 100 in its configs).

The list itself comes from a notebook; here it is a seeded function of the real EFs and the
target per bin (:func:`balanced_ef_targets`). The pooling is :func:`balanced_rows`. One
deliberate difference, a switch: the reference caps a bin with ``np.random.choice(n, cap)``,
which draws *with* replacement (a video can appear twice while another of the bin is left
out); echogen draws without replacement unless ``with_replacement=True``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def ef_bins(ef: np.ndarray) -> np.ndarray:
    """The 1-% bin of each EF: ``int(ef)`` as the reference (``bbin = int(float(e))``)."""
    return np.floor(np.asarray(ef, dtype=float)).astype(int)


def balanced_ef_targets(
    real_ef: np.ndarray, per_bin: int, low: float = 10, high: float = 90, seed: int = 0
) -> np.ndarray:
    """EFs to generate so that every 1-% bin in ``[low, high)`` holds at least ``per_bin``
    videos once added to the real ones: ``max(0, per_bin - real count)`` EFs drawn
    uniformly inside each bin, bins in increasing order.

    Args:
        real_ef: the real (TRAIN) EFs, in %.
        per_bin: the count every bin is filled up to.
        low, high: the bins filled, ``int(low) .. ceil(high) - 1`` (EchoDiffusion: 10-90).
        seed: seeds the draws.

    Raises:
        ValueError: ``per_bin < 1``, ``low >= high`` or a range outside [0, 100], or a NaN EF.
    """
    real_ef = np.asarray(real_ef, dtype=float)
    if per_bin < 1:
        raise ValueError(f"per_bin must be >= 1, got {per_bin}")
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got {low}, {high}")
    if np.isnan(real_ef).any():
        raise ValueError(f"{int(np.isnan(real_ef).sum())} real EF value(s) are NaN")
    counts = pd.Series(ef_bins(real_ef)).value_counts()
    rng = np.random.default_rng(seed)
    targets = []
    for start in range(int(np.floor(low)), int(np.ceil(high))):
        need = per_bin - int(counts.get(start, 0))
        if need > 0:
            lo, hi = max(start, low), min(start + 1, high)
            targets.append(rng.uniform(lo, hi, size=need))
    return np.concatenate(targets) if targets else np.empty(0)


def balanced_rows(
    rows: pd.DataFrame,
    per_bin: int | None,
    low: float = 0,
    high: float = 100,
    seed: int = 0,
    with_replacement: bool = False,
) -> pd.DataFrame:
    """Rows (real and generated pooled, an ``EF`` column) balanced per 1-% EF bin: EFs outside
    ``[low, high]`` dropped, each bin with more than ``per_bin`` rows cut to ``per_bin`` drawn
    at random, the others kept whole (``per_bin`` None: no cap).

    Args:
        rows: the pooled rows.
        per_bin: the cap (EchoDiffusion's ``elem_per_bin``).
        low, high: the EF range kept (EchoDiffusion's ``min_ef``, ``max_ef``).
        seed: seeds the draws.
        with_replacement: draw a capped bin with replacement, as the reference's
            ``np.random.choice`` does.

    Returns:
        The kept rows in bin order, then their order in ``rows``; index reset.
    """
    if per_bin is not None and per_bin < 1:
        raise ValueError(f"per_bin must be None (no cap) or >= 1, got {per_bin}")
    ef = pd.to_numeric(rows["EF"], errors="coerce").to_numpy(dtype=float)
    keep = (ef >= low) & (ef <= high)
    kept = rows[keep].copy()
    kept["_bin"] = ef_bins(ef[keep])
    rng = np.random.default_rng(seed)
    parts = []
    for _, group in kept.groupby("_bin", sort=True):
        if per_bin is not None and len(group) > per_bin:
            picks = rng.choice(len(group), size=per_bin, replace=with_replacement)
            group = group.iloc[np.sort(picks) if not with_replacement else picks]
        parts.append(group)
    if not parts:
        return rows.iloc[0:0].copy()
    return pd.concat(parts).drop(columns="_bin").reset_index(drop=True)
