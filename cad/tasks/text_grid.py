"""Sample grids of the text task: each sample above the caption it was asked for, so a reader sees at a glance whether
the model follows the text."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cad.io import atomic_path


def save_caption_grid(path: Path, images: np.ndarray, captions: list[str], *, columns: int = 4, rows: int = 6,
                      scale: int = 3) -> None:
    """uint8 NHWC samples (grey or RGB) -> a PNG of the first ``columns x rows``, each enlarged ``scale`` times with
    its caption under it (wrapped to two lines); 256 px images (the paper scale) are not enlarged."""
    n = min(len(images), columns * rows)
    scale = 1 if images.shape[1] >= 128 else scale
    mode = "L" if images.shape[-1] == 1 else "RGB"
    h, w = images.shape[1] * scale, images.shape[2] * scale
    text_h = 26
    sheet = Image.new(mode, (columns * (w + 8) + 8, ((n + columns - 1) // columns) * (h + text_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x, y = 8 + (i % columns) * (w + 8), 8 + (i // columns) * (h + text_h + 8)
        tile = Image.fromarray(images[i][..., 0] if mode == "L" else images[i])
        sheet.paste(tile.resize((w, h), Image.NEAREST), (x, y))
        words, lines = str(captions[i]).split(), ["", ""]
        for word in words:  # greedy wrap into two lines of about w / 6 characters
            line = 0 if len(lines[0]) + len(word) < w // 6 and not lines[1] else 1
            lines[line] = f"{lines[line]} {word}".strip()
        draw.multiline_text((x, y + h + 1), "\n".join(lines), fill="black", spacing=1)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
