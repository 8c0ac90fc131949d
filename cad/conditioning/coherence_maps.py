"""Per-pixel coherence maps for the semantic-map task (paper sec. 4.1, Figure 6; issue 12):

- ``confidence_coherence``: a segmentation network's per-pixel maximum softmax probability on the image (the paper's
  MaskFormer trained on COCO applied to ADE20K; the cpu scale's is a small network trained by the suite);
- ``canny_coherence``: synthetic, ``low`` on the class boundaries that Canny edge detection finds on the map, 1
  elsewhere;
- ``uniform_coherence``: c = 1 everywhere;
- ``square_coherence``: an edited map, ``value`` inside a square (Figure 6(a)'s low-coherence square);
- ``blit_coherence``: an edited map, a window of another image's coherence map copied in (Figure 6(a)'s rightmost
  column, "the coherence scores of two children obtained from another image" overlaid on the map).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Canny on an integer class map: no smoothing, and thresholds below the gradient of a one-label step, so every change
# of class is an edge; the map is padded by repetition first, so boundaries that touch the image border are found.
CANNY_SIGMA, CANNY_LOW, CANNY_HIGH, CANNY_PAD = 0.0, 0.1, 0.2, 2


def confidence_coherence(logits: Tensor) -> Tensor:
    """(B, K, H, W) segmentation logits -> (B, 1, H, W) maximum softmax probability per pixel."""
    return logits.float().softmax(dim=1).amax(dim=1, keepdim=True)


def canny_edges(class_map: np.ndarray) -> np.ndarray:
    """(H, W) integer class map -> (H, W) bool, Canny edges (scikit-image) of the map."""
    from skimage.feature import canny

    padded = np.pad(np.asarray(class_map, dtype=np.float64), CANNY_PAD, mode="edge")
    edges = canny(padded, sigma=CANNY_SIGMA, low_threshold=CANNY_LOW, high_threshold=CANNY_HIGH)
    return edges[CANNY_PAD:-CANNY_PAD, CANNY_PAD:-CANNY_PAD]


def canny_coherence(class_map: np.ndarray, low: float = 0.0) -> np.ndarray:
    """(H, W) class map -> (H, W) float32 coherence: ``low`` on its Canny edges, 1 elsewhere."""
    return np.where(canny_edges(class_map), np.float32(low), np.float32(1.0)).astype(np.float32)


def uniform_coherence(height: int, width: int, value: float = 1.0) -> np.ndarray:
    return np.full((height, width), value, dtype=np.float32)


def square_coherence(base: np.ndarray, top: int, left: int, size: int, value: float = 0.0) -> np.ndarray:
    """``base`` with a ``size`` x ``size`` square at (top, left) set to ``value`` (an edited coherence map)."""
    out = np.array(base, dtype=np.float32, copy=True)
    out[top:top + size, left:left + size] = value
    return out


def blit_coherence(base: np.ndarray, other: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """``base`` with its ``height`` x ``width`` window at (top, left) replaced by the same window of ``other``."""
    if base.shape != other.shape:
        raise ValueError(f"blit_coherence: maps of shapes {base.shape} and {other.shape}; valid: the same shape")
    out = np.array(base, dtype=np.float32, copy=True)
    out[top:top + height, left:left + width] = other[top:top + height, left:left + width]
    return out
