"""Reference (real-image) statistics cached on disk, so the expensive pass over the real images runs once.

One entry per :class:`ReferenceKey` (dataset, split, extractor name, resolution, number of images) in
``cache_dir()/reference_stats/``: ``<slug>.npz`` holds float64 ``mu``, ``sigma`` and the raw ``features`` (PRDC needs
them); ``<slug>.json`` is a sidecar with the key, the shapes and the SHA-256 of the npz. An entry whose sidecar is
missing, whose key, shapes or checksum disagree, or whose npz cannot be read is rejected (:class:`StaleCacheError`)
and rebuilt by :func:`reference_statistics`; it is never used silently.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.features import FeatureExtractor, extract_features
from benchmarks.statistics import FeatureStats, feature_statistics
from cad.io import atomic_path, atomic_write_json, sha256_file
from cad.paths import cache_dir

FORMAT_VERSION = 1


class StaleCacheError(RuntimeError):
    """A cached entry exists but cannot be trusted."""


@dataclass(frozen=True)
class ReferenceKey:
    dataset: str
    split: str
    extractor: str
    resolution: int
    num_images: int

    def slug(self) -> str:
        raw = f"{self.dataset}__{self.split}__{self.extractor}__{self.resolution}px__n{self.num_images}"
        return re.sub(r"[^A-Za-z0-9._+-]", "-", raw)


@dataclass(frozen=True)
class ReferenceStats:
    key: ReferenceKey
    features: np.ndarray  # (N, D) float64
    stats: FeatureStats


def reference_root() -> Path:
    return cache_dir() / "reference_stats"


def reference_paths(key: ReferenceKey, root: Path | None = None) -> tuple[Path, Path]:
    root = reference_root() if root is None else Path(root)
    return root / f"{key.slug()}.npz", root / f"{key.slug()}.json"


def save_reference(key: ReferenceKey, features: np.ndarray, root: Path | None = None) -> ReferenceStats:
    """Compute float64 statistics of ``features`` and write the npz, then its sidecar (both atomically)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != key.num_images:
        raise ValueError(f"expected ({key.num_images}, D) features for {key}, got shape {features.shape}")
    stats = feature_statistics(features)
    npz_path, json_path = reference_paths(key, root)
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mu=stats.mu, sigma=stats.sigma, features=features)
    atomic_write_json(
        json_path,
        {
            "format_version": FORMAT_VERSION,
            "key": asdict(key),
            "shapes": {"mu": list(stats.mu.shape), "sigma": list(stats.sigma.shape), "features": list(features.shape)},
            "sha256": sha256_file(npz_path),
        },
    )
    return ReferenceStats(key=key, features=features, stats=stats)


def load_reference(key: ReferenceKey, root: Path | None = None) -> ReferenceStats:
    """Load a cached entry, checking sidecar, key, checksum, shapes and dtypes; raise :class:`StaleCacheError`
    (or FileNotFoundError if there is no entry at all)."""
    npz_path, json_path = reference_paths(key, root)
    if not npz_path.is_file():
        raise FileNotFoundError(npz_path)
    try:
        sidecar = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise StaleCacheError(f"{json_path}: missing or unreadable sidecar ({err})") from err
    if sidecar.get("format_version") != FORMAT_VERSION:
        raise StaleCacheError(f"{json_path}: format version {sidecar.get('format_version')} != {FORMAT_VERSION}")
    if sidecar.get("key") != asdict(key):
        raise StaleCacheError(f"{json_path}: key {sidecar.get('key')} does not match {asdict(key)}")
    if sidecar.get("sha256") != sha256_file(npz_path):
        raise StaleCacheError(f"{npz_path}: checksum mismatch (file changed or truncated)")
    try:
        with np.load(npz_path) as data:
            mu, sigma, features = data["mu"], data["sigma"], data["features"]
    except Exception as err:  # a corrupt zip raises zipfile/ValueError/OSError/KeyError
        raise StaleCacheError(f"{npz_path}: unreadable ({err})") from err
    n, d = key.num_images, mu.shape[0] if mu.ndim == 1 else -1
    shapes_ok = mu.ndim == 1 and sigma.shape == (d, d) and features.shape == (n, d)
    if not shapes_ok or any(a.dtype != np.float64 for a in (mu, sigma, features)):
        raise StaleCacheError(
            f"{npz_path}: wrong shapes/dtypes mu {mu.shape} {mu.dtype}, sigma {sigma.shape}, features "
            f"{features.shape} (expected {n} images)"
        )
    return ReferenceStats(key=key, features=features, stats=FeatureStats(mu=mu, sigma=sigma, num=n))


def reference_statistics(
    key: ReferenceKey,
    images_fn: Callable[[], np.ndarray],
    extractor: FeatureExtractor,
    *,
    batch_size: int = 64,
    progress: bool = True,
    root: Path | None = None,
) -> ReferenceStats:
    """Cached reference statistics for ``key``; on a miss or a stale entry, extract features of ``images_fn()``
    with ``extractor`` and cache them."""
    if key.extractor != extractor.name:
        raise ValueError(f"key names extractor {key.extractor!r} but {extractor.name!r} was given")
    try:
        return load_reference(key, root)
    except FileNotFoundError:
        pass
    except StaleCacheError as err:
        warnings.warn(f"rebuilding reference statistics: {err}", RuntimeWarning)
    images = images_fn()
    if len(images) != key.num_images:
        raise ValueError(f"key expects {key.num_images} reference images, images_fn returned {len(images)}")
    features = extract_features(extractor, images, batch_size=batch_size, progress=progress)
    return save_reference(key, features, root)
