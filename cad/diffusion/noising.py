"""The forward process and its inversions (paper sec. 3.1): ``x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps``.

``gamma`` is one value per sample, shape (B,) (or a scalar), broadcast over the other dimensions.
"""
from __future__ import annotations

from torch import Tensor


def _expand(gamma: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) or scalar gamma to broadcast against ``like`` (B, ...)."""
    return gamma.reshape(gamma.shape + (1,) * (like.ndim - gamma.ndim)).to(like.dtype)


def add_noise(x0: Tensor, gamma: Tensor, eps: Tensor) -> Tensor:
    """x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps."""
    g = _expand(gamma, x0)
    return g.sqrt() * x0 + (1 - g).sqrt() * eps


def x0_from_eps(x_t: Tensor, gamma: Tensor, eps_hat: Tensor) -> Tensor:
    """x0_hat = (x_t - sqrt(1 - gamma) eps_hat) / sqrt(gamma)."""
    g = _expand(gamma, x_t)
    return (x_t - (1 - g).sqrt() * eps_hat) / g.sqrt()


def eps_from_x0(x_t: Tensor, gamma: Tensor, x0: Tensor) -> Tensor:
    """eps = (x_t - sqrt(gamma) x0) / sqrt(1 - gamma)."""
    g = _expand(gamma, x_t)
    return (x_t - g.sqrt() * x0) / (1 - g).sqrt()
