"""Learning-rate multiplier: linear warmup, then a partial cosine decay (the RIN/CAD recipe).

    warmup:  m(step) = step / warmup_steps                        for step < warmup_steps
    decay:   m(step) = 0.5 (1 + cos(rate * pi * p)),  p = (step - warmup_steps) / (total_steps - warmup_steps) in [0, 1]

``rate < 1`` stops the cosine early: the multiplier ends at 0.5 (1 + cos(rate pi)), e.g. 0.095 for rate 0.8.
Paper values: CIFAR-10 lr 3e-3, warmup 10k, rate 0.8, 150k steps; ImageNet-64 lr 2e-3, rate 0.7.
"""
from __future__ import annotations

import functools
import math

import torch


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, rate: float) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps < 0 or total_steps <= warmup_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1] (the fraction of the half cosine used), got {rate}")
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(max((step - warmup_steps) / (total_steps - warmup_steps), 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(rate * math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, rate: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` (Lightning: ``{"scheduler": ..., "interval": "step"}``)."""
    warmup_cosine(0, warmup_steps=warmup_steps, total_steps=total_steps, rate=rate)  # validate now, not at step 1
    multiplier = functools.partial(warmup_cosine, warmup_steps=warmup_steps, total_steps=total_steps, rate=rate)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
