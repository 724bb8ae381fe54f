"""Feature statistics, the Fréchet distance between two Gaussians (FID, FVD) and the kernel
distance (KID).

The definitions follow StyleGAN-V's ``metric_utils.FeatureStats`` and
``frechet_video_distance.py``: features are summed in float64, the covariance is the biased
(1/n) one, ``Σxxᵀ/n − μμᵀ``, and the distance uses ``scipy.linalg.sqrtm`` with the real part
taken at the end. Running sums (not the features) are kept, so statistics of any number of
items fit in memory and can be cached exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from echogen.data.io import atomic_path


class FeatureStats:
    """Running float64 sums of feature vectors, enough for their mean and covariance.

    Args:
        num_features: feature dimension, or None to take it from the first batch.
        keep_features: also keep the features themselves (float64; KID needs them).
    """

    def __init__(self, num_features: int | None = None, keep_features: bool = False):
        self.num_features = num_features
        self.num_items = 0
        self.sum: np.ndarray | None = None
        self.sum_outer: np.ndarray | None = None
        self.keep_features = keep_features
        self._kept: list[np.ndarray] = []
        if num_features is not None:
            self._allocate(num_features)

    def _allocate(self, num_features: int) -> None:
        self.num_features = num_features
        self.sum = np.zeros(num_features, dtype=np.float64)
        self.sum_outer = np.zeros((num_features, num_features), dtype=np.float64)

    def append(self, x: np.ndarray | torch.Tensor) -> None:
        """Add a batch of features ``[N, D]`` (numpy or torch, any float dtype)."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D [N, D], got shape {x.shape}")
        if self.num_features is None:
            self._allocate(x.shape[1])
        elif x.shape[1] != self.num_features:
            raise ValueError(f"features have {x.shape[1]} dimensions, expected {self.num_features}")
        self.num_items += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x
        if self.keep_features:
            self._kept.append(x)

    @property
    def features(self) -> np.ndarray:
        """The kept features ``[N, D]`` (``keep_features`` only)."""
        if not self.keep_features:
            raise ValueError("these statistics were collected without keep_features")
        if not self._kept:
            return np.zeros((0, self.num_features or 0))
        if len(self._kept) > 1:
            self._kept = [np.concatenate(self._kept)]
        return self._kept[0]

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``[D]`` and biased covariance ``[D, D]``, both float64."""
        if self.num_items == 0:
            raise ValueError("no features were appended")
        mean = self.sum / self.num_items
        cov = self.sum_outer / self.num_items - np.outer(mean, mean)
        return mean, cov

    def to_npz(self, path: str | Path) -> None:
        """Save the running sums (atomically), so :meth:`from_npz` restores them bit for bit."""
        if self.num_items == 0:
            raise ValueError("no features were appended")
        with atomic_path(path) as tmp:
            # np.savez appends ".npz" to names without it; write through a file object instead.
            extra = {"features": self.features} if self.keep_features else {}
            with open(tmp, "wb") as f:
                np.savez(f, num_items=self.num_items, sum=self.sum, sum_outer=self.sum_outer,
                         **extra)  # fmt: skip

    @classmethod
    def from_npz(cls, path: str | Path) -> FeatureStats:
        with np.load(path) as data:
            stats = cls(num_features=int(data["sum"].shape[0]),
                        keep_features="features" in data.files)  # fmt: skip
            if stats.keep_features:
                stats._kept = [data["features"].astype(np.float64)]
            stats.num_items = int(data["num_items"])
            stats.sum = data["sum"].astype(np.float64)
            stats.sum_outer = data["sum_outer"].astype(np.float64)
        return stats


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance ``‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2·sqrtm(Σ1Σ2))`` between two Gaussians.

    As in StyleGAN-V, no diagonal offset is added for near-singular products; the
    (possibly complex) square root's real part is taken at the end.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be 1-D of equal length, got {mu1.shape} and {mu2.shape}")
    expected = (mu1.shape[0], mu1.shape[0])
    if sigma1.shape != expected or sigma2.shape != expected:
        raise ValueError(f"covariances must be {expected}, got {sigma1.shape} and {sigma2.shape}")
    mean_term = np.square(mu1 - mu2).sum()
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2 * covmean)))


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID as StyleGAN2-ADA's ``kernel_inception_distance.py``: the unbiased MMD² with the
    cubic polynomial kernel ``(x·y / D + 1)³``, averaged over ``num_subsets`` random subsets
    of ``m = min(n_real, n_fake, max_subset_size)`` items of each set (drawn without
    replacement from ``numpy.random.default_rng(seed)``; the reference uses the global
    ``np.random``). With ``m`` equal to both set sizes every subset is the whole set.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] of equal D, got {real.shape}, {fake.shape}")
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 items in each set, got {len(real)}, {len(fake)}")
    n = real.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        total += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(total / num_subsets / m)
