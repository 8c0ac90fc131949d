"""Photographs of any size -> the square training / evaluation input: decode to RGB, shorter side to the resolution,
centre crop, float in [-1, 1]. Shared by the paper-scale image readers (caption shards, COCO)."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def decode_rgb(data: bytes) -> Image.Image:
    """Encoded image bytes (JPEG, PNG, WebP, ...) -> an RGB PIL image (grey, palette and alpha images converted)."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def resize_crop(img: Image.Image, resolution: int, resample: Image.Resampling = Image.Resampling.BICUBIC
                ) -> Image.Image:
    """Shorter side to ``resolution`` with ``resample``, then the centre ``resolution`` x ``resolution`` crop."""
    width, height = img.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    img = img.resize(size, resample=resample)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


def image_tensor(img: Image.Image) -> Tensor:
    """An RGB PIL image -> float32 (3, H, W) in [-1, 1] (byte / 127.5 - 1, as the suite's other datasets)."""
    pixels = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).float() / 127.5 - 1.0


def square_image(img: Image.Image, resolution: int) -> Tensor:
    """The model input of a photograph: ``resize_crop`` (bicubic) then ``image_tensor``, (3, R, R) in [-1, 1]."""
    return image_tensor(resize_crop(img, resolution))
