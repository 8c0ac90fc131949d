"""The eps-prediction loss (paper eq. 1 and 2) and how per-sample losses are reduced over a batch.

The loss is the unweighted mean squared error between the true noise and ``eps_hat``. CAD (eq. 2) feeds the coherence
to the denoiser and keeps every sample (``mode="mean"``); the Weighted baseline weights samples by their coherence
(``"weighted"``); the Filtered baseline drops low-coherence samples from the dataset, so its loss is the plain mean.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def per_sample_mse(eps_hat: Tensor, eps: Tensor) -> Tensor:
    """||eps - eps_hat||^2 averaged over every non-batch dimension: shape (B,). Computed in at least float32."""
    dtype = torch.promote_types(eps_hat.dtype, torch.float32)
    return (eps_hat.to(dtype) - eps.to(dtype)).square().flatten(1).mean(dim=1)


def _mean(per_sample: Tensor, coherence: Tensor | None) -> Tensor:
    return per_sample.mean()


def _weighted(per_sample: Tensor, coherence: Tensor | None) -> Tensor:
    weight = coherence.to(per_sample.dtype)
    return (per_sample * weight / (weight.mean() + 1e-8)).mean()


_REDUCTIONS: dict[str, Callable[[Tensor, Tensor | None], Tensor]] = {
    "mean": _mean,  # every sample counts the same; CAD itself (eq. 2)
    "weighted": _weighted,  # per-sample loss x c_i / mean(c)
}
_NEEDS_COHERENCE = {"weighted"}


def reduce_loss(per_sample: Tensor, coherence: Tensor | None, mode: str) -> Tensor:
    """Reduce a (B,) per-sample loss to a scalar.

    Modes: ``mean``; ``weighted`` (``per_sample * c_i / (mean(c) + 1e-8)``, then mean). The Filtered baseline is not a
    reduction: its samples below the threshold are dropped from the dataset (``cad.data.labelled.filtered``).
    """
    if mode not in _REDUCTIONS:
        raise ValueError(f"unknown loss reduction mode '{mode}'; allowed: {', '.join(sorted(_REDUCTIONS))}")
    if mode in _NEEDS_COHERENCE:
        if coherence is None:
            raise ValueError(f"loss reduction mode '{mode}' needs a coherence score per sample, got None")
        if coherence.shape != per_sample.shape:
            raise ValueError(
                f"coherence shape {tuple(coherence.shape)} does not match per-sample loss {tuple(per_sample.shape)}"
            )
    return _REDUCTIONS[mode](per_sample, coherence)
