"""Small segmentation networks trained by the suite on captioned canvases' exact class maps (issue 12):

- ``confidence``: the stand-in for the paper's MaskFormer (trained on COCO, applied to ADE20K): a narrow network
  trained on a few canvases, so that its maximum softmax (cad.conditioning.coherence_maps.confidence_coherence) is
  a graded per-pixel coherence of the maps it predicts for the training canvases;
- ``eval``: a wider network trained on many canvases, that measures the mIoU of generated images against the map they
  were asked for. Never the network that made the coherence.

Both predict ``num_classes + 1`` channels (the last one is the background).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cad.data.canvases import CanvasRecipe, canvas_batch

ROLES = {"confidence": dict(width=16, train_size=500, seed=31), "eval": dict(width=48, train_size=None, seed=37)}


class Segmenter(nn.Module):
    """Full-resolution conv net with a dilated context path: (B, 1, H, W) uint8 -> (B, K + 1, H, W) logits."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        w = width
        layers, channels = [], 1
        for dilation in (1, 1, 2, 4, 8, 1):
            layers += [nn.Conv2d(channels, w, 3, padding=dilation, dilation=dilation), nn.GroupNorm(4, w), nn.SiLU()]
            channels = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(w, num_classes + 1, 1)

    def forward(self, images_uint8: Tensor) -> Tensor:
        return self.head(self.body(images_uint8.float() / 127.5 - 1.0))

    def features(self, images_uint8: Tensor) -> Tensor:
        """(B, width) spatially averaged body features: a domain feature space for FID (benchmarks.features)."""
        return self.body(images_uint8.float() / 127.5 - 1.0).mean(dim=(2, 3))


RECIPE = CanvasRecipe(steps=1500, batch_size=64)


def train_segmenter(model: Segmenter, canvases, recipe: CanvasRecipe = RECIPE, *, train_indices: np.ndarray,
                    eval_indices: np.ndarray, seed: int) -> float:
    """Per-pixel cross-entropy on canvases' class maps; returns the mIoU on ``eval_indices``."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    model.train()
    for _ in range(recipe.steps):
        images, maps = canvas_batch(canvases, rng.choice(train_indices, min(recipe.batch_size, len(train_indices)),
                                                         replace=False), "class_map")
        loss = F.cross_entropy(model(images), torch.from_numpy(np.stack(maps)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return segmentation_miou(model, canvases, eval_indices[:recipe.eval_size])


@torch.no_grad()
def segmentation_miou(model: Segmenter, canvases, indices: np.ndarray) -> float:
    from benchmarks.metrics import mean_iou

    model.eval()
    images, maps = canvas_batch(canvases, indices, "class_map")
    return mean_iou(model(images).argmax(1).numpy(), np.stack(maps), num_classes=model.head.out_channels)
