"""ADE20K (SceneParsing, ``ADEChallengeData2016``) with the files the paper's semantic-map protocol adds (sec. 4.1,
Figure 6; issue 12): the semantic-map task's paper-scale data.

The paper trains ControlNet on ADE20K images with captions made by BLIP-2 and with the segmentation maps and per-pixel
confidences (maximum softmax, "MCP") that a MaskFormer trained on COCO predicts for each image; the confidence is the
coherence map. None of these can be fetched offline, so the user provides them (one folder each)::

    ADEChallengeData2016/images/{training,validation}/ADE_*.jpg        the images (ADE20K's own release)
    ADEChallengeData2016/annotations/{training,validation}/ADE_*.png   exact maps, 0 = other/ignored, 1..150 classes
    captions.json                   {"ADE_train_00000001": "a living room with ...", ...}: image name (no extension)
                                    -> caption (the paper: BLIP-2)
    predicted/{training,validation}/ADE_*.png     the segmenter's predicted class per pixel, 8-bit PNG, same size as
                                    the image, 0 = no class, 1..num_classes (e.g. COCO-panoptic's 133 for the
                                    paper's COCO MaskFormer: pass ``num_classes=133``)
    confidence/{training,validation}/ADE_*.png    its maximum softmax per pixel as a 16-bit PNG (value / 65535),
                                    same size as the image; write it with ``save_confidence``

Our choice of the confidence format (the paper does not give one): a 16-bit PNG per image is lossless to 1.5e-5,
half the size of float32 ``.npy`` files, and resizes like the image. An item::

    image (3, R, R) float in [-1, 1]   map (R, R) int64: the predicted classes (the training condition)
    coherence_map (1, R, R) in [0, 1]  annotation (R, R) int64: the exact map (evaluation: mIoU, the requested maps)
    caption str ("" without a captions file)   index int

Every array is resized so that its shorter side is R, then centre-cropped to R x R (cad.data.images): bicubic for the
image, bilinear for the confidence, nearest-neighbour for the class maps (their values are labels). The map task
one-hots ``map`` to ``num_classes + 1`` channels on the device (channel 0: no class), as a 151-channel float map per
item would be too large for the data loader.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cad.data.images import resize_crop, square_image
from cad.io import atomic_path

SPLITS = {"train": "training", "validation": "validation"}
ADE20K_CLASSES = 150
CONFIDENCE_SCALE = 65535.0
ADE20K_HELP = ("download ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu/ on a machine with internet "
               "and unzip it so that ADEChallengeData2016/images and ADEChallengeData2016/annotations exist")
HELP = {
    "annotation": ADE20K_HELP,
    "predicted map": "run your segmenter (the paper: MaskFormer trained on COCO) on each image and save its argmax "
                     "class + 1 (0 = no class) as an 8-bit PNG of the image's size, named like the image",
    "confidence": "save the segmenter's per-pixel maximum softmax with cad.data.ade20k.save_confidence (16-bit PNG "
                  "of the image's size, named like the image)",
    "caption": "caption every image (the paper: BLIP-2) into one JSON file {image name without extension: caption}",
}
MAX_LISTED = 3  # missing files named in an error; the count says how many more


class ADE20KError(FileNotFoundError):
    """A file of the ADE20K protocol is missing; the message names it and how to make it."""


def save_confidence(path: str | Path, confidence: np.ndarray) -> None:
    """Write an (H, W) maximum-softmax map in [0, 1] as the 16-bit PNG this loader reads (atomically)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.ndim != 2 or confidence.min() < 0 or confidence.max() > 1:
        raise ValueError(f"confidence must be an (H, W) array in [0, 1], got shape {confidence.shape}, range "
                         f"[{confidence.min():.3g}, {confidence.max():.3g}]")
    with atomic_path(path) as tmp:
        Image.fromarray(np.round(confidence * CONFIDENCE_SCALE).astype(np.uint16)).save(tmp, format="PNG")


