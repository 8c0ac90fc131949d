"""Datasets, label noise with coherence, and the classifiers that make the noise and measure accuracy.

Public API:
    build_datamodule(name, *, root, batch_size, num_workers, labels, noise, filter_threshold, subset, seed)
    DATASETS, DatasetNotFoundError, NoiseConfig
    resample_labels(logits, temperature, generator) -> (labels, coherence)
    symmetric_entropy_labels(clean_labels, num_classes, generator) -> (labels, coherence)
    find_temperature(logits, clean_labels, target_accuracy, generator_seed) -> float
    load_classifier(dataset, role, *, scale, device) and classifier_test_accuracy(dataset, role, scale)
      (in cad.data.classifiers; imported on use so that importing cad.data stays light)
"""
from cad.data.datamodule import ImageDataModule, build_datamodule
from cad.data.errors import DatasetNotFoundError
from cad.data.noise import NoiseConfig, find_temperature, resample_labels, symmetric_entropy_labels
from cad.data.registry import DATASETS, get_spec

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "ImageDataModule",
    "NoiseConfig",
    "build_datamodule",
    "find_temperature",
    "get_spec",
    "resample_labels",
    "symmetric_entropy_labels",
]
