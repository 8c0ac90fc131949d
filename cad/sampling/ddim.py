"""DDIM (Song et al. 2021) on the continuous gamma schedule.

From t to the next grid time s (gamma_t < gamma_s):

    x_s = sqrt(gamma_s) x0_hat + sqrt(1 - gamma_s - sigma^2) eps_hat + sigma z,
    sigma = eta sqrt((1 - gamma_s) / (1 - gamma_t)) sqrt(1 - gamma_t / gamma_s).

eta = 0 is deterministic; eta = 1 gives the DDPM posterior variance (and then equals ``ddpm.sample`` draw for draw).
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
    eta: float = 0.0,
    clip_x0: bool = True,
    progress: bool = False,
) -> Tensor:
    """Run ``steps`` denoising steps from ``x_T`` (t = 1) and return the final x0_hat (the step to t = 0)."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    check_generator(generator, x_T)
    gamma = gamma_grid(steps, schedule, x_T)
    batch = x_T.shape[0]
    x, state = x_T, None
    for i in tqdm(range(steps), desc="ddim", disable=not progress):
        gamma_t = gamma[i].expand(batch)
        eps_hat, state = denoise(x, gamma_t, state)
        x0_hat, eps_hat = predict_x0(x, gamma_t, eps_hat, clip_x0)
        if i == steps - 1:
            return x0_hat
        g_t, g_s = gamma[i], gamma[i + 1]
        sigma = eta * ((1 - g_s) / (1 - g_t) * (1 - g_t / g_s)).clamp(min=0).sqrt()
        x = g_s.sqrt() * x0_hat + (1 - g_s - sigma**2).clamp(min=0).sqrt() * eps_hat
        if eta > 0:
            x = x + sigma * noise(generator, x)
    raise AssertionError("unreachable")
