"""Sample files: where sampling and evaluation meet.

A samples file is an ``.npz`` with ``images`` uint8 (N, H, W, C), ``seeds`` int64 (N,), ``labels`` int64 (N,) where the
task has class labels, and any extra per-run arrays the task stores (e.g. captions, maps). Users bringing their own
samples can instead point at a folder of PNG files named ``<label>_<seed>.png`` (e.g. ``3_000017.png``;
``label3_seed17.png`` is accepted too).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cad.io import atomic_path

REQUIRED = ("images", "seeds")
INTEGER_ARRAYS = ("labels", "seeds")
PNG_NAME = re.compile(r"^(?:label)?(?P<label>\d+)[_-](?:seed)?(?P<seed>\d+)\.png$", re.IGNORECASE)


def validate_samples(samples: dict) -> dict:
    """Check names, dtypes and lengths; return ``samples`` (a dict of numpy arrays)."""
    missing = [k for k in REQUIRED if k not in samples]
    if missing:
        raise ValueError(f"samples lack {missing}; required: {list(REQUIRED)}")
    images = np.asarray(samples["images"])
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    n = images.shape[0]
    for name in (k for k in INTEGER_ARRAYS if k in samples):
        array = np.asarray(samples[name])
        if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"{name} must be integer ({n},) to match images {images.shape}, got {array.dtype} {array.shape}"
            )
    return samples


def save_samples(path, images: np.ndarray, labels: np.ndarray | None, seeds: np.ndarray, **extra: np.ndarray) -> Path:
    """Write a samples ``.npz`` atomically (labels, where given, and seeds stored as int64)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"samples files end in .npz, got {path}")
    clash = set(extra) & (set(REQUIRED) | set(INTEGER_ARRAYS))
    if clash:
        raise ValueError(f"extra arrays cannot be named {sorted(clash)}")
    arrays = {"images": np.asarray(images), "seeds": np.asarray(seeds)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    validate_samples(arrays)
    for name in (k for k in INTEGER_ARRAYS if k in arrays):
        arrays[name] = arrays[name].astype(np.int64)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def load_samples(path) -> dict[str, np.ndarray]:
    """Read a samples ``.npz`` (or a PNG folder, see :func:`load_image_folder`) into a dict of arrays."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"no samples at {path}: expected a .npz written by save_samples or a PNG folder")
    with np.load(path, allow_pickle=False) as data:
        samples = {k: data[k] for k in data.files}
    return validate_samples(samples)


def load_image_folder(directory) -> dict[str, np.ndarray]:
    """Read ``<label>_<seed>.png`` files (grayscale -> C=1, RGB(A) -> C=3), ordered by (seed, label)."""
    from PIL import Image

    directory = Path(directory)
    entries = []
    for file in directory.iterdir():
        match = PNG_NAME.match(file.name)
        if match:
            entries.append((int(match["seed"]), int(match["label"]), file))
    if not entries:
        raise ValueError(f"no PNG files named <label>_<seed>.png in {directory}")
    entries.sort(key=lambda e: (e[0], e[1]))
    images = []
    for _, _, file in entries:
        with Image.open(file) as im:
            array = np.asarray(im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB"))
        images.append(array[..., None] if array.ndim == 2 else array)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images in {directory} differ in shape: {sorted(shapes)}")
    samples = {
        "images": np.stack(images).astype(np.uint8),
        "labels": np.array([e[1] for e in entries], dtype=np.int64),
        "seeds": np.array([e[0] for e in entries], dtype=np.int64),
    }
    return validate_samples(samples)
