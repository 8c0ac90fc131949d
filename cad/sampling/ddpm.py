"""Ancestral sampling (Ho et al. 2020) on the continuous gamma schedule.

From t to the next grid time s, x_s is drawn from the posterior q(x_s | x_t, x0 = x0_hat):

    mean = sqrt(gamma_s) (1 - a) / (1 - gamma_t) x0_hat
           + sqrt(a) (1 - gamma_s) / (1 - gamma_t) x_t,   a = gamma_t / gamma_s
    var  = (1 - gamma_s) / (1 - gamma_t) (1 - a)
"""
from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cad.diffusion.schedules import Schedule
from cad.sampling.denoiser import DenoiseFn, NoiseSource
from cad.sampling.steps import check_generator, gamma_grid, noise, predict_x0


@torch.no_grad()
def sample(
    denoise: DenoiseFn,
    x_T: Tensor,
    steps: int,
    *,
    schedule: Schedule,
    generator: NoiseSource,
    clip_x0: bool = True,
    progress: bool = False,
) -> Tensor:
    """Run ``steps`` ancestral steps from ``x_T`` (t = 1) and return the final x0_hat (the step to t = 0)."""
    check_generator(generator, x_T)
    gamma = gamma_grid(steps, schedule, x_T)
    batch = x_T.shape[0]
    x, state = x_T, None
    for i in tqdm(range(steps), desc="ddpm", disable=not progress):
        gamma_t = gamma[i].expand(batch)
        eps_hat, state = denoise(x, gamma_t, state)
        x0_hat, _ = predict_x0(x, gamma_t, eps_hat, clip_x0)
        if i == steps - 1:
            return x0_hat
        g_t, g_s = gamma[i], gamma[i + 1]
        a = g_t / g_s
        mean = g_s.sqrt() * (1 - a) / (1 - g_t) * x0_hat + a.sqrt() * (1 - g_s) / (1 - g_t) * x
        var = ((1 - g_s) / (1 - g_t) * (1 - a)).clamp(min=0)
        x = mean + var.sqrt() * noise(generator, x)
    raise AssertionError("unreachable")
