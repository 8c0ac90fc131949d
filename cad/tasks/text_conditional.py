"""Text-to-image diffusion with misaligned captions (paper Figure 3): the Figure 3(a) variants over the shared step.

A batch's condition is its caption's token states from the frozen encoder (cad.data.text_data) and, for CAD, the
pair's coherence level (8 quantile bins of an image-text similarity). Condition dropout (the CFG-trained baselines)
masks every text token of the sample: the empty prompt, the model then sees only its registers (and coherence token).
Our choice: the paper's null prompt is an encoded empty string; ours has no token at all, which needs no encoder at
sampling and is the same for every encoder. Weighted is a loss reduction, Filtered a view of the data (the method
file, cad.tasks.methods).
"""
from __future__ import annotations

import torch
from torch import nn

from cad.backbones import build_backbone
from cad.conditioning import Condition
from cad.guidance import aligned_loss_pair, null_prompt_pair
from cad.tasks.base import DiffusionModule
from cad.tasks.methods import Method


class TextConditionalDiffusion(DiffusionModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], token_dim: int, method: dict, **train):
        """``token_dim``: the text encoder's width; ``train``: the shared step's settings (``DiffusionModule``)."""
        super().__init__(**train, loss=Method(**method).loss)

    def build_model(self) -> nn.Module:
        hp = self.hparams
        self.method = Method(**hp.method)
        channels, height, width = hp.image_shape
        return build_backbone(hp.backbone, image_size=(height, width), in_channels=channels, num_classes=None,
                              token_dim=hp.token_dim, use_coherence=self.method.use_coherence)

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        mask = batch["token_mask"]
        drop = torch.rand(mask.shape[0], device=mask.device, generator=generator) < self.method.cond_dropout
        coherence = batch["coherence"].float() if self.method.use_coherence else None
        return Condition(tokens=batch["tokens"].float(), token_mask=mask & ~drop[:, None], coherence=coherence)

    def training_pair(self, cond: Condition) -> tuple[Condition, Condition]:
        """The guidance-aligned loss's branches: the empty prompt for CFG or, for CAD, the same caption at coherence 0
        (at sampling CA-CFG's negative is a random-character prompt; in training the sample's own caption, our choice,
        so that no prompt has to be encoded inside the step)."""
        return aligned_loss_pair(cond, self.method.guidance, self.method.name, null_prompt_pair)
