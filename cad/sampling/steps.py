"""What every sampler step shares: the time grid, the schedule evaluated on it, and the clipped x0 prediction."""
from __future__ import annotations

import torch
from torch import Tensor

from cad.diffusion.noising import eps_from_x0, x0_from_eps
from cad.diffusion.schedules import Schedule
from cad.sampling.denoiser import NoiseSource


def gamma_grid(steps: int, schedule: Schedule, like: Tensor) -> Tensor:
    """gamma(t_i) for the uniform grid t_0 = 1 > t_1 > ... > t_steps = 0; shape (steps + 1,), dtype of ``like``.

    The schedule is evaluated in float64 and then cast, so float32 sampling sees correctly rounded gammas.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=like.device)
    return schedule(t).to(like.dtype)


def check_generator(generator: NoiseSource, x_T: Tensor) -> None:
    if len(generator) != x_T.shape[0]:
        raise ValueError(
            f"x_T holds {x_T.shape[0]} samples but the generator has {len(generator)} seeds (one per sample)"
        )


def predict_x0(x_t: Tensor, gamma: Tensor, eps_hat: Tensor, clip_x0: bool) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat). With ``clip_x0``, x0_hat is clipped to the data range [-1, 1] and eps_hat is recomputed from
    the clipped x0_hat, so that the pair stays consistent with x_t (``x_t = sqrt(g) x0_hat + sqrt(1 - g) eps_hat``)
    and the update moves toward the clipped prediction."""
    x0_hat = x0_from_eps(x_t, gamma, eps_hat)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_hat = eps_from_x0(x_t, gamma, x0_hat)
    return x0_hat, eps_hat


def noise(generator: NoiseSource, like: Tensor) -> Tensor:
    """Fresh noise shaped like ``like``, drawn from the per-sample generator only (never the global RNG)."""
    return generator.randn(*like.shape[1:], dtype=like.dtype).to(like.device)
