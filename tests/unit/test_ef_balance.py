"""EF re-balancing (echogen.data.ef_balance): the target list fills every bin up to the
count asked for, seeded; balanced pools cap bins as EchoDiffusion's EchoVideoEFextended."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echogen.data.ef_balance import (
    balanced_ef_targets,
    balanced_rows,
    describe_training,
    ef_bins,
    regressor_training_manifest,
)


def test_targets_flatten_the_histogram():
    rng = np.random.default_rng(0)
    real = np.clip(rng.normal(58, 9, size=3000), 8, 92)  # dense mid-range, sparse tails
    targets = balanced_ef_targets(real, per_bin=60, low=10, high=90, seed=1)
    assert targets.min() >= 10 and targets.max() < 90
    combined = np.bincount(ef_bins(np.concatenate([real, targets])), minlength=101)
    real_counts = np.bincount(ef_bins(real), minlength=101)
    for b in range(10, 90):
        assert combined[b] == max(60, real_counts[b]), b
    assert (np.bincount(ef_bins(targets), minlength=101)[real_counts >= 60] == 0).all()
    again = balanced_ef_targets(real, per_bin=60, low=10, high=90, seed=1)
    assert np.array_equal(targets, again)
    assert not np.array_equal(targets, balanced_ef_targets(real, 60, 10, 90, seed=2))
    with pytest.raises(ValueError, match="NaN"):
        balanced_ef_targets(np.array([50.0, np.nan]), per_bin=2)
    with pytest.raises(ValueError, match="per_bin"):
        balanced_ef_targets(real, per_bin=0)


def test_balanced_rows_cap_each_bin():
    rows = pd.DataFrame({"FileName": [f"v{i}" for i in range(9)],
                         "EF": [5.0, 20.1, 20.5, 20.9, 21.0, 35.2, 35.7, 95.0, 50.0]})  # fmt: skip
    out = balanced_rows(rows, per_bin=2, low=10, high=90, seed=0)
    assert list(ef_bins(out["EF"])) == [20, 20, 21, 35, 35, 50]
    assert set(out["FileName"]) <= set(rows["FileName"]) and out["FileName"].is_unique
    assert len(balanced_rows(rows, per_bin=None, low=10, high=90)) == 7
    # The reference's draw (np.random.choice with replacement) may repeat a video.
    repeats = [
        balanced_rows(rows, per_bin=2, seed=s, with_replacement=True)["FileName"].is_unique
        for s in range(20)
    ]
    assert not all(repeats)


def _manifest(prefix, splits, efs):
    return pd.DataFrame({"FileName": [f"{prefix}{i}" for i in range(len(efs))],
                         "EF": efs, "Split": splits})  # fmt: skip


def test_regressor_training_manifest_pools_balances_and_limits():
    real = _manifest("r", ["TRAIN"] * 4 + ["VAL", "TEST"], [20.5, 20.7, 35.0, 60.2, 50.0, 44.0])
    synthetic = _manifest("s", ["TRAIN"] * 3 + ["VAL"], [20.1, 41.0, 42.0, 30.0])
    # Real only: TRAIN then VAL, TEST dropped.
    only = regressor_training_manifest(real)
    assert list(only["FileName"]) == ["r0", "r1", "r2", "r3", "r4"]
    # Synthetic only (EchoNet-Synthetic): its own TRAIN and VAL rows.
    synth = regressor_training_manifest(real, synthetic)
    assert list(synth["FileName"]) == ["s0", "s1", "s2", "s3"]
    # Pooled (EchoDiffusion): real and synthetic TRAIN, real VAL.
    pooled = regressor_training_manifest(real, synthetic, with_real=True)
    assert list(pooled.loc[pooled.Split == "TRAIN", "FileName"]) == [
        "r0", "r1", "r2", "r3", "s0", "s1", "s2"]  # fmt: skip
    assert list(pooled.loc[pooled.Split == "VAL", "FileName"]) == ["r4"]
    # Balanced: bin 20 holds three rows, capped at 2; every other bin kept whole.
    capped = regressor_training_manifest(real, synthetic, with_real=True,
                                         balance={"per_bin": 2}, seed=3)  # fmt: skip
    train = capped[capped.Split == "TRAIN"]
    assert list(ef_bins(train["EF"])) == [20, 20, 35, 41, 42, 60]
    assert train["FileName"].is_unique
    ranged = regressor_training_manifest(
        real, synthetic, with_real=True, balance={"per_bin": None, "ef_range": [30, 50]}
    )
    assert list(ranged.loc[ranged.Split == "TRAIN", "FileName"]) == ["r2", "s1", "s2"]
    # With replacement, a row drawn twice gets a distinct name.
    names = set()
    for seed in range(20):
        drawn = regressor_training_manifest(
            real, synthetic, with_real=True, seed=seed,
            balance={"per_bin": 2, "with_replacement": True})  # fmt: skip
        assert drawn["FileName"].is_unique
        names |= set(drawn["FileName"])
    assert any("~1" in name for name in names)
    # Limit: that many TRAIN rows at random, without replacement; seeded.
    limited = regressor_training_manifest(real, limit=2, seed=1)
    train = limited[limited.Split == "TRAIN"]
    assert len(train) == 2 and set(train["FileName"]) < {"r0", "r1", "r2", "r3"}
    assert limited.equals(regressor_training_manifest(real, limit=2, seed=1))
    assert len(regressor_training_manifest(real, limit=99)) == 5
    with pytest.raises(ValueError, match="limit"):
        regressor_training_manifest(real, limit=0)
    with pytest.raises(ValueError, match="both the real and the synthetic"):
        regressor_training_manifest(real, real, with_real=True)


def test_describe_training_names_the_pool():
    assert describe_training({"dataset": "dynamic"}) == "dynamic"
    assert describe_training({"dataset": "dynamic", "synthetic": "lvdm_dynamic"}) == "lvdm_dynamic"
    run = {"dataset": "dynamic", "synthetic": "cascade_1SCM_balanced", "with_real": True,
           "balance": {"per_bin": 20, "ef_range": [0, 100]}}  # fmt: skip
    assert describe_training(run) == (
        "dynamic + cascade_1SCM_balanced, <= 20 per 1-% EF bin in [0, 100]"
    )
    assert describe_training({"dataset": "dynamic", "limit": 790}) == (
        "dynamic, 790 TRAIN videos at random"
    )
