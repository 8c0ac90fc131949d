"""Unconditional pre-training of a base denoiser: the semantic-map task's ControlNet conditions a pre-trained model
(paper sec. 4.1: ControlNet over a text-to-image model), which the cpu scale trains here on the canvases themselves.

The shared diffusion loss (eq. 1-2: t ~ U(0, 1), x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps, MSE on eps) with an empty
condition, AdamW, random batches drawn from a seeded generator; no self-conditioning (the U-Net has none).
Resumable: ``checkpoint`` (cad.training.loop_checkpoint) snapshots the loop, and a restarted call goes on from there.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from cad.conditioning import Condition
from cad.diffusion.losses import per_sample_mse
from cad.diffusion.noising import add_noise
from cad.diffusion.schedules import get_schedule
from cad.training.loop_checkpoint import LoopCheckpoint


def pretrain_unconditional(model: nn.Module, images: Callable[[np.ndarray], Tensor], num_items: int, *, steps: int,
                           batch_size: int, lr: float, seed: int, schedule: dict, progress: bool = False,
                           checkpoint: LoopCheckpoint | None = None) -> float:
    """Train ``model`` for ``steps`` steps on batches ``images(indices)`` ((B, C, H, W) in [-1, 1]) drawn from
    ``range(num_items)``; return the mean loss of the last tenth of the steps."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    gamma_fn = get_schedule(**schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses: list[float] = []
    saved = dict(numpy=rng, torch_gen=generator, logged=losses)
    start = checkpoint.resume(model, optimizer, **saved) if checkpoint else 0
    model.train()
    for step in tqdm(range(start, steps), desc="base pre-training", disable=not progress, initial=start, total=steps):
        x0 = images(rng.choice(num_items, batch_size, replace=False))
        t = torch.rand(x0.shape[0], generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        eps_hat, _ = model(add_noise(x0, gamma_fn(t), eps), gamma_fn(t), Condition())
        loss = per_sample_mse(eps_hat, eps).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if checkpoint:
            checkpoint.maybe_save(step + 1, model, optimizer, **saved)
    model.eval()
    return float(np.mean(losses[-max(1, steps // 10):]))
