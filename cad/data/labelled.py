"""A map-style dataset of images with training labels, clean labels and coherence scores; the Filtered view."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from cad.data.formats import ImageArrays

log = logging.getLogger(__name__)


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1]."""
    return images_uint8.to(torch.float32).div_(127.5).sub_(1.0)


class LabelledImages(Dataset):
    """Items are dicts: ``image`` (C, H, W) float32 in [-1, 1], ``label`` (the training label: noisy or clean),
    ``clean_label``, ``coherence`` (float32, 1.0 for clean labels) and ``index`` (the row in the full split, stable
    across subsets and filters)."""

    def __init__(self, images: np.ndarray, clean_labels: np.ndarray, labels: np.ndarray | None = None,
                 coherence: np.ndarray | None = None, index: np.ndarray | None = None):
        n = len(images)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.clean_labels = torch.as_tensor(clean_labels, dtype=torch.int64)
        self.labels = self.clean_labels if labels is None else torch.as_tensor(labels, dtype=torch.int64)
        self.coherence = (torch.ones(n, dtype=torch.float32) if coherence is None
                          else torch.as_tensor(coherence, dtype=torch.float32))
        self.index = torch.arange(n, dtype=torch.int64) if index is None else torch.as_tensor(index, dtype=torch.int64)
        for name in ("clean_labels", "labels", "coherence", "index"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected ({n},)")

    @classmethod
    def from_arrays(cls, arrays: ImageArrays) -> "LabelledImages":
        return cls(arrays.images, arrays.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": to_unit_range(self.images[i]),
            "label": self.labels[i],
            "clean_label": self.clean_labels[i],
            "coherence": self.coherence[i],
            "index": self.index[i],
        }

    def select(self, rows: torch.Tensor | np.ndarray) -> "LabelledImages":
        rows = torch.as_tensor(rows, dtype=torch.int64)
        return LabelledImages(self.images[rows].numpy(), self.clean_labels[rows], self.labels[rows],
                              self.coherence[rows], self.index[rows])

    def with_labels(self, labels: torch.Tensor, coherence: torch.Tensor) -> "LabelledImages":
        """The same images with the given training labels and coherence (indexed by ``self.index``)."""
        return LabelledImages(self.images.numpy(), self.clean_labels, labels[self.index], coherence[self.index],
                              self.index)


def seeded_subset(dataset: LabelledImages, size: int | None, seed: int) -> LabelledImages:
    """A fixed random subset of ``size`` rows (sorted, so it reads like the original order); ``None`` keeps all."""
    if size is None or size >= len(dataset):
        return dataset
    if size <= 0:
        raise ValueError(f"subset must be positive, got {size}")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(dataset), generator=generator)[:size].sort().values
    return dataset.select(rows)


def filtered(dataset: LabelledImages, threshold: float) -> LabelledImages:
    """The Filtered baseline's view (paper 4.3): keep samples whose coherence is >= ``threshold``."""
    keep = torch.nonzero(dataset.coherence >= threshold).flatten()
    log.info("filter: kept %d of %d samples with coherence >= %g (%.1f%%)", len(keep), len(dataset), threshold,
             100.0 * len(keep) / max(len(dataset), 1))
    if len(keep) == 0:
        raise ValueError(f"filter_threshold={threshold} removes every training sample")
    return dataset.select(keep)
