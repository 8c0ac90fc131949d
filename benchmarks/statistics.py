"""Feature statistics: the float64 mean and covariance a Frechet distance is computed from.

Features -> statistics -> metric: extractors (``benchmarks.features``) produce an (N, D) array, this module turns it
into a :class:`FeatureStats`, and ``benchmarks.metrics`` compares two of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def as_feature_matrix(features, name: str = "features") -> np.ndarray:
    """Return ``features`` as a float64 (N, D) array, or raise a ValueError that says what was wrong."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (N, D) array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def check_same_dim(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("real", "fake")) -> None:
    """Two feature sets compared by a metric must live in the same space."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"feature dimensions differ: {names[0]} has shape {a.shape}, {names[1]} has shape {b.shape}"
        )


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance (float64) of ``num`` feature vectors of dimension ``dim``."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int

    def __post_init__(self):
        if self.mu.ndim != 1 or self.sigma.shape != (self.mu.shape[0], self.mu.shape[0]):
            raise ValueError(f"inconsistent statistics: mu {self.mu.shape}, sigma {self.sigma.shape}")

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def feature_statistics(features) -> FeatureStats:
    """Mean and unbiased covariance (``np.cov``, as pytorch-fid and torch-fidelity) in float64."""
    x = as_feature_matrix(features)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    mu = x.mean(axis=0)
    sigma = np.cov(x, rowvar=False)
    return FeatureStats(mu=mu, sigma=np.atleast_2d(sigma), num=int(x.shape[0]))
