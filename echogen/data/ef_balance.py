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


def regressor_training_manifest(
    real: pd.DataFrame,
    synthetic: pd.DataFrame | None = None,
    with_real: bool = False,
    balance: dict | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The manifest an EF regressor run trains (TRAIN rows) and selects its epoch on (VAL rows).

    EchoDiffusion's re-balancing runs (``ef_regression/`` of HReynaud/EchoDiffusion):
    ``train_balanced.py`` pools the real TRAIN videos with generated ones and caps every 1-%
    EF bin (:func:`balanced_rows`), ``train_reference.py`` with ``limit`` trains on that many
    real TRAIN videos drawn at random; both select the epoch on the real VAL videos.

    Args:
        real: the real dataset's manifest.
        synthetic: a synthetic dataset's manifest (its EF is the requested one), or None.
        with_real: with ``synthetic``, pool its TRAIN rows with the real TRAIN rows and
            validate on the real VAL rows; without it, train and validate on the synthetic
            rows alone (EchoNet-Synthetic's synthetic-to-real experiment).
        balance: ``{"per_bin": int | None, "ef_range": [low, high], "with_replacement":
            bool}``: the pooled TRAIN rows balanced with :func:`balanced_rows`; a row drawn
            twice (``with_replacement``) gets ``FileName`` ``<name>~<k>``.
        limit: keep this many TRAIN rows drawn without replacement (all when there are fewer).
        seed: seeds the draws.

    Returns:
        TRAIN rows then VAL rows, the manifest's columns.

    Raises:
        ValueError: ``limit < 1``, or a FileName in both the real and the synthetic rows.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or >= 1, got {limit}")
    pools = []
    if synthetic is None or with_real:
        pools.append(real)
    if synthetic is not None:
        pools.append(synthetic)
    train = pd.concat([p[p["Split"] == "TRAIN"] for p in pools], ignore_index=True)
    val_source = real if synthetic is None or with_real else synthetic
    val = val_source[val_source["Split"] == "VAL"]
    if synthetic is not None and with_real:
        clash = sorted(set(real["FileName"]) & set(synthetic["FileName"]))
        if clash:
            raise ValueError(f"FileName(s) in both the real and the synthetic rows: {clash[:5]}")
    rng = np.random.default_rng([int(seed), 11])
    if limit is not None and limit < len(train):
        picks = np.sort(rng.choice(len(train), size=limit, replace=False))
        train = train.iloc[picks].reset_index(drop=True)
    if balance is not None:
        low, high = balance.get("ef_range", [0, 100])
        train = balanced_rows(
            train,
            balance.get("per_bin"),
            low=low,
            high=high,
            seed=int(rng.integers(2**31)),
            with_replacement=bool(balance.get("with_replacement", False)),
        )
        repeat = train.groupby("FileName").cumcount()
        train.loc[repeat > 0, "FileName"] = (
            train["FileName"].astype(str) + "~" + repeat.astype(str)
        )[repeat > 0]
    return pd.concat([train, val], ignore_index=True)


def describe_training(run: dict) -> str:
    """What an EF regressor run (a ``regressors.runs`` entry) trains on, for its tables:
    ``dynamic``, ``lvdm_dynamic``, ``dynamic + cascade_1SCM_balanced, <= 20 per 1-% EF bin
    in [0, 100]``, ``dynamic, 790 TRAIN videos at random``."""
    synthetic = run.get("synthetic")
    text = synthetic or run["dataset"]
    if synthetic and run.get("with_real"):
        text = f"{run['dataset']} + {synthetic}"
    if run.get("limit"):
        text += f", {run['limit']} TRAIN videos at random"
    balance = run.get("balance")
    if balance is not None:
        low, high = balance.get("ef_range", [0, 100])
        cap = balance.get("per_bin")
        cap_text = f"<= {cap} per 1-% EF bin" if cap else "every video"
        text += f", {cap_text} in [{low:g}, {high:g}]"
        if balance.get("with_replacement"):
            text += " (drawn with replacement)"
    return text
