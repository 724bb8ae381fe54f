"""EF re-balancing (echogen.data.ef_balance): the target list fills every bin up to the
count asked for, seeded; balanced pools cap bins as EchoDiffusion's EchoVideoEFextended."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echogen.data.ef_balance import balanced_ef_targets, balanced_rows, ef_bins


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
