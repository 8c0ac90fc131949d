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
from cad.data.augment import control_metadata, neutral_row, resize
from cad.guidance import aligned_loss_pair
from cad.tasks.base import DiffusionModule, NonFiniteLossError
from cad.tasks.methods import Method

__all__ = ["ClassConditionalDiffusion", "NonFiniteLossError"]


class ClassConditionalDiffusion(DiffusionModule):
    def __init__(self, *, backbone: str, image_shape: tuple[int, int, int], num_classes: int, method: dict,
                 mix_labels_and_confidence: bool = False, augment: dict | None = None,
                 coherence_as_metadata: bool = False, resolution: int | None = None, metadata_dropout: float = 0.0,
                 resolution_metadata: bool = False, metadata_gate: str = "gamma", **train):
        """``train``: the shared step's settings (see ``DiffusionModule``), from the config's ``train`` section;
        ``mix_labels_and_confidence``: one MLP-merged label-coherence embedding (cad.conditioning.embedders);
        ``augment`` ({hflip, crop_min}): augmented training images, their flags as control metadata
        (cad.data.augment); ``coherence_as_metadata``: the coherence on the metadata path instead of its token;
        ``resolution``: training images resized to it (``image_shape`` is then the resized shape);
        ``metadata_dropout``: the share of samples trained with the null metadata (for metadata guidance);
        ``resolution_metadata``: the image resolution as one more control-metadata value; ``metadata_gate``: what
        scales the metadata over the steps (cad.conditioning.embedders.METADATA_GATES)."""
        super().__init__(**train, loss=Method(**method).loss)

    def build_model(self) -> nn.Module:
        hp = self.hparams
        self.method = Method(**hp.method)
        channels, height, _ = hp.image_shape
        return build_backbone(hp.backbone, image_size=height, in_channels=channels, num_classes=hp.num_classes,
                              use_coherence=self.method.use_coherence,
                              mix_labels_and_confidence=hp.mix_labels_and_confidence,
                              metadata_dim=len(self.metadata_row) or None,
                              coherence_as_metadata=hp.coherence_as_metadata,
                              metadata_gate=hp.metadata_gate)

    @property
    def metadata_resolution(self) -> int | None:
        """The image side the model reads as control metadata; None: the resolution is not metadata."""
        return self.hparams.image_shape[1] if self.hparams.resolution_metadata else None

    @property
    def metadata_row(self) -> tuple[float, ...]:
        """The control metadata of an untouched training image (cad.data.augment.neutral_row); empty: none."""
        return neutral_row(self.hparams.augment, self.metadata_resolution)

    def prepare(self, batch: dict, generator: torch.Generator) -> dict:
        resolution = self.hparams.resolution
        if resolution is not None:
            batch = {**batch, "image": resize(batch["image"], resolution)}
        if not self.metadata_row:
            return batch
        images, metadata = control_metadata(batch["image"], generator, self.hparams.augment, self.metadata_resolution)
        return {**batch, "image": images, "metadata": metadata}

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> Condition:
        label = batch["label"]
        drop = torch.rand(label.shape, device=label.device, generator=generator) < self.method.cond_dropout
        coherence = batch["coherence"].float() if self.method.use_coherence else None
        metadata = batch.get("metadata")
        return Condition(label=label, label_null=drop, coherence=coherence, metadata=metadata,
                         metadata_null=None if metadata is None else self.metadata_drop(label, generator))

    def metadata_drop(self, label: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Which samples' control metadata is the learned null (``train.metadata_dropout``), so that the null is
        trained for metadata guidance; drawn only when the dropout is on, so runs without it keep their randomness."""
        p = self.hparams.metadata_dropout
        if p == 0:
            return torch.zeros_like(label, dtype=torch.bool)
        return torch.rand(label.shape, device=label.device, generator=generator) < p

    def training_pair(self, cond: Condition) -> tuple[Condition, Condition]:
        """The guidance-aligned loss's branches: the null label for plain CFG (eq. 3), coherence 0 for CAD (eq. 4)."""
        return aligned_loss_pair(cond, self.method.guidance, self.method.name)
