"""The evaluation harness: generated samples + real reference -> a flat dict of metrics.

``evaluate_samples`` composes the stages (features -> statistics -> metrics) and is what the experiment pipeline
calls with the dataset's real test images and the evaluation classifier. The first extractor gives the headline
``fid``, ``precision``, ``recall``, ``density``, ``coverage`` (and ``is`` when it is an Inception with logits);
every further extractor adds the same metrics suffixed with its tag (``fid_<tag>``, ``precision_<tag>``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from benchmarks.features import FeatureExtractor, extract_outputs
from benchmarks.manifold import authors_split_size, prdc_with_protocol
from benchmarks.metrics import accuracy, fid_from_stats, inception_score
from benchmarks.reference import ReferenceKey, reference_statistics
from benchmarks.samples import validate_samples
from benchmarks.statistics import feature_statistics

IS_UNAVAILABLE = "n/a: no Inception logits offline"
PRDC_KEYS = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class ReferenceSet:
    """Real images for the comparison, cached per extractor under (dataset, split, resolution, num_images)."""

    dataset: str
    split: str
    resolution: int
    num_images: int
    images_fn: Callable[[], np.ndarray]

    def key(self, extractor_name: str) -> ReferenceKey:
        return ReferenceKey(self.dataset, self.split, extractor_name, self.resolution, self.num_images)


def metric_tag(extractor: FeatureExtractor) -> str:
    """Suffix of an additional extractor's metrics: its ``tag`` attribute if set, else its name."""
    return getattr(extractor, "tag", None) or extractor.name


def _reference_features(reference, extractor, batch_size, progress) -> np.ndarray:
    if isinstance(reference, ReferenceSet):
        cached = reference_statistics(
            reference.key(extractor.name), reference.images_fn, extractor, batch_size=batch_size, progress=progress
        )
        return cached.features
    return extract_outputs(extractor, np.asarray(reference), batch_size, progress)["features"]


def evaluate_samples(
    samples: dict,
    *,
    reference: ReferenceSet | np.ndarray,
    extractors: Sequence[FeatureExtractor],
    classifier: FeatureExtractor | None = None,
    prdc_protocol: str = "standard",
    nearest_k: int = 3,
    inception_splits: int = 10,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Evaluate generated ``samples`` (dict with uint8 ``images`` and int ``labels``, see ``benchmarks.samples``).

    ``reference``: a :class:`ReferenceSet` (cached statistics) or a uint8 image array (no cache).
    ``extractors``: the first is the headline (normally the Inception); the rest add ``<metric>_<tag>`` entries.
    ``classifier``: an extractor that provides ``logits`` (e.g. ``DomainExtractor(..., with_logits=True)``); gives
    ``accuracy`` against ``samples["labels"]`` (the requested classes). Returns a flat dict plus ``meta``.
    """
    if not extractors:
        raise ValueError("need at least one feature extractor")
    if classifier is not None and not classifier.provides_logits:
        raise ValueError(f"classifier {classifier.name!r} provides no logits; build it with with_logits=True")
    validate_samples(samples)
    images = samples["images"]
    results: dict = {}
    meta: dict = {
        "num_samples": int(len(images)),
        "extractors": {},
        "prdc_protocol": prdc_protocol,
        "nearest_k": nearest_k,
    }
    outputs_by_extractor: dict[int, dict[str, np.ndarray]] = {}
    for position, extractor in enumerate(extractors):
        suffix = "" if position == 0 else f"_{metric_tag(extractor)}"
        fake = extract_outputs(extractor, images, batch_size, progress)
        outputs_by_extractor[id(extractor)] = fake
        real = _reference_features(reference, extractor, batch_size, progress)
        if real.shape[1] != fake["features"].shape[1]:
            raise ValueError(
                f"{extractor.name}: reference features {real.shape} vs sample features {fake['features'].shape}"
            )
        results[f"fid{suffix}"] = fid_from_stats(feature_statistics(real), feature_statistics(fake["features"]))
        scores = prdc_with_protocol(real, fake["features"], nearest_k, prdc_protocol)
        results.update({f"{k}{suffix}": v for k, v in scores.items()})
        meta["extractors"][f"fid{suffix}"] = extractor.name
        meta["num_reference"] = int(len(real))
        if prdc_protocol == "authors":
            meta["prdc_split_size"] = authors_split_size(len(real), len(fake["features"]))
    results["is"] = _inception_score(extractors, outputs_by_extractor, inception_splits, meta)
    if classifier is not None:
        if "labels" not in samples:
            raise ValueError("accuracy needs the requested labels; these samples have none (a task without classes)")
        out = outputs_by_extractor.get(id(classifier)) or extract_outputs(classifier, images, batch_size, progress)
        results["accuracy"] = accuracy(out["logits"], samples["labels"])
        meta["classifier"] = classifier.name
    results["meta"] = meta
    return results


def _inception_score(extractors, outputs_by_extractor, splits, meta):
    for extractor in extractors:
        if getattr(extractor, "inception_logits", False) and "logits" in outputs_by_extractor[id(extractor)]:
            meta["extractors"]["is"] = extractor.name
            meta["is_splits"] = splits
            mean, std = inception_score(outputs_by_extractor[id(extractor)]["logits"], splits)
            meta["is_std"] = std
            return mean
    return IS_UNAVAILABLE
