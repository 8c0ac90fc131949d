"""Stable Diffusion's discrete noise schedule on the suite's continuous time (the semantic-map task's paper scale).

Stable Diffusion's UNet was trained on 1000 integer timesteps of its ``scaled_linear`` schedule:
``beta_k = (sqrt(0.00085) + k / 999 (sqrt(0.012) - sqrt(0.00085)))^2``, ``alpha_bar_k = prod_{j <= k} (1 - beta_j)``
(diffusers' ``DDPMScheduler(beta_schedule="scaled_linear")``, the scheduler config in every SD 1.x folder). The suite
is continuous-time (``gamma = alpha_bar``, cad.diffusion.schedules), so:

- ``sd_scaled_linear`` is a registered schedule ``t -> gamma``: ``t`` in [0, 1] maps to the fractional timestep
  ``s = t * 999`` and gamma interpolates ``log alpha_bar`` linearly between the two neighbouring integer timesteps.
  Training with ``t ~ U(0, 1)`` thus draws SD's own noise levels (integer ones and the ones between), so a ControlNet
  over SD is trained where SD was. Unlike the suite's other schedules, gamma(0) = alpha_bar_0 = 0.99915 and
  gamma(1) = alpha_bar_999 = 0.0047, SD's own end points (the authors' and diffusers' DDIM also start from pure noise
  at alpha_bar_999 and stop at the first timestep), so it is registered under its own name.
- ``timestep_from_gamma`` is that map's inverse, used by the SD backbone to feed any gamma (from any schedule) to the
  UNet as the fractional timestep of the same noise level (interpolated in ``log alpha_bar``, clamped to [0, 999]);
  diffusers' sinusoidal timestep embedding takes fractional timesteps as they are. Our choice: the paper is silent on
  it (the authors train ControlNet with SD's own discrete schedule, which this reproduces at integer t * 999).

The table is computed in float64 (diffusers computes it in float32; the two differ by < 1e-6).
"""
from __future__ import annotations

import torch
from torch import Tensor

from cad.diffusion.schedules import register_schedule

SD_TRAIN_TIMESTEPS = 1000
SD_BETA_START, SD_BETA_END = 0.00085, 0.012


def sd_alphas_cumprod(num_timesteps: int = SD_TRAIN_TIMESTEPS, beta_start: float = SD_BETA_START,
                      beta_end: float = SD_BETA_END) -> Tensor:
    """(num_timesteps,) float64 alpha_bar of Stable Diffusion's ``scaled_linear`` schedule."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


_LOG_ALPHAS_CUMPROD = sd_alphas_cumprod().log()


@register_schedule("sd_scaled_linear")
def sd_scaled_linear(t: Tensor) -> Tensor:
    """gamma(t) = alpha_bar at the fractional SD timestep t * 999 (log-linear between integer timesteps)."""
    t = torch.as_tensor(t)
    s = t.double().clamp(0.0, 1.0) * (SD_TRAIN_TIMESTEPS - 1)
    lo = s.floor().long().clamp(max=SD_TRAIN_TIMESTEPS - 2)
    table = _LOG_ALPHAS_CUMPROD.to(t.device)
    log_gamma = torch.lerp(table[lo], table[lo + 1], s - lo)
    return log_gamma.exp().to(t.dtype if t.is_floating_point() else torch.float32)


def timestep_from_gamma(gamma: Tensor) -> Tensor:
    """The fractional SD timestep in [0, 999] whose alpha_bar is ``gamma`` (the inverse of ``sd_scaled_linear`` up to
    the factor 999); noise levels beyond SD's range clamp to its end timesteps. Same dtype as ``gamma``."""
    gamma = torch.as_tensor(gamma)
    table = -_LOG_ALPHAS_CUMPROD.to(gamma.device)  # increasing in the timestep
    x = -gamma.double().clamp_min(1e-30).log()
    hi = torch.searchsorted(table, x).clamp(1, SD_TRAIN_TIMESTEPS - 1)
    lo = hi - 1
    frac = ((x - table[lo]) / (table[hi] - table[lo])).clamp(0.0, 1.0)
    out = lo.double() + frac
    return out.to(gamma.dtype if gamma.is_floating_point() else torch.float32)
