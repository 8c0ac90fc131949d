"""Noisy training labels with coherence, cached with their statistics.

Layout: ``cache_dir()/noisy_labels/<dataset>-<data fingerprint>/<classifier id>/<protocol>/T<temperature>-seed<seed>/``
holding ``labels.npz`` (labels, coherence), ``stats.json`` (relabelling accuracy, temperature, coherence histogram
counts) and ``coherence_hist.png``; the noise classifier's logits are cached once per classifier beside them. Every
file is written atomically; ``stats.json`` is written last and marks the entry complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from cad.data.entropy_noise import authors_entropy_labels
from cad.data.noise import (NoiseConfig, expected_relabel_accuracy, find_temperature, relabel_accuracy,
                            resample_labels, symmetric_entropy_labels, coherence_from_probs, label_distribution)
from cad.io import atomic_path, atomic_write_json
from cad.paths import cache_dir

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class NoisyLabels:
    labels: Tensor  # (N,) int64
    coherence: Tensor  # (N,) float32
    stats: dict
    directory: Path


def data_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """A short hash of the training split (its size, labels and first images), so caches never mix datasets."""
    digest = hashlib.sha1()
    digest.update(np.asarray(images.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(images[:256]).tobytes())
    return digest.hexdigest()[:10]


def _cached_logits(path: Path, compute: Callable[[], Tensor]) -> Tensor:
    if path.exists():
        try:
            return torch.from_numpy(np.load(path))
        except Exception as err:
            log.warning("logits cache %s unreadable (%s); recomputing", path, err)
    logits = compute().float()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, logits.numpy())
    return logits


def resolve_temperature(config: NoiseConfig, logits: Tensor, clean_labels: Tensor) -> float:
    """An explicit temperature wins; else the one that hits ``target_relabel_accuracy``; else T = 1."""
    if config.temperature is not None:
        return float(config.temperature)
    if config.target_relabel_accuracy is not None:
        return find_temperature(logits, clean_labels, config.target_relabel_accuracy, config.seed)
    return 1.0


def coherence_histogram(coherence: Tensor, bins: int = HISTOGRAM_BINS) -> dict:
    counts, edges = np.histogram(coherence.numpy(), bins=bins, range=(0.0, 1.0))
    return {"counts": counts.tolist(), "edges": [round(float(e), 6) for e in edges]}


def _save_histogram_png(path: Path, histogram: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(histogram["edges"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge", edgecolor="black", linewidth=0.4)
    ax.set_xlabel("coherence c = 1 - H(p) / log K")
    ax.set_ylabel("training samples")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _entry_dir(dataset_key: str, classifier: str, protocol: str, temperature: float | None, seed: int) -> Path:
    t_part = "Tna" if temperature is None else f"T{temperature:.6g}"
    return cache_dir() / "noisy_labels" / dataset_key / classifier / protocol / f"{t_part}-seed{seed}"


def _load_entry(directory: Path) -> NoisyLabels | None:
    stats_path, labels_path = directory / "stats.json", directory / "labels.npz"
    if not (stats_path.exists() and labels_path.exists()):
        return None
    try:
        stats = json.loads(stats_path.read_text())
        with np.load(labels_path) as f:
            labels, coherence = torch.from_numpy(f["labels"]), torch.from_numpy(f["coherence"])
        if len(labels) != stats["num_samples"]:
            raise ValueError("size mismatch")
    except Exception as err:
        log.warning("noisy-label cache %s unreadable (%s); recomputing", directory, err)
        return None
    return NoisyLabels(labels, coherence, stats, directory)


def make_noisy_labels(dataset: str, clean_labels: Tensor, num_classes: int, config: NoiseConfig, *,
                      fingerprint: str, classifier: str | None = None,
                      logits_fn: Callable[[], Tensor] | None = None,
                      cifar_n_labels: Callable[[str], np.ndarray] | None = None) -> NoisyLabels:
    """Noisy labels + coherence for the training split, from the cache when present.

    ``classifier``/``logits_fn`` name and compute the noise classifier's logits on the training images (protocols
    ``classifier`` and ``cifar_n``); ``cifar_n_labels(label_set)`` returns the human labels (``cifar_n``).
    """
    clean_labels = clean_labels.to(torch.int64).cpu()
    dataset_key = f"{dataset}-{fingerprint}"
    temperature: float | None = None
    logits = None
    if config.uses_classifier:
        if classifier is None or logits_fn is None:
            raise ValueError(f"noise protocol {config.protocol!r} needs the noise classifier's logits")
        logits = _cached_logits(cache_dir() / "noisy_labels" / dataset_key / classifier / "logits.npy", logits_fn)
        temperature = (resolve_temperature(config, logits, clean_labels) if config.protocol == "classifier"
                       else float(config.temperature or 1.0))
    protocol = config.protocol if config.protocol != "cifar_n" else f"cifar_n-{config.cifar_n_labels}"
    directory = _entry_dir(dataset_key, classifier or "none", protocol, temperature, config.seed)
    cached = _load_entry(directory)
    if cached is not None:
        return cached

    generator = torch.Generator().manual_seed(config.seed)
    target = None if config.temperature is not None else config.target_relabel_accuracy
    stats: dict = {"dataset": dataset, "fingerprint": fingerprint, "classifier": classifier or "none",
                   "protocol": protocol, "temperature": temperature, "seed": config.seed,
                   "target_relabel_accuracy": target}
    if config.protocol == "classifier":
        labels, coherence = resample_labels(logits, temperature, generator)
        stats["expected_relabel_accuracy"] = expected_relabel_accuracy(logits, clean_labels, temperature)
    elif config.protocol == "symmetric_entropy":
        labels, coherence = symmetric_entropy_labels(clean_labels, num_classes, generator)
    elif config.protocol == "authors_entropy":
        labels, coherence = authors_entropy_labels(clean_labels, num_classes, generator)
    else:  # cifar_n: human labels, coherence from the noise classifier's entropy
        if cifar_n_labels is None:
            raise ValueError("noise protocol 'cifar_n' needs the CIFAR-N label table")
        labels = torch.from_numpy(cifar_n_labels(config.cifar_n_labels)).to(torch.int64)
        if labels.shape != clean_labels.shape:
            raise ValueError(f"CIFAR-N has {len(labels)} labels for {len(clean_labels)} training images")
        coherence = coherence_from_probs(label_distribution(logits, temperature))
    if logits is not None:
        stats["noise_classifier_train_accuracy"] = float((logits.argmax(1) == clean_labels).double().mean())
    stats.update(num_samples=len(labels), relabel_accuracy=relabel_accuracy(labels, clean_labels),
                 mean_coherence=float(coherence.double().mean()), coherence_histogram=coherence_histogram(coherence))

    with atomic_path(directory / "labels.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, labels=labels.numpy(), coherence=coherence.numpy())
    t_text = "n/a" if temperature is None else f"{temperature:.4g}"
    title = f"{dataset} / {classifier or 'none'} / {protocol} / T={t_text} / seed {config.seed}"
    _save_histogram_png(directory / "coherence_hist.png", stats["coherence_histogram"], title)
    atomic_write_json(directory / "stats.json", stats)
    log.info("noisy labels %s: relabel accuracy %.4f, mean coherence %.3f (T=%s)", directory,
             stats["relabel_accuracy"], stats["mean_coherence"], temperature)
    return NoisyLabels(labels, coherence, stats, directory)
