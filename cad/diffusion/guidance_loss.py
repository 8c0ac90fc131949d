"""The guidance-aligned training loss of "Bridging the Gap: Addressing Discrepancies in Diffusion Model Training for
Classifier-Free Guidance" (arXiv 2311.00938), as an option of the shared step:

    L = || eps - ((1 + w) eps(z_t, c_pos) - w eps(z_t, c_neg)) ||^2

the network is trained on the combination guided sampling uses (``cad.guidance.guided``: eps_pos + w (eps_pos -
eps_neg) is the same expression). The negative branch is the task's guidance pair: plain CFG's null label (eq. 3) or,
for CAD, the same condition at coherence 0 (CA-CFG, eq. 4). With w = 0 it is the plain loss.

The seed paper's method section could not be read offline; these are our documented choices, each a setting:
- ``w``: the training scale; with ``w_max`` set, each sample draws its own w ~ U(w, w_max) instead;
- ``stop_gradient``: no gradient through the negative branch (it is then trained only where it is the positive one:
  dropped labels for CFG, low-coherence samples for CAD, and the plain share);
- ``plain_share``: the share of samples trained with w = 0 (the plain loss), so the positive branch alone stays a
  model of the data (the seed paper's known cost: weaker unconditional samples).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GuidanceLoss:
    w: float = 0.0
    w_max: float | None = None
    stop_gradient: bool = False
    plain_share: float = 0.0

    def __post_init__(self):
        if self.w < 0:
            raise ValueError(f"guidance_loss.w={self.w} is not valid; valid: w >= 0 (0: the plain loss)")
        if self.w_max is not None and self.w_max <= self.w:
            raise ValueError(f"guidance_loss.w_max={self.w_max} is not valid; valid: null (a fixed w) or a value > w")
        if not 0.0 <= self.plain_share < 1.0:
            raise ValueError(f"guidance_loss.plain_share={self.plain_share} is not valid; valid: a value in [0, 1)")

    @property
    def enabled(self) -> bool:
        """Off (the plain loss, one forward) unless some sample can have w > 0."""
        return self.w > 0 or self.w_max is not None

    def draw_scales(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """Each sample's training scale: w, or U(w, w_max); 0 for the plain share."""
        u = torch.rand(2, batch_size, device=device, generator=generator)
        w = self.w if self.w_max is None else self.w + (self.w_max - self.w) * u[0]
        w = torch.as_tensor(w, dtype=torch.float32, device=device).expand(batch_size)
        return torch.where(u[1] < self.plain_share, torch.zeros_like(w), w)


def guided_prediction(eps_pos: Tensor, eps_neg: Tensor, w: Tensor, stop_gradient: bool = False) -> Tensor:
    """(1 + w) eps_pos - w eps_neg, with w one scale per sample (B,); with ``stop_gradient`` no gradient reaches
    eps_neg."""
    if stop_gradient:
        eps_neg = eps_neg.detach()
    w = w.to(eps_pos.dtype).reshape((-1,) + (1,) * (eps_pos.ndim - 1))
    return (1 + w) * eps_pos - w * eps_neg
