"""The datasets the suite knows, by name: where they come from, their classes and image shape."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from cad.data import sources
from cad.data.sources import DataSource


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: DataSource
    num_classes: int
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    stands_in_for: str | None = None  # the paper dataset an offline stand-in replaces
    pretty: str = ""  # the name tables and figures print


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGENET_CLASSES = tuple(f"n{i:04d}" for i in range(1000))  # indices only: the npz batches carry no class names

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("fashion_mnist", sources.FASHION_MNIST, 10, (1, 28, 28), FASHION_MNIST_CLASSES, "cifar10",
                    "Fashion-MNIST"),
        DatasetSpec("mnist", sources.MNIST, 10, (1, 28, 28), MNIST_CLASSES, "imagenet64", "MNIST"),
        DatasetSpec("cifar10", sources.CIFAR10, 10, (3, 32, 32), CIFAR10_CLASSES, None, "CIFAR-10"),
        DatasetSpec("imagenet64", sources.IMAGENET64, 1000, (3, 64, 64), IMAGENET_CLASSES, None, "ImageNet-64"),
        # The text task's paper-scale training pairs (cad/tasks/text_paper.py): captions, no classes; 256 px crops.
        DatasetSpec("cc12m", sources.CAPTION_SHARDS, 0, (3, 256, 256), (), None, "CC12M"),
        # The map task's paper-scale data (cad/tasks/map_paper.py): 150 classes + "no class" 0; 512 px crops.
        DatasetSpec("ade20k", sources.ADE20K, 150, (3, 512, 512), tuple(f"ade{i:03d}" for i in range(1, 151)), None,
                    "ADE20K"),
    )
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def paper_dataset(name: str) -> str:
    """The paper dataset ``name`` is, or stands in for: the one place the stand-in mapping lives."""
    return get_spec(name).stands_in_for or name


@functools.lru_cache(maxsize=4)
def dataset_splits(name: str) -> dict:
    """The train / test ``ImageArrays`` of dataset ``name``, read once per process (the canvas tasks' sources)."""
    return sources.load_splits(get_spec(name).source)


def pretty_name(name: str) -> str:
    return get_spec(name).pretty or name
