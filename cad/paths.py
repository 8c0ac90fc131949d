"""Where the suite keeps data, caches and results. Each root can be moved with an environment variable."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Datasets downloaded or unpacked by the suite (``CAD_DATA``, default ``<repo>/data``)."""
    return Path(os.environ.get("CAD_DATA", REPO_ROOT / "data"))


def cache_dir() -> Path:
    """Derived artefacts that can be rebuilt: noisy labels, trained classifiers, reference statistics
    (``CAD_CACHE``, default ``<repo>/.cache``)."""
    return Path(os.environ.get("CAD_CACHE", REPO_ROOT / ".cache"))


def results_dir() -> Path:
    """Runs, tables, figures and benchmark reports (``CAD_RESULTS``, default ``<repo>/results``)."""
    return Path(os.environ.get("CAD_RESULTS", REPO_ROOT / "results"))
