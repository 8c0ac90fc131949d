"""Latent self-conditioning during training (RIN, Jabri et al. 2023, as the CAD authors train it).

The denoiser first runs without self-conditioning, under ``torch.no_grad()``; its latents are then fed back to a second,
trained forward. Per sample, the latents are kept with probability ``keep_prob`` and replaced by zeros otherwise, so the
model also learns the first sampling step, where no latents exist yet.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cad.conditioning import Condition


def self_conditioned_forward(
    model: nn.Module,
    x_t: Tensor,
    gamma: Tensor,
    cond: Condition,
    *,
    keep_prob: float = 0.9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``eps_hat`` for the loss; two forwards if ``model.uses_self_conditioning`` else one.

    ``generator`` (on ``x_t``'s device) draws the per-sample keep mask; None uses the global RNG.
    """
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in [0, 1], got {keep_prob}")
    if not getattr(model, "uses_self_conditioning", False):
        eps_hat, _ = model(x_t, gamma, cond, self_cond=None)
        return eps_hat
    with torch.no_grad():
        _, latents = model(x_t, gamma, cond, self_cond=None)
    if latents is None:
        raise ValueError("model.uses_self_conditioning is True but its forward returned no latents")
    latents = latents.detach()
    keep = torch.rand(latents.shape[0], generator=generator, device=latents.device) < keep_prob
    latents = latents * keep.reshape((-1,) + (1,) * (latents.ndim - 1)).to(latents.dtype)
    eps_hat, _ = model(x_t, gamma, cond, self_cond=latents)
    return eps_hat
