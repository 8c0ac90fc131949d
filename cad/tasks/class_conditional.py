"""Class-conditional diffusion with noisy labels: the Table 5(d) variants over the shared step (cad.tasks.base).

A batch's condition is its (possibly noisy) label, dropped to the null embedding with probability ``cond_dropout``
(plain CFG), and, for CAD, its coherence score (paper sec. 4.1). Filtered is a view of the dataset (samples below the
threshold are not in it), Weighted a loss reduction; both are set by the method file (cad.tasks.methods).
"""
from __future__ import annotations

import torch
from torch import nn

from cad.backbones import build_backbone
from cad.conditioning import Condition
from cad.tasks.base import DiffusionModule, NonFiniteLossError
from cad.tasks.methods import Method

__all__ = ["ClassConditionalDiffusion", "NonFiniteLossError"]


class ClassConditionalDiffusion(DiffusionModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], num_classes: int, method: dict,
                 mix_labels_and_confidence: bool = False, **train):
        """``train``: the shared step's settings (see ``DiffusionModule``), from the config's ``train`` section;
        ``mix_labels_and_confidence``: one MLP-merged label-coherence embedding (cad.conditioning.embedders)."""
        super().__init__(**train, loss=Method(**method).loss)

    def build_model(self) -> nn.Module:
        hp = self.hparams
        self.method = Method(**hp.method)
        channels, height, _ = hp.image_shape
        return build_backbone(hp.backbone, image_size=height, in_channels=channels, num_classes=hp.num_classes,
                              use_coherence=self.method.use_coherence,
                              mix_labels_and_confidence=hp.mix_labels_and_confidence)

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        label = batch["label"]
        drop = torch.rand(label.shape, device=label.device, generator=generator) < self.method.cond_dropout
        coherence = batch["coherence"].float() if self.method.use_coherence else None
        return Condition(label=label, label_null=drop, coherence=coherence)
