"""Small classifiers the suite trains itself at the cpu and smoke scales, keyed by architecture name.

Two different networks per dataset, so the noise and the accuracy metric do not share a model's blind spots:
``lenet`` (LeNet-5, for the noise) and ``convbn`` (a VGG-style CNN with batch norm, for the accuracy metric).
Every net takes preprocessed images and exposes ``features(x) -> (B, D)`` and ``forward(x) -> logits``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


class LeNet5(nn.Module):
    """LeCun et al. 1998 with ReLU and max-pooling; about 60k parameters. Features: the 84-d penultimate layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        side = (image_size // 2 - 4) // 2
        self.neck = nn.Sequential(nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.head = nn.Linear(84, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.neck(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvBN(nn.Module):
    """Three 3x3 conv + BN + ReLU + max-pool stages (16, 32, 64 channels by default) and a 128-d dropout MLP;
    about 0.1M parameters, several times LeNet's depth. Features: the 128-d penultimate layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 widths: tuple[int, ...] = (16, 32, 64), dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = in_channels, image_size
        for width in widths:
            layers += [*_conv_bn(c_in, width), nn.MaxPool2d(2)]
            c_in, side = width, side // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.neck = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in * side * side, 128), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, num_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.neck(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


SMALL_ARCHS: dict[str, Callable[..., nn.Module]] = {"lenet": LeNet5, "convbn": ConvBN}


def build_small(arch: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    try:
        factory = SMALL_ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown small classifier {arch!r}; known: {', '.join(SMALL_ARCHS)}") from None
    return factory(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
