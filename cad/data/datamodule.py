"""LightningDataModules for every dataset, built by name through ``build_datamodule``.

Batches are dicts: ``image`` (B, C, H, W) float32 in [-1, 1], ``label`` (the training label: clean or noisy, per
``labels``), ``clean_label``, ``coherence`` (1.0 for clean labels) and ``index`` (row in the full training split).
MNIST keeps the 50k / 10k / 10k split of mnist.pkl.gz: train on the 50k, the 10k validation images are the ``val``
split (unused by training), FID reference statistics and accuracies use the 10k test images.
"""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from cad.data.formats import ImageArrays
from cad.data.labelled import LabelledImages, filtered, seeded_subset
from cad.data.noise import NoiseConfig
from cad.data.noisy_labels import NoisyLabels, data_fingerprint, make_noisy_labels
from cad.data.registry import DATASETS, DatasetSpec, get_spec
from cad.data.sources import load_splits

log = logging.getLogger(__name__)

LABEL_MODES = ("clean", "noisy")


def noisy_training_labels(spec: DatasetSpec, train: ImageArrays, config: NoiseConfig, *,
                          root: str | Path | None = None, device: str | torch.device = "cpu") -> NoisyLabels:
    """Noisy labels for ``spec``'s training split under ``config``, training the noise classifier (on ``device``)
    if needed."""
    from cad.data.classifier_training import predict_logits
    from cad.data.classifiers import classifier_id, load_classifier

    if config.protocol == "cifar_n" and spec.name != "cifar10":
        raise ValueError(f"noise.protocol='cifar_n' exists for cifar10 only, not {spec.name}")
    classifier = logits_fn = cifar_n_labels = None
    if config.uses_classifier:
        classifier = classifier_id(spec.name, "noise", config.classifier_scale)

        def logits_fn() -> torch.Tensor:
            model = load_classifier(spec.name, "noise", scale=config.classifier_scale, root=root, device=device)
            return predict_logits(model, train.images, desc=f"{spec.name} noise logits", device=device)

    if config.protocol == "cifar_n":
        from cad.data.cifar_n import load_cifar_n

        def cifar_n_labels(label_set: str) -> np.ndarray:
            noisy, clean = load_cifar_n(label_set, root)
            if not np.array_equal(clean, train.labels):
                raise ValueError("CIFAR-N clean labels do not match the CIFAR-10 training labels (order/version)")
            return noisy

    return make_noisy_labels(spec.name, torch.from_numpy(train.labels), spec.num_classes, config,
                             fingerprint=data_fingerprint(train.images, train.labels), classifier=classifier,
                             logits_fn=logits_fn, cifar_n_labels=cifar_n_labels)


class ImageDataModule(L.LightningDataModule):
    def __init__(self, spec: DatasetSpec, *, root: str | Path | None, batch_size: int, num_workers: int,
                 labels: str, noise: NoiseConfig | None, filter_threshold: float | None, subset: int | None,
                 seed: int, device: str | torch.device = "cpu"):
        super().__init__()
        if labels not in LABEL_MODES:
            raise ValueError(f"labels={labels!r}; allowed: {', '.join(LABEL_MODES)}")
        self.spec = spec
        self.root = root
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = torch.device(device)  # where the noise classifier runs (and trains, on first use)
        self.labels = labels
        self.noise = noise if noise is not None or labels == "clean" else NoiseConfig()
        self.filter_threshold = filter_threshold
        self.subset = subset
        self.seed = seed
        self.noise_stats: dict | None = None
        self._splits: dict[str, ImageArrays] | None = None
        self.train_set: LabelledImages | None = None

    # --- what the rest of the suite reads ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.image_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def test_dataset(self) -> LabelledImages:
        """The real test images with clean labels (FID reference statistics, classifier accuracy)."""
        return LabelledImages.from_arrays(self.splits["test"])

    @property
    def val_dataset(self) -> LabelledImages | None:
        return LabelledImages.from_arrays(self.splits["val"]) if "val" in self.splits else None

    @property
    def splits(self) -> dict[str, ImageArrays]:
        if self._splits is None:
            self._splits = load_splits(self.spec.source, self.root)
        return self._splits

    # --- Lightning hooks ------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download if needed and build the cached noisy labels once, before any worker or rank reads them."""
        if self.labels == "noisy":
            noisy_training_labels(self.spec, self.splits["train"], self.noise, root=self.root, device=self.device)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        dataset = LabelledImages.from_arrays(self.splits["train"])
        if self.labels == "noisy":
            noisy = noisy_training_labels(self.spec, self.splits["train"], self.noise, root=self.root,
                                          device=self.device)
            self.noise_stats = noisy.stats
            dataset = dataset.with_labels(noisy.labels, noisy.coherence)
        dataset = seeded_subset(dataset, self.subset, self.seed)
        if self.filter_threshold is not None:
            dataset = filtered(dataset, self.filter_threshold)
        self.train_set = dataset

    def _loader(self, dataset: LabelledImages, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          generator=generator, drop_last=False, persistent_workers=self.num_workers > 0,
                          pin_memory=self.device.type == "cuda")

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)


def build_datamodule(name: str, *, root: str | Path | None = None, batch_size: int, num_workers: int = 0,
                     labels: str = "clean", noise: NoiseConfig | None = None, filter_threshold: float | None = None,
                     subset: int | None = None, seed: int = 0, device: str | torch.device = "cpu") -> ImageDataModule:
    """The datamodule for ``name`` (one of ``DATASETS``).

    ``labels``: "clean" or "noisy" (``noise`` configures the protocol; default ``NoiseConfig()``);
    ``filter_threshold``: keep only training samples with coherence >= it (the Filtered baseline; 0.5 there);
    ``subset``: a fixed seeded subset of the training set (smoke runs); ``seed``: subset and shuffling;
    ``device``: where the noise classifier runs; batches are pinned for it when it is a GPU.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return ImageDataModule(get_spec(name), root=root, batch_size=batch_size, num_workers=num_workers, labels=labels,
                           noise=noise, filter_threshold=filter_threshold, subset=subset, seed=seed, device=device)
