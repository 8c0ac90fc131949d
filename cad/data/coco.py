"""COCO-10K: the text-to-image task's paper-scale evaluation set (Figure 3(a): "a 10K samples subset of COCO in a
zero-shot setting"), 10,000 COCO validation images with one caption each, from a COCO folder the user provides::

    <root>/annotations/captions_val2014.json  and  <root>/val2014/COCO_val2014_000000000042.jpg ...   (preferred)
    <root>/annotations/captions_val2017.json  and  <root>/val2017/000000000139.jpg ...   (accepted; 5,000 images)

The paper does not publish its subset (the authors' code reads a prepared list of keys), so ours is fixed here and
reproducible without any random-number generator (whose streams may change across numpy releases):

- images: among the images that have a caption, the ``size`` whose SHA-256 of ``f"{seed}-{image_id}"`` is smallest
  (``seed`` 0 by default), listed by image id;
- caption: each image's first caption, the one with the lowest annotation id, whitespace collapsed.

val2014 (40,504 images) holds the 10k; val2017 has 5,000 images, so with 2017 files only a smaller ``size`` works.
An item: ``image`` (3, R, R) float32 in [-1, 1] (shorter side to R, bicubic, centre crop), ``caption`` str,
``image_id`` int, ``index`` int. ``uint8_image(i)`` gives the same image as (R, R, 3) uint8 for reference statistics.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cad.data.errors import DatasetNotFoundError, SearchAttempt
from cad.data.images import image_tensor, resize_crop

COCO_10K_SIZE = 10_000
COCO_10K_SEED = 0
YEARS = ("2014", "2017")  # searched in this order
MAX_LISTED = 5
HOW_TO_PROVIDE = ("  on a machine with internet, download http://images.cocodataset.org/zips/val2014.zip and "
                  "http://images.cocodataset.org/annotations/annotations_trainval2014.zip, unzip both into one folder "
                  "(giving annotations/captions_val2014.json and val2014/), copy it here and pass it as the COCO root "
                  "(2017 files are accepted too: annotations/captions_val2017.json and val2017/)")


@dataclass(frozen=True)
class CocoFiles:
    year: str
    annotations: Path
    images: Path


def find_coco(root: str | Path) -> CocoFiles:
    """The caption file and image folder under ``root`` (val2014 first, then val2017); a ``DatasetNotFoundError``
    naming each file looked for otherwise."""
    root = Path(root)
    attempts = []
    for year in YEARS:
        files = CocoFiles(year, root / "annotations" / f"captions_val{year}.json", root / f"val{year}")
        if files.annotations.is_file() and files.images.is_dir():
            return files
        attempts += [SearchAttempt(str(p), "found" if p.exists() else "missing")
                     for p in (files.annotations, files.images)]
    raise DatasetNotFoundError("COCO captions (validation split)", attempts, HOW_TO_PROVIDE)


def subset_rank(image_id: int, seed: int) -> str:
    """The key that orders images for the subset: SHA-256 of ``f"{seed}-{image_id}"`` (hex)."""
    return hashlib.sha256(f"{seed}-{image_id}".encode()).hexdigest()


def select_subset(annotations: dict, size: int, seed: int) -> list[tuple[int, str, str]]:
    """``(image_id, file_name, caption)`` of the subset, by image id (see the module docstring for the rule)."""
    first: dict[int, tuple[int, str]] = {}  # image id -> (annotation id, caption) of its lowest annotation id
    for ann in annotations["annotations"]:
        image_id, ann_id = int(ann["image_id"]), int(ann["id"])
        if image_id not in first or ann_id < first[image_id][0]:
            first[image_id] = (ann_id, " ".join(str(ann["caption"]).split()))
    files = {int(img["id"]): img["file_name"] for img in annotations["images"]}
    candidates = [i for i in first if i in files and first[i][1]]
    if size > len(candidates):
        raise ValueError(f"a COCO subset of {size} images was asked for, but the caption file lists only "
                         f"{len(candidates)} captioned images (val2017 has 5,000; use val2014, which has 40,504, "
                         f"for COCO-10K)")
    chosen = sorted(sorted(candidates, key=lambda i: subset_rank(i, seed))[:size])
    return [(i, files[i], first[i][1]) for i in chosen]


class CocoEval(Dataset):
    """The COCO evaluation subset at ``resolution``: ``size`` images (COCO-10K by default) with one caption each.
    ``captions``, ``image_ids`` and ``paths`` are lists in item order; ``name`` identifies the subset (for cached
    reference statistics)."""

    def __init__(self, root: str | Path, *, resolution: int, size: int = COCO_10K_SIZE, seed: int = COCO_10K_SEED):
        files = find_coco(root)
        try:
            annotations = json.loads(files.annotations.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{files.annotations} is not a readable COCO caption file ({err}); "
                             f"re-download it") from err
        subset = select_subset(annotations, size, seed)
        self.resolution, self.year, self.size, self.seed = resolution, files.year, size, seed
        self.image_ids = [i for i, _, _ in subset]
        self.paths = [files.images / name for _, name, _ in subset]
        self.captions = [caption for _, _, caption in subset]
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            listed = [SearchAttempt(str(p), "missing") for p in missing[:MAX_LISTED]]
            more = f"\n  ({len(missing) - MAX_LISTED} more missing)" if len(missing) > MAX_LISTED else ""
            raise DatasetNotFoundError(f"COCO val{files.year} images ({len(missing)} of the subset's {size})",
                                       listed, HOW_TO_PROVIDE + more)

    @property
    def name(self) -> str:
        return f"coco-val{self.year}-{self.size}-seed{self.seed}"

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> Image.Image:
        """Image ``i`` at the resolution (RGB, shorter side resized with bicubic, centre crop)."""
        with Image.open(self.paths[i]) as img:
            return resize_crop(img.convert("RGB"), self.resolution)

    def uint8_image(self, i: int) -> np.ndarray:
        """Image ``i`` as (R, R, 3) uint8: the real images of FID and the manifold metrics."""
        return np.array(self.image(i), dtype=np.uint8)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        return {"image": image_tensor(self.image(i)), "caption": self.captions[i],
                "image_id": torch.tensor(self.image_ids[i]), "index": i}
