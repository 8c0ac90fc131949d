"""Captioned canvases: the offline stand-in for an image-caption set (text task, issue 11) and, with the exact
per-pixel class map every canvas carries, for a segmentation set (semantic-map task, issue 12).

A canvas is ``height x width`` with one object per slot (slots split the width evenly: left / right, or left / middle /
right), each object a source image (MNIST digit, Fashion-MNIST item) of a random class resized to a random size and
placed at a random offset inside its slot. Its caption says what is really there::

    "a large trouser on the left and a small bag on the right"

A misaligned caption is the true one with content words (class, size, position) replaced, each independently with
the sample's corruption level ``q``: a share ``noisy_share`` of the samples gets ``q ~ U(0, 1)``, the rest ``q = 0``,
so the noise is real (the caption says something false about the image) and graded (``misalignment``, the share of
its content words that are wrong, is known per sample). Every sample is a function of (seed, index) alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cad.data.formats import ImageArrays

POSITIONS = {1: ("in the center",), 2: ("on the left", "on the right"),
             3: ("on the left", "in the middle", "on the right")}
SIZE_WORDS = ("small", "large")  # SIZE_WORDS[i] names CanvasSpec.sizes[i]
# Caption words of the source datasets' classes (cad.data.registry's order).
VOCABULARIES = {
    "fashion_mnist": ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"),
    "mnist": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
}
OBJECT_THRESHOLD = 64  # a canvas pixel brighter than this (of 255) belongs to its object in the class map


@dataclass(frozen=True)
class CanvasSpec:
    height: int = 32
    width: int = 64
    num_objects: int = 2
    sizes: tuple[int, ...] = (20, 28)  # object sizes in pixels, named by SIZE_WORDS; one size: no size word
    noisy_share: float = 0.5  # share of samples whose caption is corrupted at a level q ~ U(0, 1)
    seed: int = 0

    def __post_init__(self):
        if self.num_objects not in POSITIONS:
            raise ValueError(f"num_objects={self.num_objects} is not valid; valid: {sorted(POSITIONS)}")
        slot = self.width // self.num_objects
        if not self.sizes or max(self.sizes) > min(self.height, slot) or len(self.sizes) > len(SIZE_WORDS):
            raise ValueError(f"sizes={self.sizes} is not valid: one or two sizes, each at most the slot "
                             f"({self.height}x{slot})")
        if not 0.0 <= self.noisy_share <= 1.0:
            raise ValueError(f"noisy_share={self.noisy_share} is not valid; valid: a value in [0, 1]")


@dataclass(frozen=True)
class CanvasRecipe:
    """How a network is trained on canvases (the contrastive models, the segmenters): AdamW steps of random batches."""
    steps: int
    batch_size: int
    lr: float = 2e-3
    eval_size: int = 500


def canvas_batch(canvases, indices, field: str) -> tuple[torch.Tensor, list]:
    """(images (B, 1, H, W) uint8, the items' ``field`` values) of ``indices``."""
    items = [canvases[int(i)] for i in indices]
    return torch.from_numpy(np.stack([it["image"] for it in items])), [it[field] for it in items]


@dataclass(frozen=True)
class CanvasObject:
    cls: int
    slot: int
    size: int  # index into CanvasSpec.sizes
    top: int
    left: int
    source_index: int


def caption_words(objects: list[CanvasObject], spec: CanvasSpec, vocabulary: tuple[str, ...]) -> list[list[str]]:
    """Per object, its content words: [size word (when the spec has two sizes), class word, position phrase]."""
    sized = len(spec.sizes) > 1
    return [([SIZE_WORDS[o.size]] if sized else []) + [vocabulary[o.cls], POSITIONS[spec.num_objects][o.slot]]
            for o in objects]


def render_caption(words: list[list[str]]) -> str:
    """"a large trouser on the left and an eight on the right" from the per-object content words."""
    phrases = [f"{article(w[0])} {' '.join(w[:-1])} {w[-1]}" for w in words]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def corrupt_words(words: list[list[str]], q: float, spec: CanvasSpec, vocabulary: tuple[str, ...],
                  rng: np.random.Generator) -> tuple[list[list[str]], int]:
    """Each content word replaced with probability ``q`` by another word of its kind; returns (words, #replaced)."""
    kinds = ([SIZE_WORDS[:len(spec.sizes)]] if len(spec.sizes) > 1 else []) + [vocabulary,
                                                                               POSITIONS[spec.num_objects]]
    out, replaced = [], 0
    for object_words in words:
        new = []
        for word, kind in zip(object_words, kinds):
            if len(kind) > 1 and rng.random() < q:
                others = [k for k in kind if k != word]
                word = others[rng.integers(len(others))]
                replaced += 1
            new.append(word)
        out.append(new)
    return out, replaced


class CaptionedCanvases(torch.utils.data.Dataset):
    """``len(sources)`` canvases built on the fly from ``sources`` (an ``ImageArrays`` split of 1-channel images).

    Item: ``image`` (1, H, W) uint8, ``caption`` (possibly corrupted), ``true_caption``, ``class_map`` (H, W) int64
    (the object's class on its pixels, ``num_classes`` on the background), ``misalignment`` (share of wrong content
    words), ``level`` (the corruption level q it was drawn with), ``objects`` (the CanvasObjects, for tests)."""

    def __init__(self, sources: ImageArrays, vocabulary: tuple[str, ...], spec: CanvasSpec = CanvasSpec(),
                 length: int | None = None):
        if sources.images.shape[1] != 1:
            raise ValueError(f"canvases take 1-channel source images, got {sources.images.shape[1]} channels")
        self.sources, self.vocabulary, self.spec = sources, vocabulary, spec
        self.num_classes = len(vocabulary)
        self.length = len(sources) if length is None else length
        self._by_class = [np.flatnonzero(sources.labels == k) for k in range(self.num_classes)]
        empty = [vocabulary[k] for k, idx in enumerate(self._by_class) if len(idx) == 0]
        if empty:
            raise ValueError(f"the source images have no example of {empty}")

    def __len__(self) -> int:
        return self.length

    def layout(self, rng: np.random.Generator) -> list[CanvasObject]:
        spec, slot_width = self.spec, self.spec.width // self.spec.num_objects
        objects = []
        for slot in range(spec.num_objects):
            cls = int(rng.integers(self.num_classes))
            size = int(rng.integers(len(spec.sizes)))
            pixels = spec.sizes[size]
            top = int(rng.integers(spec.height - pixels + 1))
            left = slot * slot_width + int(rng.integers(slot_width - pixels + 1))
            source = int(self._by_class[cls][rng.integers(len(self._by_class[cls]))])
            objects.append(CanvasObject(cls, slot, size, top, left, source))
        return objects

    def paint(self, objects: list[CanvasObject]) -> tuple[np.ndarray, np.ndarray]:
        """(image (1, H, W) uint8, class map (H, W) int64) of a layout."""
        spec = self.spec
        image = np.zeros((1, spec.height, spec.width), dtype=np.uint8)
        class_map = np.full((spec.height, spec.width), self.num_classes, dtype=np.int64)
        for o in objects:
            pixels = spec.sizes[o.size]
            patch = resize(self.sources.images[o.source_index], pixels)
            window = (slice(o.top, o.top + pixels), slice(o.left, o.left + pixels))
            image[0][window] = patch[0]
            class_map[window][patch[0] > OBJECT_THRESHOLD] = o.cls
        return image, class_map

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.spec.seed, index])
        objects = self.layout(rng)
        image, class_map = self.paint(objects)
        words = caption_words(objects, self.spec, self.vocabulary)
        level = float(rng.random()) if rng.random() < self.spec.noisy_share else 0.0
        noisy, replaced = corrupt_words(words, level, self.spec, self.vocabulary, rng)
        return {"image": image, "caption": render_caption(noisy), "true_caption": render_caption(words),
                "class_map": class_map, "misalignment": replaced / sum(len(w) for w in words), "level": level,
                "objects": objects}


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """(1, h, w) uint8 -> (1, size, size) uint8, bilinear with antialiasing (the source as is at its own size)."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    x = torch.from_numpy(image).float()[None]
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y[0].round().clamp(0, 255).to(torch.uint8).numpy()
