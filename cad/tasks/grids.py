"""Sample grids: one column per class, so a reader sees at a glance whether the model follows the label."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cad.io import atomic_path


def class_grid(images: np.ndarray, labels: np.ndarray, num_classes: int, rows: int) -> np.ndarray:
    """uint8 NHWC images -> one uint8 HWC mosaic, ``rows`` samples per class column (blank where a class has fewer),
    with a 1-pixel gap."""
    n, h, w, c = images.shape
    grid = np.zeros((rows * (h + 1) + 1, num_classes * (w + 1) + 1, c), dtype=np.uint8)
    for k in range(num_classes):
        for r, i in enumerate(np.flatnonzero(labels == k)[:rows]):
            grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = images[i]
    return grid


def save_grid(path: Path, images: np.ndarray, labels: np.ndarray, num_classes: int, rows: int = 8,
              scale: int = 2) -> None:
    grid = class_grid(images, labels, num_classes, rows)
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
