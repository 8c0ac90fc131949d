"""Training-batch augmentation whose flags become control metadata (issue 14; the multi-level conditioning paper
trains with aggressive augmentation and tells the model what was done, so sampling can ask for "no augmentation").

``augment_batch`` flips each image horizontally with probability 1/2 (``hflip``) and crops a random square of side
s ~ U(crop_min, 1) (relative) at a random place, resized back (``crop_min``); its metadata per sample is
``[flipped, top, left, bottom, right]`` (the crop box in [0, 1]). The randomness comes from the training step's
generator, so a resumed run augments as an uninterrupted one. ``NEUTRAL`` is the metadata of an untouched image:
what sampling asks for.

The image resolution is the paper's other control metadata (``data.resolution_metadata``): one more value per sample,
``pixels / RESOLUTION_SCALE``, after the augmentation flags where there are any. Our choice of form: the metadata
embedder's sinusoid of ``1000 m`` is then the sinusoid of the side in pixels, as SDXL embeds image sizes. Within one run
it is a constant; it tells a model apart only across runs at two resolutions (the 28 -> 56 transfer, both runs with it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

METADATA_DIM = 5  # the augmentation flags' values
NEUTRAL = (0.0, 0.0, 0.0, 1.0, 1.0)
RESOLUTION_SCALE = 1000.0


def augments(augment: dict | None) -> bool:
    """Whether an ``augment`` setting ({hflip, crop_min}) changes images, i.e. gives the model metadata to read."""
    augment = augment or {}
    return bool(augment.get("hflip")) or augment.get("crop_min") is not None


def neutral_row(augment: dict | None, resolution: int | None) -> tuple[float, ...]:
    """The control metadata of an untouched image: ``NEUTRAL`` when the model reads augmentation flags, then the
    resolution's value when it is metadata (``resolution`` None: it is not); empty: the model reads no metadata."""
    flags = NEUTRAL if augments(augment) else ()
    return flags + (() if resolution is None else (resolution / RESOLUTION_SCALE,))


def neutral_metadata(batch_size: int, device: torch.device | str = "cpu", row: tuple[float, ...] = NEUTRAL) -> Tensor:
    """``row`` (default: the augmentation flags of an untouched image) for every sample: (B, len(row))."""
    return torch.tensor(row, device=device).expand(batch_size, len(row)).clone()


def control_metadata(images: Tensor, generator: torch.Generator | None, augment: dict | None,
                     resolution: int | None) -> tuple[Tensor, Tensor | None]:
    """A training batch's images and control metadata (B, len(neutral_row)): augmented with their flags where
    ``augment`` changes images, the resolution's value appended where it is metadata; None: no metadata."""
    row = neutral_row(augment, resolution)
    if not row:
        return images, None
    metadata = neutral_metadata(images.shape[0], images.device, row)
    if augments(augment):
        images, metadata[:, :METADATA_DIM] = augment_batch(images, generator, **augment)
    return images, metadata


def augment_batch(images: Tensor, generator: torch.Generator | None, *, hflip: bool,
                  crop_min: float | None) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) images -> (augmented images, metadata (B, 5)); ``crop_min`` None: no crop."""
    b = images.shape[0]
    metadata = neutral_metadata(b, images.device)
    u = torch.rand(b, 4, generator=generator, device=images.device)
    if hflip:
        flip = u[:, 0] < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        metadata[:, 0] = flip.float()
    if crop_min is not None:
        if not 0 < crop_min <= 1:
            raise ValueError(f"crop_min={crop_min} is not valid; valid: a value in (0, 1]")
        side = crop_min + (1 - crop_min) * u[:, 1]
        top, left = (1 - side) * u[:, 2], (1 - side) * u[:, 3]
        # affine_grid maps output [-1, 1] to the box's input coordinates: scale by the side, shift to its centre.
        theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0] = side
        theta[:, 1, 1] = side
        theta[:, 0, 2] = 2 * left + side - 1
        theta[:, 1, 2] = 2 * top + side - 1
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        metadata[:, 1:] = torch.stack([top, left, top + side, left + side], dim=1)
    return images, metadata


def resize(images: Tensor, size: int) -> Tensor:
    """NCHW images (float, or uint8 rounded back to uint8) resized to ``size`` x ``size``, bilinear with antialiasing
    (``data.resolution``: a dataset at another resolution, the multi-level conditioning paper's 28 -> 56 transfer)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else out.to(images.dtype)