def load_confidence(path: Path) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a 16-bit PNG written by ``save_confidence``."""
    with Image.open(path) as img:
        if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: a confidence PNG must be 16-bit (mode I;16), got mode {img.mode}; "
                             f"write it with cad.data.ade20k.save_confidence")
        return (np.asarray(img, dtype=np.float64) / CONFIDENCE_SCALE).astype(np.float32)


def ade20k_root(root: str | Path) -> Path:
    """``root`` itself or its ``ADEChallengeData2016`` child, whichever holds ``images/`` and ``annotations/``."""
    root = Path(root)
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise ADE20KError(f"ADE20K not found at {root}: no images/ and annotations/ in it or in "
                      f"{root / 'ADEChallengeData2016'}; {ADE20K_HELP}")


def _missing_error(kind: str, missing: list[Path | str], where: Path) -> ADE20KError:
    listed = ", ".join(str(m) for m in missing[:MAX_LISTED])
    more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
    return ADE20KError(f"{len(missing)} {kind} file(s) missing in {where}: {listed}{more}; {HELP[kind]}")


class ADE20K(Dataset):
    """One split (``train`` or ``validation``) of ADE20K with its captions, predicted maps and confidences, every file
    checked at construction (an error names the missing ones and how to make them)."""

    def __init__(self, root: str | Path, split: str, *, resolution: int, predicted_dir: str | Path,
                 confidence_dir: str | Path, captions_file: str | Path | None = None,
                 num_classes: int = ADE20K_CLASSES):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; valid: {', '.join(SPLITS)}")
        self.root, self.resolution, self.num_classes = ade20k_root(root), resolution, num_classes
        folder = SPLITS[split]
        image_dir = self.root / "images" / folder
        self.images = sorted(image_dir.glob("*.jpg"))
        if not self.images:
            raise ADE20KError(f"no ADE20K images (*.jpg) in {image_dir}; {ADE20K_HELP}")
        self.names = [p.stem for p in self.images]
        self.annotations = self._files("annotation", self.root / "annotations" / folder)
        self.predicted = self._files("predicted map", Path(predicted_dir) / folder)
        self.confidences = self._files("confidence", Path(confidence_dir) / folder)
        self.captions = self._captions(captions_file)

    def _files(self, kind: str, folder: Path) -> list[Path]:
        paths = [folder / f"{name}.png" for name in self.names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise _missing_error(kind, missing, folder)
        return paths

    def _captions(self, captions_file: str | Path | None) -> list[str]:
        if captions_file is None:
            return [""] * len(self.names)
        path = Path(captions_file)
        if not path.is_file():
            raise ADE20KError(f"captions file {path} not found; {HELP['caption']}")
        captions = json.loads(path.read_text())
        missing = [name for name in self.names if not isinstance(captions.get(name), str)]
        if missing:
            raise _missing_error("caption", missing, path)
        return [captions[name] for name in self.names]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def map_channels(self) -> int:
        """The one-hot control map's channels: ``num_classes`` + channel 0 (no class)."""
        return self.num_classes + 1

    def _class_map(self, path: Path, size: tuple[int, int], limit: int) -> torch.Tensor:
        with Image.open(path) as img:
            if img.size != size:
                raise ValueError(f"{path} is {img.size[0]}x{img.size[1]}, its image {size[0]}x{size[1]}: a map must "
                                 f"have its image's size")
            classes = np.asarray(resize_crop(img, self.resolution, Image.Resampling.NEAREST), dtype=np.int64)
        if classes.max() > limit:
            raise ValueError(f"{path} holds class {classes.max()}, above {limit}: 0 = no class, 1..{limit} classes "
                             f"(set num_classes to the segmenter's class count)")
        return torch.from_numpy(classes)

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.images[index]) as img:
            size = img.size
            image = square_image(img, self.resolution)
        confidence = load_confidence(self.confidences[index])
        if confidence.shape[::-1] != size:
            raise ValueError(f"{self.confidences[index]} is {confidence.shape[1]}x{confidence.shape[0]}, its image "
                             f"{size[0]}x{size[1]}: a confidence map must have its image's size")
        coherence = np.asarray(resize_crop(Image.fromarray(confidence), self.resolution,
                                           Image.Resampling.BILINEAR), dtype=np.float32).clip(0.0, 1.0)
        return {
            "image": image,
            "map": self._class_map(self.predicted[index], size, self.num_classes),
            "coherence_map": torch.from_numpy(coherence.copy())[None],
            "annotation": self._class_map(self.annotations[index], size, ADE20K_CLASSES),
            "caption": self.captions[index],
            "index": index,
        }
