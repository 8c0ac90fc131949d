"""The classifier wrapper every role shares: images in [-1, 1] at the dataset's resolution in, logits or features out.

Each classifier brings its own preprocessing (resize + normalisation), so callers never need to know it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Preprocess(nn.Module):
    """x in [-1, 1] -> resized to ``size`` (None: unchanged) -> ((x + 1) / 2 - mean) / std."""

    def __init__(self, size: int | None = None, interpolation: str = "bilinear",
                 mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.5,)):
        super().__init__()
        self.size = size
        self.interpolation = interpolation
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation, align_corners=False,
                              antialias=self.interpolation in ("bilinear", "bicubic"))
        return ((x + 1.0) * 0.5 - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"size={self.size}, interpolation={self.interpolation!r}"


class Classifier(nn.Module):
    """``forward(x)`` -> logits (B, K) and ``features(x)`` -> penultimate features (B, D), for x in [-1, 1]."""

    def __init__(self, net: nn.Module, preprocess: Preprocess, *, name: str, num_classes: int):
        super().__init__()
        self.net = net
        self.preprocess = preprocess
        self.name = name
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.preprocess(x))

    def features(self, x: Tensor) -> Tensor:
        return self.net.features(self.preprocess(x))


class TimmNet(nn.Module):
    """A timm model seen through the ``forward`` / ``features`` interface (features = timm's pre-logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def features(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
