"""The authors' own label-noise protocol for class-conditional CAD (their released configs ``cifar10_rin_cad`` and
``imagenet_64_rin_cad``, ``data: leaky_relu``), under the name ``authors_entropy``.

Per training sample, from a generator seeded 3407:
- a target normalised entropy h = u, u ~ U(0, 1) (their leaky-ReLU repartition with threshold 0.5 and value 0.5 is
  the identity on [0, 1]);
- the flip probability g that gives the distribution (1 - g on the true class, g / (K - 1) on each other class) the
  normalised entropy h: H(g) / log K = h, with H(g) = -(1 - g) log(1 - g) - g log(g / (K - 1)), increasing on
  [0, 1 - 1/K] from 0 to log K. It is inverted with a 1000-entry table of g on [0, 1 - 1/K], as theirs is;
  between entries we interpolate linearly (a choice: their lookup's rounding is not documented);
- the label is kept with probability 1 - g, else replaced by a uniformly drawn *other* class; the coherence is
  c = 1 - h.
For K = 10 the mean flip probability is about 0.305, so about 70% of the labels stay right.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from cad.data.noise import flip_to_other_class

TABLE_SIZE = 1000


def normalised_flip_entropy(g: Tensor, num_classes: int) -> Tensor:
    """H(g) / log K of (1 - g on the true class, g / (K - 1) on each other class), with 0 log 0 = 0."""
    g = g.to(torch.float64)
    keep = torch.where(g < 1, -(1 - g) * torch.log1p(-g.clamp(max=1 - 1e-300)), torch.zeros_like(g))
    spread = torch.where(g > 0, -g * torch.log(g.clamp(min=1e-300) / (num_classes - 1)), torch.zeros_like(g))
    return (keep + spread) / math.log(num_classes)


def flip_table(num_classes: int, size: int = TABLE_SIZE) -> tuple[Tensor, Tensor]:
    """(g, H(g) / log K) on ``size`` evenly spaced g in [0, 1 - 1/K]: the table the inverse is read from."""
    g = torch.linspace(0.0, 1.0 - 1.0 / num_classes, size, dtype=torch.float64)
    return g, normalised_flip_entropy(g, num_classes)


def flip_probability(h: Tensor, num_classes: int, size: int = TABLE_SIZE) -> Tensor:
    """g with H(g) / log K = h, read from the table (linear between entries); h in [0, 1]."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    g_grid, h_grid = flip_table(num_classes, size)
    h = h.to(torch.float64).clamp(0.0, 1.0)
    upper = torch.searchsorted(h_grid, h).clamp(1, size - 1)
    h0, h1 = h_grid[upper - 1], h_grid[upper]
    weight = ((h - h0) / (h1 - h0)).clamp(0.0, 1.0)
    return g_grid[upper - 1] + weight * (g_grid[upper] - g_grid[upper - 1])


def authors_entropy_labels(clean_labels: Tensor, num_classes: int, generator: torch.Generator
                           ) -> tuple[Tensor, Tensor]:
    """Noisy labels (N,) int64 and coherence c = 1 - h (N,) float32 under the authors' protocol (module docstring)."""
    clean_labels = clean_labels.to(generator.device, torch.int64)
    h = torch.rand(len(clean_labels), generator=generator, dtype=torch.float64, device=generator.device)
    g = flip_probability(h.cpu(), num_classes).to(h.device)
    return flip_to_other_class(clean_labels, g, num_classes, generator), (1.0 - h).to(torch.float32)
