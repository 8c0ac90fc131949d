"""Semantic-map-conditioned diffusion (paper Figure 6): a ControlNet over a frozen, pre-trained base denoiser, fed the
(noisy) map and, for CAD, its per-pixel coherence map (cad.backbones.controlnet).

Only the ControlNet trains, with AdamW (ControlNet's optimiser: its zero-initialised convolutions barely move under
LAMB's trust ratio) and the shared warmup-cosine schedule. Condition dropout, where a method has it, zeroes the whole
map (and sets the coherence map to 0): the null map of plain CFG.
"""
from __future__ import annotations

import torch
from torch import nn

from cad.backbones import build_backbone
from cad.backbones.controlnet import ControlledUNet
from cad.conditioning import Condition
from cad.tasks.base import DiffusionModule
from cad.tasks.methods import Method
from cad.training.lr_schedule import build_scheduler


def build_base(preset: str, image_shape: tuple[int, int, int]) -> nn.Module:
    """The unconditional base denoiser of ``preset`` (no label, no coherence) for images of ``image_shape``."""
    channels, height, _ = image_shape
    return build_backbone(preset, image_size=height, in_channels=channels, num_classes=None, use_coherence=False)


class MapConditionalDiffusion(DiffusionModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], map_channels: int, method: dict,
                 base_weights: str, **train):
        """``backbone``: the base's preset; ``base_weights``: its pre-trained state dict (a file);
        ``map_channels``: classes + background; ``train``: the shared step's settings (``DiffusionModule``)."""
        super().__init__(**train, loss=Method(**method).loss)

    def build_model(self) -> nn.Module:
        hp = self.hparams
        self.method = Method(**hp.method)
        base = build_base(hp.backbone, tuple(hp.image_shape))
        base.load_state_dict(torch.load(hp.base_weights, map_location="cpu", weights_only=True))
        return ControlledUNet(base, hp.map_channels, use_coherence=self.method.use_coherence)

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        spatial = batch["map"].float()
        keep = torch.rand(spatial.shape[0], device=spatial.device, generator=generator) >= self.method.cond_dropout
        keep = keep.float()[:, None, None, None]
        coherence_map = batch["coherence_map"].float() * keep if self.method.use_coherence else None
        return Condition(spatial_map=spatial * keep, coherence_map=coherence_map)

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        scheduler = build_scheduler(optimizer, warmup_steps=hp.warmup_steps, total_steps=hp.total_steps,
                                    rate=hp.lr_rate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
